"""Faults while serving: a crashed Python-backend stub, a restarted server, a new model
version published under load. RELIABILITY.md, "Faults".
"""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import psutil
import pytest
from tritonclient.utils import InferenceServerException

from berth_client import Classifier, RetryPolicy, ServerUnavailableError
from berth_client.errors import translate
from tests.reliability.conftest import ATOL, GOOD_TEXT, MODEL, http_or_grpc, publish

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # exited, or a zombie being reaped
        return ""


def python_stubs(server_pid: int, model: str) -> list[psutil.Process]:
    """The live `triton_python_backend_stub` children of the server serving `model` (the
    stub's first argument is the model's `<repository>/<model>/<version>/model.py`)."""
    found = []
    for proc in psutil.Process(server_pid).children(recursive=True):
        cmd = _cmdline(proc)
        if "triton_python_backend_stub" in cmd and f"/{model}/" in cmd:
            found.append(proc)
    return found


class LoadLoop:
    """Back-to-back requests from `threads` threads (half HTTP, half gRPC), each result
    recorded as (time, ok, message); a wrong answer counts as a failure."""

    def __init__(self, served, threads: int = 2) -> None:
        self.served = served
        self.stop_event = threading.Event()
        self.results: list[tuple[float, bool, str]] = []
        self.threads = [
            threading.Thread(target=self._run, args=("http" if i % 2 == 0 else "grpc",))
            for i in range(threads)
        ]

    def _run(self, protocol: str) -> None:
        tc = http_or_grpc(protocol)
        url = self.served.http_url if protocol == "http" else self.served.grpc_url
        client = tc.InferenceServerClient(url)
        data = np.array([[GOOD_TEXT.encode()]], dtype=np.object_)
        while not self.stop_event.is_set():
            inp = tc.InferInput("TEXT", [1, 1], "BYTES")
            inp.set_data_from_numpy(data)
            try:
                probs = client.infer(MODEL, [inp]).as_numpy("PROBABILITIES")
                ok = np.allclose(probs, self.served.reference, atol=ATOL)
                self.results.append((time.monotonic(), ok, "" if ok else f"wrong: {probs}"))
            except Exception as exc:
                self.results.append((time.monotonic(), False, str(exc)))
                time.sleep(0.01)
        client.close()

    def __enter__(self) -> LoadLoop:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(30)

    def failures(self, since: float = 0.0) -> list[str]:
        return [m for t, ok, m in self.results if not ok and t >= since]

    def successes(self, since: float = 0.0) -> int:
        return sum(1 for t, ok, _ in self.results if ok and t >= since)


@pytest.mark.xfail(
    reason="Triton 24.10's Python backend restarts a killed stub in < 1 s when the test runs "
    "alone, but after the bad-input tests it was seen not to within 20 s (every request "
    "then fails with 'Stub process ... is not healthy'); RELIABILITY.md",
    strict=False,
)
def test_killed_tokenizer_stub_is_restarted_under_load(served):
    """SIGKILL the tokenizer's Python-backend stub under load: Triton (24.10) notices the
    dead stub, fails the requests caught in it with "Stub process ... is not healthy"
    (berth-client: ServerUnavailableError, retried) and starts a new stub; later
    requests succeed."""
    pid = served.server.process.pid
    stubs = python_stubs(pid, f"{MODEL}_tokenizer")
    with LoadLoop(served) as load:
        time.sleep(1.0)
        assert load.successes() > 0
        killed_at = time.monotonic()
        for stub in stubs:  # the model's and the instance's stub
            with contextlib.suppress(psutil.NoSuchProcess):
                stub.kill()
        deadline = killed_at + 20
        recovered_at = None
        while time.monotonic() < deadline:
            time.sleep(0.25)
            new = python_stubs(pid, f"{MODEL}_tokenizer")
            recent = [ok for t, ok, _ in load.results if t > time.monotonic() - 0.5]
            if new and not {p.pid for p in new} & {p.pid for p in stubs} and recent and all(recent):
                recovered_at = time.monotonic()
                break
        time.sleep(2.0)  # and it stays recovered
    if recovered_at is None:  # leave a working server to the next tests, then fail
        served.server.stop()
        served.restart_stopped()
    assert recovered_at is not None, load.failures()[-5:]
    failures = load.failures()
    print(
        f"\nstub kill: recovered in {recovered_at - killed_at:.2f} s, {len(failures)} failed "
        f"of {len(load.results)}: {sorted(set(failures))[:3]}"
    )
    assert all("is not healthy" in m or "Stub process" in m for m in failures), failures[:5]
    failed_at = [t for t, ok, _ in load.results if not ok]
    last_failure = max(failed_at, default=killed_at)
    assert last_failure - killed_at < 10.0  # failures only right after the kill
    assert load.successes(since=last_failure) > 0  # and answers again afterwards
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in stubs)
    served.assert_healthy()


