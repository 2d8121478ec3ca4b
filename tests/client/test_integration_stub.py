"""The client against a real tritonserver serving stand-in Python models: batching,
multi-label decoding, both protocols, asyncio, the CLI and the error paths."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import numpy as np
import pytest

from berth_client import (
    AsyncClassifier,
    Classifier,
    InvalidInputError,
    ModelNotFoundError,
    ServerUnavailableError,
)
from berth_client.cli import main as cli_main
from tests.client.stub_models import stub_scores

pytestmark = [pytest.mark.server]

PROTOCOLS = ["http", "grpc"]


def url_for(server, protocol):
    return server.http_url if protocol == "http" else server.grpc_url


def expected_multi(text):
    probs = 1 / (1 + np.exp(-stub_scores(text, 3).astype(np.float64)))
    return [name for name, p, t in zip("abc", probs, [0.5, 0.9, 0.5], strict=True) if p >= t]


def dead_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"  # closed again: nothing listens


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_single_text_and_batches_larger_than_max_batch_size(stub_server, protocol):
    with Classifier(url_for(stub_server, protocol), model="sentiment", protocol=protocol) as clf:
        info = clf.model_info()
        assert info.labels == ["negative", "positive"] and info.max_batch_size == 4
        record = clf.predict("a good film")
        assert record["label"] == "negative" and record["confidence"] > 0.8
        texts = [f"text {'x' * i}" for i in range(11)]  # 11 texts, max batch 4 -> 3 requests
        records = clf.predict(texts)
        assert len(records) == 11
        assert [r["label"] for r in records] == [info.labels[len(t) % 2] for t in texts]
        assert clf.predict([]) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_multi_label(stub_server, protocol):
    with Classifier(url_for(stub_server, protocol), model="tags", protocol=protocol) as clf:
        assert clf.model_info().multi_label
        texts = ["good", "goodness", "xy", "abc", "a"]
        for text, record in zip(texts, clf.predict(texts), strict=True):
            assert record["labels"] == expected_multi(text)
            assert set(record) == {"label", "labels", "confidence", "probabilities"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_asyncio(stub_server, protocol):
    async def run():
        async with AsyncClassifier(
            url_for(stub_server, protocol), model="tags", protocol=protocol
        ) as clf:
            single = await clf.predict("good")
            texts = [f"t{'y' * i}" for i in range(10)]
            many, again = await asyncio.gather(clf.predict(texts), clf.predict(texts[:3]))
            health = await clf.health()
            return single, texts, many, again, health

    single, texts, many, again, health = asyncio.run(run())
    assert single["labels"] == expected_multi("good")
    assert [r["labels"] for r in many] == [expected_multi(t) for t in texts]
    assert again == many[:3]
    assert health["live"] and health["ready"] and health["model_ready"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_down_fails_fast(protocol):
    started = time.monotonic()
    with (
        Classifier(dead_url(), model="sentiment", protocol=protocol, retries=2) as clf,
        pytest.raises(ServerUnavailableError) as info,
    ):
        clf.predict("hello")
    assert time.monotonic() - started < 5
    assert clf.url in str(info.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_server_down(protocol):
    async def run():
        async with AsyncClassifier(dead_url(), protocol=protocol, retries=1) as clf:
            await clf.predict(["hello"])

    with pytest.raises(ServerUnavailableError):
        asyncio.run(run())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_model_lists_available_models(stub_server, protocol):
    with (
        Classifier(url_for(stub_server, protocol), model="nope", protocol=protocol) as clf,
        pytest.raises(ModelNotFoundError) as info,
    ):
        clf.predict("hello")
    assert info.value.model == "nope"
    assert "sentiment (READY)" in str(info.value) and "tags (READY)" in str(info.value)


def test_bad_input_is_rejected_client_side_without_a_request(stub_server):
    with Classifier(stub_server.http_url, model="sentiment") as clf:
        with pytest.raises(InvalidInputError, match=r"texts\[2\]"):
            clf.predict(["a", "b", 3])
        with pytest.raises(InvalidInputError):
            clf.predict(None)


def test_cli_predict_and_health(stub_server, capsys):
    assert (
        cli_main(
            [
                "predict",
                "--url",
                stub_server.grpc_url,
                "--protocol",
                "grpc",
                "--model",
                "tags",
                "good",
                "xy",
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["good", "xy"]
    assert lines[0]["labels"] == expected_multi("good")

    assert cli_main(["health", "--url", stub_server.http_url, "--model", "sentiment"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["live"] and status["ready"] and status["model_ready"]

    assert cli_main(["health", "--url", stub_server.http_url, "--model", "nope"]) == 1
    assert json.loads(capsys.readouterr().out)["model_ready"] is False

    assert cli_main(["health", "--url", dead_url(), "--retries", "0"]) == 1
    assert cli_main(["predict", "--url", stub_server.http_url, "--model", "nope", "x"]) == 1
    assert "ModelNotFoundError" in capsys.readouterr().err
