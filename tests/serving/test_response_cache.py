"""Triton's response cache: an ensemble exported with `--response-cache`, served with a
cache (`TritonServer(cache_size=...)`, `python -m serving --cache-size`), answers a
repeated text from the cache, with the probabilities it computed the first time."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tritonclient.http as httpclient

from serving.server import TritonServer
from tests.client.ensembles import SINGLE, publish
from tests.triton_text import text_input

pytestmark = [pytest.mark.server, pytest.mark.slow]
CACHE_BYTES = 16 << 20


@pytest.fixture(scope="module")
def repository(tmp_path_factory, sentiment_checkpoint):
    repository = tmp_path_factory.mktemp("cached") / "repository"
    publish(repository, SINGLE, sentiment_checkpoint, ["--response-cache"])
    return repository


def infer(client, text: str) -> np.ndarray:
    return client.infer(SINGLE, [text_input(httpclient, [text])]).as_numpy("PROBABILITIES")


def counts(client, model: str, settled: int, timeout: float = 10.0) -> dict[str, int]:
    """The model's counters once `settled` requests are recorded: Triton answers a request
    before it updates the ensemble's statistics, so the last one can lag a moment."""
    deadline = time.monotonic() + timeout
    while True:
        stats = client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]
        found = {key: int(value["count"]) for key, value in stats.items()}
        if found["success"] >= settled or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("container_configs", [False, True])
def test_a_repeated_text_is_answered_from_the_cache(repository, container_configs):
    with TritonServer(
        repository, cache_size=CACHE_BYTES, container_configs=container_configs
    ) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        first = infer(client, "a gripping, funny film")
        again = infer(client, "a gripping, funny film")
        other = infer(client, "a dull and clumsy comedy")
        ensemble = counts(client, SINGLE, settled=3)
        tokenizer = counts(client, f"{SINGLE}_tokenizer", settled=2)
        client.close()
    np.testing.assert_array_equal(again, first)  # the cached answer, bit for bit
    assert not np.array_equal(other, first)
    assert (ensemble["success"], ensemble["cache_hit"], ensemble["cache_miss"]) == (3, 1, 2)
    assert tokenizer["success"] == 2  # no member ran for the repeat


def test_without_a_server_cache_every_request_runs(repository):
    with TritonServer(repository) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        first = infer(client, "a gripping, funny film")
        again = infer(client, "a gripping, funny film")
        ensemble = counts(client, SINGLE, settled=2)
        tokenizer = counts(client, f"{SINGLE}_tokenizer", settled=2)
        client.close()
    np.testing.assert_allclose(again, first, atol=1e-3)  # int8, batched alone both times
    assert ensemble["cache_hit"] == 0 and tokenizer["success"] == 2
