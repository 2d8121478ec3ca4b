"""A dead Python-backend stub costs one model reload, not a server restart.
RELIABILITY.md, "Faults".

The server here is what `python -m serving` runs by default: `TritonServer(watchdog=True)`
with no model-control mode, i.e. Triton in explicit mode with every model loaded at
start and its model-repository API restricted to the watchdog. (The suite's `served` runs
in poll mode, where Triton refuses model loads: there a dead stub still costs a restart,
tests/reliability/test_faults.py.)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from berth_client import Classifier
from berth_client.errors import BerthError
from serving.model_control import HEADER
from serving.server import TritonServer
from tests.reliability.served import ATOL, GOOD_TEXT, MODEL, Served, publish
from tests.reliability.test_faults import HANG_S, LoadLoop, python_stubs
from tests.triton_text import text_input

pytestmark = [pytest.mark.server, pytest.mark.slow]

# What a raw request (no retries) may meet between the kill and the reload: the dead
# stub's answer, or its queue's timeout while the dead instance holds the batch.
WINDOW_ERRORS = ("is not healthy", "Request timeout expired")


class Reloading(Served):
    """The suite's Served, started as `python -m serving` starts it (watchdog, no mode)."""

    def _new(self, **ports):
        return TritonServer(self.repository, watchdog=True, **ports)


@pytest.fixture(scope="module")
def reloading(tmp_path_factory, sentiment_checkpoint) -> Reloading:
    repository = tmp_path_factory.mktemp("stub-recovery") / "repository"
    publish(repository, sentiment_checkpoint)
    served = Reloading(repository, sentiment_checkpoint)
    try:
        served.start()
        served.reference = served.classify()
        yield served
    finally:
        served.stop()


class ClientLoop(LoadLoop):
    """LoadLoop's threads as berth-client users: one `Classifier` each, default retry
    policy and timeout; `latencies` holds each call's duration (retries included)."""

    def __init__(self, served, threads: int = 2) -> None:
        super().__init__(served, threads)
        self.latencies: list[float] = []

    def _run(self, protocol: str) -> None:
        url = self.served.http_url if protocol == "http" else self.served.grpc_url
        with Classifier(url, model=MODEL, protocol=protocol) as clf:
            while not self.stop_event.is_set():
                started = time.monotonic()
                try:
                    probs = clf.probabilities([GOOD_TEXT])
                    ok = np.allclose(probs, self.served.reference, atol=ATOL)
                    message = "" if ok else f"wrong: {probs}"
                except BerthError as exc:
                    ok, message = False, f"{type(exc).__name__}: {exc}"
                self.results.append((time.monotonic(), ok, message, started))
                self.latencies.append(time.monotonic() - started)


def _log_count(server: TritonServer, text: str) -> int:
    return sum(text in line for line in server.log_tail.splitlines())


def _live_stubs(server_pid: int, model: str) -> set[int]:
    return {p.pid for p in python_stubs(server_pid, model)}


def _kill_and_wait_for_reload(served: Served, victim, raw: LoadLoop) -> tuple[float, ...]:
    """SIGKILL `victim`; (killed_at, reloaded_at, recovered_at): recovered once the
    watchdog reloaded and the last second of raw requests all succeeded."""
    server, reloads = served.server, served.server.reloads
    killed_at, reloaded_at = time.monotonic(), None
    victim.kill()
    while time.monotonic() < killed_at + HANG_S:
        time.sleep(0.05)
        if reloaded_at is None and server.reloads > reloads:
            reloaded_at = time.monotonic()
        recent = [ok for t, ok, *_ in raw.results if t > time.monotonic() - 1.0]
        if reloaded_at and recent and all(recent):
            return killed_at, reloaded_at, time.monotonic()
    raise AssertionError(
        f"hung: no reload and answers within {HANG_S} s of the kill",
        raw.failures()[-3:],
        server.log_tail[-3000:],
    )


def _last_failure_sent(raw: LoadLoop, default: float) -> float:
    return max((sent for _, ok, _, sent in raw.results if not ok), default=default)


def _first_good_answer(raw: LoadLoop, killed_at: float) -> float:
    """When the first request sent after the last failing one was answered: the end of
    the outage. (A request the dead instance held fails when Triton gives up on it, ~1
    s later, which can be after other instances answered.)"""
    last_sent = _last_failure_sent(raw, killed_at)
    return min(t for t, ok, _, sent in raw.results if ok and sent > last_sent)


def _report(model: str, raw: LoadLoop, users: ClientLoop, killed_at: float, reloaded_at: float):
    """The figures of RELIABILITY.md's row (printed with `pytest -s`)."""
    raw_failures, user_failures = raw.failures(), users.failures()
    last_failure = max((t for t, ok, *_ in raw.results if not ok), default=killed_at)
    first_good = _first_good_answer(raw, killed_at)
    print(
        f"\n{model} stub kill: reloaded {reloaded_at - killed_at:.1f} s after the kill; raw "
        f"requests: last failure {last_failure - killed_at:.1f} s, first good answer "
        f"{first_good - killed_at:.1f} s after the kill, {len(raw_failures)} failed of "
        f"{len(raw.results)} {sorted(set(raw_failures))[:2]}; berth-client: "
        f"{len(user_failures)} failed of {len(users.results)}, slowest call "
        f"{max(users.latencies):.2f} s"
    )


