"""The reliability suite's server and helpers (RELIABILITY.md); its fixture `served`,
one real `tritonserver` for the whole suite, is in conftest.py.

The tiny sentiment checkpoint (tests/fixtures/checkpoints.py, built once per session) is
published by `python -m export` with reliability settings: a small bounded queue (so a
test can overload it in seconds), a short queue timeout and the default 1 MiB text limit.
Its watchdog is on, as in `python -m serving`; in poll mode a dead Python-backend stub
restarts it (explicit mode reloads the model: test_stub_recovery.py).
The server watches the repository (`model_control_mode="poll"`), so the publish-under-load
test can add a version while it serves. The restart test stops it and
`Served.restart_stopped()` starts a new process on the same ports; every test uses the
current process through `served.server`.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import numpy as np

from serving.server import TritonServer
from tests.client.ensembles import publish as export_publish
from tests.triton_text import text_input

MODEL = "sentiment"
MAX_QUEUE_SIZE = 8
QUEUE_TIMEOUT_US = 1_000_000
MAX_TEXT_BYTES = 1 << 20
GOOD_TEXT = "a gripping, funny and moving film"
# The served int8 model quantizes activations dynamically, per batch: the texts a
# request is batched (and padded) with shift its probabilities by ~1e-4.
ATOL = 1e-3
EXPORT_FLAGS = [
    "--max-queue-size", str(MAX_QUEUE_SIZE),
    "--queue-timeout-us", str(QUEUE_TIMEOUT_US),
    "--max-text-bytes", str(MAX_TEXT_BYTES),
]  # fmt: skip


def publish(repository: Path, checkpoint: Path) -> None:
    export_publish(repository, MODEL, checkpoint, EXPORT_FLAGS)


class Served:
    """The suite's server (replaced by `restart_stopped()`) and its repository."""

    def __init__(self, repository: Path, checkpoint: Path) -> None:
        self.repository = repository
        self.checkpoint = checkpoint
        self.server = None
        self.ports: dict[str, int] = {}
        self.reference: np.ndarray | None = None

    def _new(self, **ports):
        return TritonServer(
            self.repository,
            model_control_mode="poll",
            repository_poll_secs=1,
            watchdog=True,
            **ports,
        )

    def start(self) -> Served:
        """Start the server (on the ports it had before, if it ran before)."""
        self.server = self._new(**self.ports).start()
        self.ports = {
            "http_port": self.server.http_port,
            "grpc_port": self.server.grpc_port,
            "metrics_port": self.server.metrics_port,
        }
        return self

    def restart_stopped(self) -> None:
        """After `server.stop()`: a new server process on the same ports."""
        self.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def http_url(self) -> str:
        return self.server.http_url

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    def classify(self, texts=(GOOD_TEXT,), protocol: str = "http") -> np.ndarray:
        """PROBABILITIES for `texts` through raw tritonclient (no retries)."""
        tc = http_or_grpc(protocol)
        url = self.http_url if protocol == "http" else self.grpc_url
        client = tc.InferenceServerClient(url)
        try:
            result = client.infer(MODEL, [text_input(tc, texts)])
            return result.as_numpy("PROBABILITIES")
        finally:
            client.close()

    def assert_healthy(self) -> None:
        """The server is up and answers a good request correctly (same as before)."""
        assert self.server.process is not None and self.server.process.poll() is None
        for protocol in ("http", "grpc"):
            probs = self.classify(protocol=protocol)
            assert probs.shape == (1, 2)
            np.testing.assert_allclose(probs, self.reference, atol=ATOL)


def model_requests(
    http_url: str, kinds=("success", "fail"), quiet_s: float = 0.2, within_s: float = 5.0
) -> dict[str, int]:
    """{model: its requests of those kinds (answered, failed)}, from /v2/models/stats,
    once they have stopped moving for `quiet_s`: Triton records a model's statistics
    after its response is sent, so a request just answered can be counted a moment later."""
    deadline = time.monotonic() + within_s
    counts = _model_requests(http_url, kinds)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        again = _model_requests(http_url, kinds)
        if again == counts:
            break
        counts = again
    return counts


def _model_requests(http_url: str, kinds) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{http_url}/v2/models/stats", timeout=30) as response:
        stats = json.loads(response.read())["model_stats"]
    return {m["name"]: sum(m["inference_stats"][k]["count"] for k in kinds) for m in stats}


def classifier_requests(http_url: str) -> dict[str, int]:
    """`model_requests` of the ensemble's classifier models (its ONNX variants)."""
    counts = model_requests(http_url)
    return {name: n for name, n in counts.items() if name.startswith(f"{MODEL}_onnx")}


def http_or_grpc(protocol: str):
    if protocol == "http":
        import tritonclient.http as tc
    else:
        import tritonclient.grpc as tc
    return tc
