"""The entrance (serving/entrance.py) with a real nginx in front of a real `tritonserver`:
inference beyond the limit in flight is refused before Triton sees it, over HTTP and
gRPC, with the message berth-client retries; health, metadata and metrics always pass;
`python -m serving --entrance-max-in-flight` runs both and stops both."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from berth_client import Classifier
from berth_client.errors import ServerOverloadedError, translate
from berth_core.admission import ENTRANCE_REFUSAL
from serving import entrance as entrance_module
from serving.__main__ import main as serve_main
from serving.__main__ import parse_args
from serving.entrance import Entrance, EntranceError, EntranceSettings, render
from serving.server import TritonServer
from tests.client.ensembles import SINGLE, publish
from tests.serving.test_admission import requests_reaching
from tests.triton_text import text_input

ROOT = Path(__file__).resolve().parents[2]
# Each request is slow enough (a batch of long texts) that a burst overlaps in flight.
BATCH = [" ".join(["a gripping, funny and heartfelt film"] * 40)] * 64
BURST = 12


def on_server(test):
    return pytest.mark.server(pytest.mark.slow(test))


def test_the_limit_is_at_least_one_request():
    with pytest.raises(EntranceError, match="max_in_flight >= 1"):
        EntranceSettings(0, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
    with pytest.raises(SystemExit):
        parse_args(["--entrance-max-in-flight", "-1"])


def test_a_missing_nginx_is_named_with_the_package_to_install(monkeypatch, tmp_path, capsys):
    """Before the server's start-up, not after it."""
    monkeypatch.setattr(entrance_module.shutil, "which", lambda _name: None)
    monkeypatch.setattr(entrance_module.os, "access", lambda *_args: False)
    with pytest.raises(EntranceError, match="apt-get install nginx"):
        entrance_module.nginx_binary()
    argv = ["--model-repository", str(tmp_path), "--entrance-max-in-flight", "4"]
    assert serve_main(argv) == 1
    assert "nginx, which is not installed" in capsys.readouterr().err


def test_only_inference_is_limited(tmp_path):
    """Two limited locations (HTTP infer, gRPC ModelInfer); health, metadata, statistics
    and metrics go through the unlimited ones."""
    settings = EntranceSettings(7, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
    conf = render(settings, prefix=tmp_path)
    assert conf.count("limit_conn in_flight 7;") == 2
    assert "location ~ /infer$" in conf
    assert "location = /inference.GRPCInferenceService/ModelInfer" in conf
    assert "'" not in settings.refusal() and '"' not in settings.refusal()  # quoted in nginx


@pytest.fixture(scope="module")
def repository(tmp_path_factory, sentiment_checkpoint):
    repository = tmp_path_factory.mktemp("entrance") / "repository"
    publish(repository, SINGLE, sentiment_checkpoint)
    return repository


@pytest.fixture(scope="module")
def served(repository):
    """One server, nginx allowing one inference request in flight."""
    with (
        TritonServer(repository) as server,
        Entrance(EntranceSettings.around(server, 1)) as front,
    ):
        yield server, front


def burst(send) -> list:
    """BURST threads released at once, each sending one request: its answer or error."""
    start = threading.Barrier(BURST)
    results: list = [None] * BURST

    def one(i: int) -> None:
        start.wait()
        try:
            results[i] = send()
        except InferenceServerException as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def http_infer(url: str):
    client = httpclient.InferenceServerClient(url, network_timeout=120)
    try:
        return client.infer(SINGLE, [text_input(httpclient, BATCH)]).as_numpy("PROBABILITIES")
    finally:
        client.close()


def grpc_infer(url: str):
    with grpcclient.InferenceServerClient(url) as client:
        return client.infer(SINGLE, [text_input(grpcclient, BATCH)]).as_numpy("PROBABILITIES")


@on_server
def test_http_requests_beyond_the_limit_are_refused_before_triton(served):
    """A burst over HTTP: the excess gets 503 with the entrance's message (overload to
    berth-client), the rest is answered as without the entrance, and Triton counts only
    the answered ones."""
    server, front = served
    before = requests_reaching(server, f"{SINGLE}_tokenizer")
    results = burst(lambda: http_infer(front.http_url))
    answered = [r for r in results if isinstance(r, np.ndarray)]
    refused = [r for r in results if isinstance(r, InferenceServerException)]
    assert len(answered) + len(refused) == BURST
    assert answered and refused
    assert {str(r.status()) for r in refused} == {"503"}
    assert all(r.message().startswith(ENTRANCE_REFUSAL) for r in refused)
    assert all(isinstance(translate(r, url=front.http_url), ServerOverloadedError) for r in refused)
    np.testing.assert_allclose(answered[0], http_infer(server.http_url), atol=1e-5)
    assert requests_reaching(server, f"{SINGLE}_tokenizer") - before == len(answered) + 1


@on_server
def test_grpc_requests_beyond_the_limit_are_refused_unavailable(served):
    _server, front = served
    results = burst(lambda: grpc_infer(front.grpc_url))
    refused = [r for r in results if isinstance(r, InferenceServerException)]
    assert refused and len(refused) < BURST
    assert {str(r.status()) for r in refused} == {"StatusCode.UNAVAILABLE"}
    assert all(ENTRANCE_REFUSAL in r.message() for r in refused)
    assert all(isinstance(translate(r, url=front.grpc_url), ServerOverloadedError) for r in refused)


@on_server
def test_health_metadata_and_metrics_pass_while_inference_is_full(served):
    """Probes must not fail because the server is busy: while one request holds the
    only slot, health, metadata and metrics still answer through the entrance."""
    _server, front = served
    holding = threading.Thread(target=http_infer, args=(front.http_url,))
    holding.start()
    try:
        client = httpclient.InferenceServerClient(front.http_url)
        assert client.is_server_ready() and client.is_model_ready(SINGLE)
        assert client.get_model_metadata(SINGLE)["name"] == SINGLE
        client.close()
        with urllib.request.urlopen(f"http://{front.metrics_url}/metrics", timeout=10) as page:
            assert b"nv_inference_request_success" in page.read()
    finally:
        holding.join()


@on_server
def test_berth_client_retries_through_the_entrance(served):
    """Four callers, one slot: each berth-client backs off on the entrance's refusals
    and every text is classified."""
    _server, front = served
    labels: list[str] = []

    def caller() -> None:
        with Classifier(url=front.http_url, model=SINGLE, retries=8) as classifier:
            for _ in range(5):
                labels.append(classifier.predict(BATCH[:8])[0]["label"])

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(labels) == 20 and set(labels) <= {"negative", "positive"}


@on_server
def test_python_m_serving_runs_the_entrance_and_stops_both(repository):
    """The CLI: ready line naming the entrance's ports, a classification through it,
    and SIGTERM leaves neither nginx nor tritonserver behind."""
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-repository", str(repository),
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
         "--entrance-max-in-flight", "4"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        ready = next(line for line in process.stdout if "tritonserver ready" in line)
        http_url = re.search(r"HTTP http://(\S+)", ready).group(1)
        assert "nginx in front, 4 in flight" in ready
        nginx = [p for p in _children(process.pid) if "nginx" in _command(p)]
        assert nginx
        with Classifier(url=http_url, model=SINGLE) as classifier:
            assert classifier.predict(["a gripping, funny film"])[0]["label"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not [p for p in nginx if Path(f"/proc/{p}").exists()]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