@pytest.mark.parametrize("member", ["tokenizer", "onnx_int8"])
def test_a_killed_stub_is_replaced_by_a_model_reload(reloading, member):
    """SIGKILL one stub of the tokenizer (one instance) or of the int8 classifier (one of
    its two instances, berth's onnxruntime runner) under load from raw clients and
    berth-client users: the watchdog reloads that model alone, in the same server
    process (Triton reloads the ensemble that uses it by itself); the other models'
    stubs are untouched; berth-client users see no error, raw requests fail only
    between the kill and the reload."""
    server = reloading.server
    model = f"{MODEL}_{member}"
    pid, restarts, reloads = server.process.pid, server.restarts, server.reloads
    others = {m: _live_stubs(pid, m) for m in (f"{MODEL}_tokenizer", f"{MODEL}_onnx_int8")}
    victims = others.pop(model)
    loads_before = _log_count(server, f'"loading: {model}:1"')
    ensemble_loads = _log_count(server, f'"loading: {MODEL}:1"')
    with LoadLoop(reloading) as raw, ClientLoop(reloading) as users:
        time.sleep(1.0)
        assert raw.successes() > 0 and not raw.failures() and not users.failures()
        victim = python_stubs(pid, model)[0]
        killed_at, reloaded_at, recovered_at = _kill_and_wait_for_reload(reloading, victim, raw)
        time.sleep(2.0)  # it stays recovered, and the zombie is not handled twice
    _report(model, raw, users, killed_at, reloaded_at)
    assert (server.process.pid, server.restarts, server.reloads) == (pid, restarts, reloads + 1)
    assert users.failures() == []
    raw_failures = raw.failures()
    assert all(any(e in m for e in WINDOW_ERRORS) for m in raw_failures), raw_failures[:3]
    # every failed request failed after the kill and was sent before the reload
    assert min((t for t, ok, *_ in raw.results if not ok), default=killed_at) >= killed_at
    assert _last_failure_sent(raw, killed_at) <= reloaded_at < recovered_at
    assert {m: _live_stubs(pid, m) for m in others} == others  # the other models untouched
    assert _live_stubs(pid, model) - victims  # new stubs for the reloaded model
    assert _log_count(server, f'"loading: {model}:1"') == loads_before + 1
    # the ensemble: reloaded by Triton itself (a dependent), not by the watchdog
    assert _log_count(server, f'"loading: {MODEL}:1"') > ensemble_loads
    index = {m["name"]: m["state"] for m in server.model_control().index()}
    assert set(index.values()) == {"READY"}, index
    reloading.assert_healthy()


def test_the_model_control_api_is_the_watchdogs_alone(reloading):
    """Explicit mode would let any client load a model, with its files uploaded in the
    request; the watchdog's server restricts the model-repository API (load, unload,
    index) to requests carrying its random key, over HTTP and gRPC."""
    server = reloading.server
    url = f"http://{server.http_url}/v2/repository/models/{MODEL}/unload"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=30)
    assert refused.value.code == 403 and HEADER in refused.value.read().decode()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        with pytest.raises(Exception, match="restricted"):
            client.unload_model(MODEL)
    finally:
        client.close()
    assert server.model_control().ready(MODEL)
    reloading.assert_healthy()


FRAGILE_MODEL = '''
import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Echoes TEXT; refuses to start twice under the same server process."""

    def initialize(self, args):
        params = json.loads(args["model_config"])["parameters"]
        mark = params["started_under"]["string_value"]
        server = str(os.getppid())
        if os.path.exists(mark) and open(mark).read() == server:
            raise RuntimeError(f"refuses a second start under server {server}")
        with open(mark, "w") as f:
            f.write(server)

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy())]
            )
            for r in requests
        ]
'''


def _fragile_repository(root: Path) -> Path:
    version = root / "repository" / "fragile" / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(FRAGILE_MODEL)
    (version.parent / "config.pbtxt").write_text(
        'name: "fragile"\nbackend: "python"\nmax_batch_size: 4\n'
        'input [{name: "TEXT" data_type: TYPE_STRING dims: [1]}]\n'
        'output [{name: "OUT" data_type: TYPE_STRING dims: [1]}]\n'
        "instance_group [{kind: KIND_CPU count: 1}]\n"
        f'parameters {{ key: "started_under" value {{ string_value: '
        f"{json.dumps(str(root / 'started-under'))} }} }}\n"
    )
    return version.parent.parent


def _echo(server: TritonServer) -> list:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        inp = text_input(grpcclient, [b"still here"])
        return client.infer("fragile", [inp]).as_numpy("OUT").tolist()
    finally:
        client.close()


def test_a_failed_reload_falls_back_to_a_server_restart(tmp_path, caplog):
    """A real reload failure, no test double: the model refuses a second start under the
    same server process (its new instance raises in `initialize`), so Triton answers
    the watchdog's load with an error; the watchdog restarts the server on its ports,
    where the model starts again."""
    with TritonServer(_fragile_repository(tmp_path), watchdog=True) as server:
        pid, ports = server.process.pid, (server.http_url, server.grpc_url)
        assert _echo(server) == [[b"still here"]]
        for stub in python_stubs(pid, "fragile"):
            stub.kill()
        deadline = time.monotonic() + HANG_S
        while server.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (server.restarts, server.reloads) == (1, 0), server.log_tail[-3000:]
        assert server.process.pid != pid and (server.http_url, server.grpc_url) == ports
        assert _echo(server) == [[b"still here"]]
    assert "refuses a second start" in caplog.text and "the reload failed" in caplog.text
