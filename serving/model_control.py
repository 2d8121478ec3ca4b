"""Replace the instances of one model through Triton's model-control API (explicit mode).

What `serving.server.StubWatchdog` does when a model's Python-backend stub died, which
Triton 24.10 does not repair (serving/liveness.py). Loading the model again as it is
does not repair it either: Triton treats a load whose configuration equals the served
one, override or not, as an update that keeps every instance whose instance group is
unchanged (core model_lifecycle.cc `AsyncLoad` -> `UpdateModelConfig`; instances are
matched on `InstanceConfigSignature`, which ignores only a group's `name` and `count`):
the load answers 200 at once and the dead instance stays.

`equivalent_config` changes the signature, not the behaviour: it swaps each instance
group's `host_policy` between "" and the name Triton gives an empty one ("cpu" for
KIND_CPU). Triton then creates new instances (new stubs) beside the old ones, switches
the model to them and retires the old ones; the model stays READY throughout, and Triton
reloads the ensembles that use it by itself, in the background (they keep answering).
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.parse
import urllib.request

from berth_core.errors import ServingError

# The header the restricted model-repository API expects (`--http-restricted-api`,
# `--grpc-restricted-protocol`), with a value only the server's owner knows.
HEADER = "berth-model-control"
# The policy name Triton uses for a group whose `host_policy` is empty (core
# backend_model.cc `PrepareInstances`); KIND_GPU uses gpu_<device>.
DEFAULT_POLICY = {"KIND_CPU": "cpu", "KIND_MODEL": "model"}


class ModelControlError(ServingError):
    """Triton refused or failed a model-control request."""


def default_host_policy(group: dict) -> str:
    """The host policy name Triton gives `group`'s instances when it names none. With
    no `--host-policy` on the command line every name means the same empty policy;
    these are the names Triton itself uses, so the swap also holds when there is one."""
    kind = group.get("kind", "KIND_CPU")
    if kind == "KIND_GPU":
        return f"gpu_{(group.get('gpus') or [0])[0]}"
    return DEFAULT_POLICY.get(kind, "cpu")


def equivalent_config(config: dict) -> dict:
    """`config` (a model's served configuration, as GET /v2/models/<m>/config answers)
    with each instance group's host policy swapped between "" and its default name:
    the same model, instances Triton must create anew."""
    new = copy.deepcopy(config)
    groups = new.get("instance_group") or []
    if not groups:
        raise ModelControlError(f"model {config.get('name')!r} has no instance group to renew")
    for group in groups:
        default, policy = default_host_policy(group), group.get("host_policy", "")
        if policy not in ("", default):
            raise ModelControlError(
                f"instance group {group.get('name')!r} names host policy {policy!r}: no "
                "equivalent configuration with new instances"
            )
        group["host_policy"] = default if policy == "" else ""
    return new


class ModelControl:
    """Triton's model-control and model-state HTTP API on `http_url` ("host:port"),
    sending `key` in `HEADER` when the model-repository API is restricted."""

    def __init__(self, http_url: str, key: str | None = None, timeout: float = 120.0) -> None:
        self.base = f"http://{http_url}"
        self.headers = {HEADER: key} if key else {}
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=self.headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:  # refused, reset, timed out
            raise ModelControlError(f"{method} {path}: {exc}") from exc

    @staticmethod
    def _model_path(model: str) -> str:
        return urllib.parse.quote(model, safe="")

    def config(self, model: str) -> dict:
        """The configuration Triton serves `model` with (custom `--model-config-name`
        included: it is what was loaded)."""
        status, body = self._call("GET", f"/v2/models/{self._model_path(model)}/config")
        if status != 200:
            raise ModelControlError(f"config of {model!r}: HTTP {status} {body[:300]!r}")
        return json.loads(body)

    def load(self, model: str, config: dict | None = None) -> None:
        """Load `model` (with `config` instead of its file); returns once Triton has."""
        path = f"/v2/repository/models/{self._model_path(model)}/load"
        body = {"parameters": {"config": json.dumps(config)}} if config is not None else {}
        status, body = self._call("POST", path, body)
        if status != 200:
            raise ModelControlError(f"load of {model!r}: HTTP {status} {body[:500]!r}")

    def ready(self, model: str) -> bool:
        status, _ = self._call("GET", f"/v2/models/{self._model_path(model)}/ready")
        return status == 200

    def index(self) -> list[dict]:
        """The repository index: each model's name, version and state (READY, LOADING,
        UNAVAILABLE ...)."""
        status, body = self._call("POST", "/v2/repository/index", {})
        if status != 200:
            raise ModelControlError(f"repository index: HTTP {status} {body[:300]!r}")
        return json.loads(body)
