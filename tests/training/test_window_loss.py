"""`--window-loss text`: a long text's windows in one batch, the loss on their aggregate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from berth_core.encoding import AGGREGATIONS, aggregate
from training.data import Split
from training.train import DataError, PadCollator
from training.window_loss import TextWindows, aggregate_logits, text_loss


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("method", AGGREGATIONS)
def test_the_torch_aggregation_equals_the_served_one(method, multi_label):
    rng = np.random.default_rng(7)
    text = np.array([0, 1, 1, 1, 2, 3, 3])
    weight = rng.integers(1, 60, size=len(text))
    logits = rng.normal(scale=3.0, size=(len(text), 3)).astype(np.float32)
    expected = aggregate(logits, text, weight, method, multi_label)
    got = aggregate_logits(
        torch.from_numpy(logits).double(),
        torch.from_numpy(text),
        torch.from_numpy(weight).double(),
        method,
        multi_label,
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_the_loss_is_cross_entropy_of_the_aggregate_and_reaches_every_window():
    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))

        def forward(self, input_ids, attention_mask):
            features = torch.stack([input_ids.float().mean(1), attention_mask.float().sum(1)], 1)
            return type("Out", (), {"logits": features @ self.weight})()

    model = Linear()
    batch = {
        "input_ids": torch.tensor([[1, 2, 0], [3, 4, 5], [6, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]]),
        "window_text": torch.tensor([0, 0, 1]),
        "window_weight": torch.tensor([2.0, 3.0, 1.0]),
        "labels": torch.tensor([1, 0]),
    }
    loss, per_text = text_loss(model, batch, "mean", multi_label=False)
    window_logits = model(batch["input_ids"], batch["attention_mask"]).logits.detach()
    mean = torch.stack([window_logits[:2].mean(0), window_logits[2]])
    assert torch.allclose(per_text.detach(), mean)
    assert loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(mean, batch["labels"]).item()
    )
    loss.backward()
    assert model.weight.grad.abs().sum() > 0


def test_a_training_set_is_one_item_per_text_and_collates_every_window(
    tmp_path, bbc_windows_config
):
    from training.train import start

    config = bbc_windows_config(
        tmp_path / "run", window_loss="text", max_train_samples=8, max_eval_samples=4
    )
    session = start(config)
    long_text = " ".join(session.data.train.texts[0].split()[:200])
    split = Split(["short text", long_text], session.data.labels[:2], ["a", "b"])
    dataset = session.dataset(split, training=True)
    assert isinstance(dataset, TextWindows) and len(dataset) == 2
    assert len(dataset[0]["input_ids"]) == 1 and len(dataset[1]["input_ids"]) == 3
    batch = PadCollator(session.pad_id)([dataset[0], dataset[1]])
    assert batch["window_text"].tolist() == [0, 1, 1, 1]
    assert batch["labels"].tolist() == [0, 1]
    assert batch["input_ids"].shape == (4, 32)
    # evaluation stays one row per window, aggregated per text afterwards
    assert len(session.dataset(split)) == 4


def test_training_with_the_aggregated_loss_learns(tmp_path, bbc_windows_config):
    from training.train import train

    # 16 texts learnt fast: a high learning rate from the first step, every epoch run
    fast = {"epochs": 8, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "patience": 0}
    sizes = {"max_train_samples": 16, "max_eval_samples": 8}
    result = train(
        bbc_windows_config(tmp_path / "run", window_stride=24, window_loss="text", **fast, **sizes)
    )
    losses = [entry["loss"] for entry in result.metrics["train_log"] if "loss" in entry]
    assert len(losses) >= 2 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert result.metrics["config"]["window_loss"] == "text"


def test_distillation_refuses_the_aggregated_loss():
    from training.distill import DistillConfig

    with pytest.raises(DataError, match="window-loss"):
        DistillConfig(teacher="t", window_loss="text").validate()
