"""The client against the real ensembles (tokenizer → int8 ONNX in tritonserver),
published by `python -m export`: the same decisions as the PyTorch reference predictor,
over both protocols, sync and asyncio, for binary and multi-label models."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from berth_client import AsyncClassifier, Classifier
from tests.client.ensembles import MULTI, SINGLE
from tests.export.checkpoints import held_out_texts

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def reference(ensemble):
    from training.predict import Predictor

    _, checkpoints = ensemble
    texts = held_out_texts(checkpoints[SINGLE], 100)  # 100 > max batch size 64
    out = {}
    for name, checkpoint in checkpoints.items():
        predictor = Predictor(checkpoint)
        out[name] = (predictor.probabilities(texts), predictor.predict(texts))
    return texts, out


def agreement(records, expected, key):
    return np.mean([r[key] == e[key] for r, e in zip(records, expected, strict=True)])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_matches_the_reference_predictor(ensemble, reference, protocol):
    server, _ = ensemble
    texts, ref = reference
    url = server.http_url if protocol == "http" else server.grpc_url
    with Classifier(url, model=SINGLE, protocol=protocol) as clf:
        info = clf.model_info()
        assert info.labels == ["negative", "positive"] and info.max_batch_size < len(texts)
        records = clf.predict(texts)
        single = clf.predict(texts[0])
    probs = np.array([[r["probabilities"][n] for n in info.labels] for r in records])
    ref_probs, ref_records = ref[SINGLE]
    assert np.abs(probs - ref_probs).max() < 0.05  # int8 vs fp32 PyTorch
    assert agreement(records, ref_records, "label") >= 0.95
    assert single == records[0] or abs(single["confidence"] - records[0]["confidence"]) < 0.02


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_multi_label(ensemble, reference, protocol):
    from berth_core.checkpoint import BerthConfig

    server, checkpoints = ensemble
    berth = BerthConfig.load(checkpoints[MULTI])
    texts, ref = reference
    url = server.http_url if protocol == "http" else server.grpc_url
    with Classifier(url, model=MULTI, protocol=protocol) as clf:
        info = clf.model_info()
        assert info.multi_label
        assert info.labels == berth.labels and info.thresholds == berth.thresholds
        records = clf.predict(texts)
    _, ref_records = ref[MULTI]
    assert all(set(r) == {"label", "labels", "confidence", "probabilities"} for r in records)
    assert agreement(records, ref_records, "labels") >= 0.9


def test_asyncio_both_protocols(ensemble, reference):
    server, _ = ensemble
    texts, ref = reference

    async def run(url, protocol):
        async with AsyncClassifier(url, model=SINGLE, protocol=protocol) as clf:
            return await clf.predict(texts)

    async def both():
        return await asyncio.gather(run(server.http_url, "http"), run(server.grpc_url, "grpc"))

    http_records, grpc_records = asyncio.run(both())
    for records in (http_records, grpc_records):
        assert agreement(records, ref[SINGLE][1], "label") >= 0.95