def test_an_unhealthy_stub_error_is_transient_for_the_client():
    exc = InferenceServerException(
        msg="in ensemble 'sentiment', Stub process 'sentiment_tokenizer_0_0' is not healthy.",
        status="500",
    )
    error = translate(exc, url="http://127.0.0.1:8000", model=MODEL)
    assert isinstance(error, ServerUnavailableError) and error.transient


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_same_classifier_survives_a_server_restart(served, protocol):
    """One Classifier object, never rebuilt: answers before, raises
    ServerUnavailableError while the server is down, answers again after a new server
    process started on the same ports (stale pooled connections are retried)."""
    url = served.http_url if protocol == "http" else served.grpc_url
    with Classifier(url, model=MODEL, protocol=protocol, retries=2, backoff=0.05) as clf:
        before = clf.predict(GOOD_TEXT)
        served.server.stop()
        with pytest.raises(ServerUnavailableError):
            clf.predict(GOOD_TEXT)
        served.restart_stopped()
        # gRPC channels back off their reconnects (up to seconds after an outage): the
        # retry budget must span that; the object itself is kept.
        clf.retry_policy = RetryPolicy(retries=8, backoff=0.25, max_backoff=2.0)
        after = clf.predict(GOOD_TEXT)
        assert after["probabilities"] == pytest.approx(before["probabilities"], abs=ATOL)
        assert clf.health()["model_ready"]
    assert url in (served.http_url, served.grpc_url)  # same ports
    served.assert_healthy()


def _versions(served, model: str) -> dict[str, str]:
    import tritonclient.http as th

    client = th.InferenceServerClient(served.http_url)
    try:
        index = client.get_model_repository_index()
    finally:
        client.close()
    return {m.get("version", ""): m.get("state", "") for m in index if m["name"] == model}


def test_publishing_a_new_version_under_load_fails_no_request(served):
    """`python -m export` publishes version 2 while requests flow; the server polls the
    repository (`--model-control-mode poll`), loads version 2 next to version 1 and
    retires version 1 once 2 is ready: zero failed or wrong answers."""
    onnx_model = f"{MODEL}_onnx_int8"
    tokenizer = f"{MODEL}_tokenizer"
    assert _versions(served, onnx_model).get("1") == "READY"
    with LoadLoop(served) as load:
        time.sleep(0.5)
        publish(served.repository, served.checkpoint)  # adds version 2 of every member
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            versions = (_versions(served, onnx_model), _versions(served, tokenizer))
            if all(v.get("2") == "READY" and v.get("1") != "READY" for v in versions):
                break
            time.sleep(0.5)
        switched_at = time.monotonic()
        time.sleep(2.0)  # keep the load on the new version for a while
    print(
        f"\npublish under load: {len(load.results)} requests, "
        f"{len(load.failures())} failed; versions {versions}"
    )
    assert all(v.get("2") == "READY" and v.get("1") != "READY" for v in versions), versions
    assert load.failures() == []
    assert load.successes(since=switched_at) > 0
    served.assert_healthy()
