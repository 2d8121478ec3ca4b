"""End to end against a real `tritonserver` (the pip binary): one server start for all.

The repository holds what `python -m export` publishes for two fine-tuned checkpoints:
`sentiment` (ensemble on int8, as in production) and `tags` (multi-label, thresholds),
plus `sentiment_fp32`, a second ensemble over sentiment's tokenizer and fp32 classifier.
"""

from __future__ import annotations

import json
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from berth_core.checkpoint import BerthConfig
from export.pipeline import ExportConfig, run_export
from export.triton_config import EnsembleModel, ServingSettings, render
from serving.server import TritonServer
from tests.export.checkpoints import held_out_texts
from tests.serving.statistics import settled_counts
from tests.triton_text import text_input
from training.predict import Predictor, decide

pytestmark = [pytest.mark.server, pytest.mark.slow]
PARITY_TEXTS = 240


def _export(checkpoint, repo, out, name, **kw):
    cfg = ExportConfig(
        checkpoint=checkpoint,
        name=name,
        model_repository=repo,
        output_dir=out,
        max_eval_samples=200,
        parity_samples=100,
        latency_runs=2,
        optimize="off",
        # generous queue delays: the dynamic-batching test must see merged batches
        serving=ServingSettings(tokenizer_queue_delay_us=20000, classifier_queue_delay_us=20000),
        **kw,
    )
    return run_export(cfg)


@pytest.fixture(scope="module")
def repository(tmp_path_factory, sentiment_checkpoint, multilabel_checkpoint):
    tmp = tmp_path_factory.mktemp("e2e")
    repo = tmp / "model_repository"
    _export(sentiment_checkpoint, repo, tmp / "export-sentiment", "sentiment")
    _export(
        multilabel_checkpoint,
        repo,
        tmp / "export-tags",
        "tags",
        variants="fp32,int8",
        default_variant="fp32",
        gpu_variant="fp32",
    )
    fp32 = EnsembleModel(
        "sentiment_fp32",
        BerthConfig.load(sentiment_checkpoint),
        "fp32",
        "fp32",
        members="sentiment",
    )
    (repo / "sentiment_fp32/1").mkdir(parents=True)
    (repo / "sentiment_fp32/config.pbtxt").write_text(render(fp32.config()))
    return repo


@pytest.fixture(scope="module")
def server(repository):
    with TritonServer(repository) as server:
        yield server


@pytest.fixture(scope="module")
def http(server):
    client = httpclient.InferenceServerClient(server.http_url, concurrency=4)
    yield client
    client.close()


def http_infer(client, model: str, texts: list[str], chunk: int = 48):
    logits, probs = [], []
    for start in range(0, len(texts), chunk):
        result = client.infer(model, [text_input(httpclient, texts[start : start + chunk])])
        logits.append(result.as_numpy("LOGITS"))
        probs.append(result.as_numpy("PROBABILITIES"))
    return np.concatenate(logits), np.concatenate(probs)


def test_ensemble_metadata_carries_labels(http):
    assert http.is_server_ready()
    for model in ("sentiment", "sentiment_tokenizer", "sentiment_onnx_int8", "tags"):
        assert http.is_model_ready(model), model
    params = {
        k: v["string_value"] for k, v in http.get_model_config("sentiment")["parameters"].items()
    }
    assert json.loads(params["id2label"]) == ["negative", "positive"]
    assert params["problem_type"] == "single_label_classification"
    assert params["variant"] == "int8"


def test_fp32_ensemble_matches_the_reference_predictor(http, sentiment_checkpoint):
    texts = held_out_texts(sentiment_checkpoint, PARITY_TEXTS)
    assert len(texts) >= 200
    reference = Predictor(sentiment_checkpoint)
    ref_logits = reference.logits(texts)
    ref_probs = reference.probabilities(texts)
    logits, probs = http_infer(http, "sentiment_fp32", texts)
    assert (probs.argmax(1) == ref_probs.argmax(1)).all()
    assert np.abs(probs - ref_probs).max() <= 1e-3
    assert np.abs(logits - ref_logits).max() <= 1e-3


def test_int8_ensemble_agrees_over_grpc(server, sentiment_checkpoint):
    texts = held_out_texts(sentiment_checkpoint, PARITY_TEXTS)
    ref = Predictor(sentiment_checkpoint).probabilities(texts)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    probs = []
    for start in range(0, len(texts), 40):
        inp = text_input(grpcclient, texts[start : start + 40])
        probs.append(client.infer("sentiment", [inp]).as_numpy("PROBABILITIES"))
    client.close()
    probs = np.concatenate(probs)
    agreement = (probs.argmax(1) == ref.argmax(1)).mean()
    assert agreement >= 0.99, agreement


def test_multilabel_thresholds_are_applied_identically(http, multilabel_checkpoint):
    texts = held_out_texts(multilabel_checkpoint, 200)
    predictor = Predictor(multilabel_checkpoint)
    params = {k: v["string_value"] for k, v in http.get_model_config("tags")["parameters"].items()}
    assert params["problem_type"] == "multi_label_classification"
    thresholds = np.array(json.loads(params["thresholds"]))
    labels = json.loads(params["id2label"])
    np.testing.assert_allclose(thresholds, predictor.config.decision_thresholds())
    _, probs = http_infer(http, "tags", texts)
    served = [[labels[i] for i in np.flatnonzero(row >= thresholds)] for row in probs]
    expected = [r["labels"] for r in decide(predictor.probabilities(texts), predictor.config)]
    assert served == expected
    assert len({tuple(s) for s in served}) > 1  # the decisions are not all alike


def test_mixed_lengths_are_served_in_one_dynamic_batch(server):
    texts = [("great " * n).strip() + " film" for n in (1, 3, 9, 17, 30, 2, 12, 25)] * 2
    before = {m: settled_counts(server, m) for m in ("sentiment_tokenizer", "sentiment_onnx_int8")}
    client = grpcclient.InferenceServerClient(server.grpc_url)
    done: queue.Queue = queue.Queue()
    for text in texts:  # one request per text, all in flight together
        inp = text_input(grpcclient, [text])
        client.async_infer(
            "sentiment", [inp], callback=lambda result, error: done.put((result, error))
        )
    results = [done.get(timeout=60) for _ in texts]
    client.close()
    assert all(e is None for _, e in results)
    for model in before:
        inferences, executions = (
            a - b
            for a, b in zip(
                settled_counts(server, model, at_least=before[model][0] + len(texts)),
                before[model],
                strict=True,
            )
        )
        assert inferences == len(texts)
        # requests of different token lengths were merged: fewer executions than requests
        assert executions < inferences / 2, (model, inferences, executions)
