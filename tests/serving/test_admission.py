"""Admission in the tokenizer on a real `tritonserver`: an ensemble exported with
`--admission-rate` refuses what arrives beyond the rate with a retryable error, answers
the rest as it would without admission, and berth-client's retries get through."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from berth_client import Classifier
from berth_client.errors import ServerOverloadedError, translate
from berth_core.throttle import THROTTLED
from serving.server import TritonServer
from tests.client.ensembles import SINGLE, publish
from tests.triton_text import text_input

pytestmark = [pytest.mark.server, pytest.mark.slow]
RATE, BURST, SENT = 20, 5, 30
ATTEMPTS = 200


@pytest.fixture(scope="module")
def repository(tmp_path_factory, sentiment_checkpoint):
    repository = tmp_path_factory.mktemp("admission") / "repository"
    publish(repository, SINGLE, sentiment_checkpoint,
            ["--admission-rate", str(RATE), "--admission-burst", str(BURST)])  # fmt: skip
    return repository


def infer(client, text: str):
    try:
        return client.infer(SINGLE, [text_input(httpclient, [text])]).as_numpy("PROBABILITIES")
    except InferenceServerException as exc:
        return exc


@pytest.mark.parametrize("container_configs", [False, True])
def test_requests_beyond_the_rate_are_refused_before_tokenizing(repository, container_configs):
    with TritonServer(repository, container_configs=container_configs) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        time.sleep(BURST / RATE)  # a full bucket
        started = time.monotonic()
        results = [infer(client, "a gripping, funny film") for _ in range(SENT)]
        elapsed = time.monotonic() - started
        answered = [r for r in results if isinstance(r, np.ndarray)]
        refused = [r for r in results if isinstance(r, InferenceServerException)]
        assert len(answered) + len(refused) == SENT
        assert BURST <= len(answered) <= BURST + RATE * elapsed + 1
        assert {str(r.status()) for r in refused} == {"503"}
        assert all("over the admission rate" in r.message() for r in refused)
        assert all(
            isinstance(translate(r, url=server.http_url), ServerOverloadedError) for r in refused
        )
        for probabilities in answered[1:]:
            np.testing.assert_allclose(probabilities, answered[0], atol=1e-3)

        time.sleep(1 / RATE)
        assert isinstance(infer(client, "a dull and clumsy comedy"), np.ndarray)
        client.close()


def grpc_refusal(grpc_client, http_client) -> InferenceServerException | None:
    """Empty the bucket over HTTP, then send one gRPC request on a connected channel:
    its refusal, or None when a token came back in between."""
    inp = text_input(grpcclient, ["a gripping, funny film"])
    while isinstance(infer(http_client, "drain the bucket"), np.ndarray):
        pass
    try:
        grpc_client.infer(SINGLE, [inp])
    except InferenceServerException as exc:
        return exc
    return None


def test_berth_client_retries_through_the_refusals(repository):
    """The bucket emptied by raw requests: a raw gRPC request is refused UNAVAILABLE;
    berth-client's backoff waits out the refill (a token every 50 ms here) and every
    text is classified."""
    with TritonServer(repository) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc_client:
            assert grpc_client.is_server_live()  # the channel is up before the drain
            refusals = (grpc_refusal(grpc_client, client) for _ in range(5))
            refusal = next((r for r in refusals if r is not None), None)
        client.close()
        assert refusal is not None and str(refusal.status()) == "StatusCode.UNAVAILABLE"
        assert "over the admission rate" in refusal.message()
        assert isinstance(translate(refusal, url=server.grpc_url), ServerOverloadedError)
        with Classifier(url=server.http_url, model=SINGLE, retries=8) as classifier:
            predictions = [classifier.predict(["a gripping, funny film"])[0] for _ in range(10)]
    assert {p["label"] for p in predictions} <= {"negative", "positive"}
    assert len(predictions) == 10


def requests_reaching(server: TritonServer, model: str) -> int:
    """How many requests `model` has received, answered or failed (its statistics)."""
    client = httpclient.InferenceServerClient(server.http_url)
    stats = client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]
    client.close()
    return int(stats["success"]["count"]) + int(stats["fail"]["count"])


def test_a_throttled_berth_client_refuses_locally_what_the_server_would_refuse(repository):
    """Calls back to back into a bucket of 20 a second, no retries: once the server has
    refused most of them, berth-client (throttle on by default, k = 2) refuses some
    itself once it has made 20, and those never reach the server (200 attempts here: 11
    answered, 65 refused by the server, 124 by the client)."""
    outcomes: Counter[str] = Counter()
    with TritonServer(repository) as server:
        with Classifier(url=server.http_url, model=SINGLE, retries=0) as classifier:
            classifier.model_info()
            for _ in range(ATTEMPTS):
                try:
                    classifier.predict("a gripping, funny film")
                    outcomes["answered"] += 1
                except ServerOverloadedError as exc:
                    outcomes["throttled" if THROTTLED in str(exc) else "refused"] += 1
        reached = requests_reaching(server, f"{SINGLE}_tokenizer")
    assert sum(outcomes.values()) == ATTEMPTS
    assert outcomes["throttled"] > 0 and outcomes["refused"] > 0
    assert reached == outcomes["answered"] + outcomes["refused"]
    assert reached < ATTEMPTS / 2
