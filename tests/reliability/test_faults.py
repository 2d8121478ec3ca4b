"""Faults while serving: a crashed Python-backend stub, a restarted server, a new model
version published under load. RELIABILITY.md, "Faults".
"""

from __future__ import annotations

import threading
import time
from unittest import mock

import grpc
import numpy as np
import psutil
import pytest
from tritonclient.utils import InferenceServerException

from berth_client import Classifier, ServerUnavailableError
from berth_client.errors import translate
from tests.reliability.served import ATOL, GOOD_TEXT, MODEL, http_or_grpc, publish
from tests.triton_text import text_input

pytestmark = [pytest.mark.server, pytest.mark.slow]

# Deadlines that end a wait so that a broken server fails the test instead of hanging
# it; not speed targets (the figures are in RELIABILITY.md, "Faults").
HANG_S = 90


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
    recorded as (time answered, ok, message, time sent); a wrong answer counts as a
    failure."""

    def __init__(self, served, threads: int = 2) -> None:
        self.served = served
        self.stop_event = threading.Event()
        self.results: list[tuple[float, bool, str, float]] = []
        self.threads = [
            threading.Thread(target=self._run, args=("http" if i % 2 == 0 else "grpc",))
            for i in range(threads)
        ]

    def _run(self, protocol: str) -> None:
        tc = http_or_grpc(protocol)
        url = self.served.http_url if protocol == "http" else self.served.grpc_url
        client = tc.InferenceServerClient(url)
        while not self.stop_event.is_set():
            inp = text_input(tc, [GOOD_TEXT])
            sent = time.monotonic()
            try:
                probs = client.infer(MODEL, [inp]).as_numpy("PROBABILITIES")
                ok = np.allclose(probs, self.served.reference, atol=ATOL)
                self.results.append((time.monotonic(), ok, "" if ok else f"wrong: {probs}", sent))
            except Exception as exc:
                self.results.append((time.monotonic(), False, str(exc), sent))
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
        return [m for t, ok, m, _ in self.results if not ok and t >= since]

    def successes(self, since: float = 0.0) -> int:
        return sum(1 for t, ok, *_ in self.results if ok and t >= since)


def test_poll_mode_loads_each_published_model_once(served):
    """Loading the tokenizer's model.py must leave its version directory as published
    (the stub ignores PYTHONDONTWRITEBYTECODE; export byte-compiles at publish), else the
    poll-mode server sees a change and reloads the model right after start."""
    time.sleep(2.5)  # more than two repository polls
    loads = [
        line.split('"loading: ')[1].rstrip('"')
        for line in served.server.log_tail.splitlines()
        if '"loading: ' in line
    ]
    members = [f"{MODEL}_tokenizer", f"{MODEL}_onnx_int8", f"{MODEL}_onnx_fp32", MODEL]
    assert sorted(loads) == sorted(f"{m}:1" for m in members), loads


def test_killed_tokenizer_stub_is_replaced_by_a_server_restart(served):
    """SIGKILL the tokenizer's Python-backend stub under load. Triton 24.10 does not
    restart it (the model stays READY and every request fails with "Stub process ... is
    not healthy"); the watchdog (`TritonServer(watchdog=True)`, on in `python -m serving`)
    sees the dead stub. This server polls the repository, where Triton takes no model
    load, so the watchdog restarts it on the same ports (in its default explicit mode it
    reloads the model instead: test_stub_recovery.py); later requests succeed.
    """
    server = served.server
    old_pid = server.process.pid
    restarts = server.restarts
    stubs = python_stubs(old_pid, f"{MODEL}_tokenizer")
    assert stubs
    with LoadLoop(served) as load:
        time.sleep(1.0)
        assert load.successes() > 0 and not load.failures()
        killed_at = time.monotonic()
        for stub in stubs:
            stub.kill()
        recovered_at = None
        while time.monotonic() < killed_at + HANG_S:
            time.sleep(0.25)
            recent = [ok for t, ok, *_ in load.results if t > time.monotonic() - 1.0]
            if server.restarts > restarts and recent and all(recent):
                recovered_at = time.monotonic()
                break
        time.sleep(2.0)  # and it stays recovered
    assert recovered_at is not None, (
        f"hung: no restart and answers within {HANG_S} s of the kill",
        load.failures()[-3:],
        server.log_tail[-3000:],
    )
    failures = load.failures()
    print(
        f"\nstub kill: restarted and answering again after {recovered_at - killed_at:.1f} s; "
        f"{len(failures)} failed of {len(load.results)}: {sorted(set(failures))[:4]}"
    )
    assert server.restarts == restarts + 1
    assert server.process.pid != old_pid  # a new process ...
    assert (server.http_url, server.grpc_url) == (served.http_url, served.grpc_url)  # same ports
    assert all(not p.is_running() for p in stubs)  # the old process tree is gone
    # Failures happen only between the kill and the restart: the dead stub's
    # "not healthy", then connection errors while the new server starts.
    last_failure = max((t for t, ok, *_ in load.results if not ok), default=killed_at)
    assert last_failure < recovered_at
    assert load.successes(since=last_failure) > 0
    assert not [m for m in failures if m.startswith("wrong")], failures[:3]
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
    """One Classifier object with default settings, never rebuilt: answers before,
    raises ServerUnavailableError while the server is down, and answers again once a new
    server process is ready on the same ports: over HTTP its first call does (a stale
    pooled connection is retried, not reported); its gRPC channel backs off reconnects at
    most 0.5 s (`berth_client.client.RECONNECT_BACKOFF_MS`; grpc's own default grows to
    seconds). How soon it answers is a figure (RELIABILITY.md, "Faults"), not asserted."""
    url = served.http_url if protocol == "http" else served.grpc_url
    channels: list[dict] = []
    insecure_channel = grpc.insecure_channel

    def recording_channel(target, options=None, *args, **kwargs):
        channels.append(dict(options or []))
        return insecure_channel(target, options, *args, **kwargs)

    with mock.patch.object(grpc, "insecure_channel", recording_channel):
        clf = Classifier(url, model=MODEL, protocol=protocol)
    if protocol == "grpc":  # the channel this Classifier reconnects on has the cap
        assert len(channels) == 1
        assert channels[0]["grpc.max_reconnect_backoff_ms"] <= 500, channels
    with clf:
        before = clf.predict(GOOD_TEXT)
        served.server.stop()
        with pytest.raises(ServerUnavailableError):
            clf.predict(GOOD_TEXT)
        time.sleep(3.0)  # an outage long enough for the channel's backoff to grow
        with pytest.raises(ServerUnavailableError):
            clf.predict(GOOD_TEXT)
        served.restart_stopped()
        ready_at = time.monotonic()
        after, errors = None, []
        while after is None and time.monotonic() < ready_at + HANG_S:
            try:
                after = clf.predict(GOOD_TEXT)
            except ServerUnavailableError as exc:
                errors.append(str(exc))
        answered_in = time.monotonic() - ready_at
        print(f"\n{protocol}: answered {answered_in:.2f} s after the restart; errors {errors[:2]}")
        assert after is not None, (f"hung: no answer within {HANG_S} s of the restart", errors[-3:])
        if protocol == "http":
            assert errors == []  # the first call after the restart was answered
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
    restarts = served.server.restarts
    with LoadLoop(served) as load:
        time.sleep(0.5)
        publish(served.repository, served.checkpoint)  # adds version 2 of every member
        deadline = time.monotonic() + HANG_S
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
    assert all(v.get("2") == "READY" and v.get("1") != "READY" for v in versions), (
        f"hung: version 2 not serving alone within {HANG_S} s of the publish",
        versions,
    )
    assert load.failures() == []
    assert load.successes(since=switched_at) > 0
    assert served.server.restarts == restarts  # retired stubs are not mistaken for dead ones
    served.assert_healthy()
