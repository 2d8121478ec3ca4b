"""Parameter groups (weight decay, LLRD), metrics and multi-label thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from berth_core.checkpoint import MULTI_LABEL, BerthConfig
from training.metrics import classification_metrics, f1_at, tune_thresholds
from training.optim import build_optimizer, optimizer_groups, parameter_groups


@pytest.fixture(scope="module")
def tiny_classifier(tiny_base_model):
    return AutoModelForSequenceClassification.from_pretrained(
        tiny_base_model, num_labels=3, use_safetensors=True
    )


def lr_of(groups, name):
    return next(g["lr"] for g in groups if name in g["names"])


def decay_of(groups, name):
    return next(g["weight_decay"] for g in groups if name in g["names"])


def test_no_decay_on_bias_and_layernorm(tiny_classifier):
    groups = parameter_groups(tiny_classifier, lr=1e-4, weight_decay=0.01)
    names = {n for g in groups for n in g["names"]}
    assert names == {n for n, _ in tiny_classifier.named_parameters()}
    for name in names:
        expected = 0.0 if name.endswith("bias") or "LayerNorm" in name else 0.01
        assert decay_of(groups, name) == expected, name
    assert decay_of(groups, "bert.encoder.layer.0.attention.self.query.weight") == 0.01
    assert decay_of(groups, "bert.embeddings.word_embeddings.weight") == 0.01
    assert decay_of(groups, "classifier.weight") == 0.01
    assert {g["lr"] for g in groups} == {1e-4}  # LLRD off


def test_layer_wise_lr_decay(tiny_classifier):
    groups = parameter_groups(tiny_classifier, lr=1e-3, weight_decay=0.01, layer_lr_decay=0.5)
    # 2 layers: layer 1 → lr*0.5, layer 0 → lr*0.25, embeddings → lr*0.125, head → lr
    assert lr_of(groups, "classifier.weight") == pytest.approx(1e-3)
    assert lr_of(groups, "bert.pooler.dense.weight") == pytest.approx(1e-3)
    assert lr_of(groups, "bert.encoder.layer.1.output.dense.weight") == pytest.approx(5e-4)
    assert lr_of(groups, "bert.encoder.layer.0.output.dense.weight") == pytest.approx(2.5e-4)
    assert lr_of(groups, "bert.encoder.layer.0.output.LayerNorm.weight") == pytest.approx(2.5e-4)
    assert lr_of(groups, "bert.embeddings.word_embeddings.weight") == pytest.approx(1.25e-4)
    assert lr_of(groups, "bert.embeddings.LayerNorm.bias") == pytest.approx(1.25e-4)
    assert decay_of(groups, "bert.embeddings.LayerNorm.bias") == 0.0
    optimizer = build_optimizer(tiny_classifier, 1e-3, 0.01, 0.5)
    assert type(optimizer) is torch.optim.AdamW
    # every parameter in exactly one group; no decay on biases and LayerNorm weights
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(tiny_classifier.parameters()))
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.01}
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx(
        [1.25e-4, 2.5e-4, 5e-4, 1e-3]
    )


def test_optimizer_is_fused_on_cpu_and_steps_as_the_loop_does(tiny_classifier):
    """The fused kernel (a sixth of the per-tensor loop's time on CPU) is what trains,
    and it moves the weights as the loop would, to float rounding."""
    import copy

    initial = copy.deepcopy(tiny_classifier)
    loop_model = copy.deepcopy(tiny_classifier)
    fused = build_optimizer(tiny_classifier, 1e-3, 0.01)
    assert fused.defaults["fused"] is True
    loop = torch.optim.AdamW(optimizer_groups(loop_model, 1e-3, 0.01), lr=1e-3, foreach=False)
    torch.manual_seed(0)
    for _ in range(3):
        for a, b in zip(tiny_classifier.parameters(), loop_model.parameters(), strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        fused.step()
        loop.step()
    models = (tiny_classifier, loop_model, initial)
    for trained, looped, before in zip(*(m.parameters() for m in models), strict=True):
        torch.testing.assert_close(trained, looped)
        assert not torch.equal(trained, before)


def test_single_label_metrics():
    config = BerthConfig(labels=["a", "b", "c"])
    logits = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]], dtype=np.float32)
    metrics = classification_metrics(logits, np.array([0, 1, 2, 2]), config)
    assert metrics["accuracy"] == pytest.approx(0.75)
    # predicted a, b, c, a: F1 a = 2/3 (P 1/2, R 1), b = 1, c = 2/3 (P 1, R 1/2)
    assert metrics["macro_f1"] == pytest.approx(7 / 9)
    assert metrics["weighted_f1"] == pytest.approx((2 / 3 + 1 + 2 * 2 / 3) / 4)


def test_threshold_tuning_improves_f1():
    rng = np.random.default_rng(0)
    truth = np.zeros((200, 2))
    truth[:60, 0] = 1
    truth[::2, 1] = 1
    probs = np.empty((200, 2))
    # label 0: a weak model, positives at 0.25-0.45, negatives at 0.0-0.2 → 0.5 finds none
    probs[:, 0] = np.where(
        truth[:, 0] == 1, rng.uniform(0.25, 0.45, 200), rng.uniform(0.0, 0.2, 200)
    )
    # label 1: well separated around 0.5
    probs[:, 1] = np.where(truth[:, 1] == 1, 0.9, 0.1)
    thresholds = tune_thresholds(probs, truth)
    assert 0.2 <= thresholds[0] <= 0.25
    assert thresholds[1] == 0.5  # ties keep 0.5
    assert f1_at(probs[:, 0], truth[:, 0] == 1, 0.5) == 0.0
    assert f1_at(probs[:, 0], truth[:, 0] == 1, thresholds[0]) == 1.0
    config = BerthConfig(labels=["x", "y"], problem_type=MULTI_LABEL)
    logits = np.log(probs / (1 - probs))
    before = classification_metrics(logits, truth, config)
    config.thresholds = thresholds
    after = classification_metrics(logits, truth, config)
    assert before["macro_f1"] < 0.75
    assert after["macro_f1"] == pytest.approx(1.0)
    assert after["accuracy"] == pytest.approx(1.0)
