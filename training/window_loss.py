"""Window mode's aggregated loss (`--window-loss text`).

By default a long training text contributes each of its windows with the text's label,
so a window that says nothing about the verdict is still taught to carry it. With the
aggregated loss a text's windows go through the model in the same batch, their logits
are aggregated by the rule the served ensemble applies (berth.json's `aggregation`) and
the loss is taken once per text on the aggregate. Which trains the better model is a
question for validation (BENCHMARKS.md); evaluation is per text either way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from berth_core.encoding import Windows, pad

WINDOW_LOSSES = ("windows", "text")


class TextWindows(torch.utils.data.Dataset):
    """One item per text: all its windows (`input_ids`, a list of id lists, so that
    `--group-by-length` groups texts by window count), their weights and the label."""

    def __init__(self, windows: Windows, labels: list) -> None:
        bounds = np.r_[windows.first(), len(windows)]
        self.groups = [range(a, b) for a, b in itertools.pairwise(bounds)]
        self.windows = windows
        self.labels = labels

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict:
        rows = self.groups[i]
        return {
            "input_ids": [self.windows.ids[r] for r in rows],
            "window_weight": [int(self.windows.weight[r]) for r in rows],
            "labels": self.labels[i],
        }


def collate_text_windows(features: list[dict], pad_id: int, multi_label: bool) -> dict:
    """Every window of every text in the batch as one padded batch, with `window_text`
    (the text each row belongs to, 0..texts-1) and `window_weight`; one label per text."""
    rows = [ids for f in features for ids in f["input_ids"]]
    text = [i for i, f in enumerate(features) for _ in f["input_ids"]]
    weight = [w for f in features for w in f["window_weight"]]
    ids, mask = pad(rows, pad_id)
    dtype = torch.float32 if multi_label else torch.long
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "window_text": torch.tensor(text, dtype=torch.long),
        "window_weight": torch.tensor(weight, dtype=torch.float32),
        "labels": torch.tensor([f["labels"] for f in features], dtype=dtype),
    }


def aggregate_logits(
    logits: torch.Tensor,
    text: torch.Tensor,
    weight: torch.Tensor,
    method: str,
    multi_label: bool,
) -> torch.Tensor:
    """Differentiable twin of `berth_core.encoding.aggregate`: window logits [rows, labels]
    → text logits [texts, labels] (tested equal to it)."""
    texts = int(text.max()) + 1
    index = text.view(-1, 1).expand_as(logits)
    zeros = logits.new_zeros(texts, logits.shape[1])
    count = zeros[:, :1].index_add(0, text, torch.ones_like(logits[:, :1]))
    if method == "max":
        return zeros.scatter_reduce(0, index, logits, "amax", include_self=False)
    if method == "weighted":
        w = weight.to(logits.dtype).view(-1, 1)
        return zeros.index_add(0, text, logits * w) / zeros[:, :1].index_add(0, text, w)
    if method == "mean_prob":
        return _mean_probability(logits, text, zeros, count, multi_label)
    return zeros.index_add(0, text, logits) / count


def _mean_probability(logits, text, zeros, count, multi_label: bool) -> torch.Tensor:
    probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)
    mean = (zeros.index_add(0, text, probs) / count).clamp(1e-30, 1.0 - 1e-15)
    if multi_label:
        return torch.log(mean) - torch.log1p(-mean)
    lse = torch.logsumexp(logits, -1, keepdim=True)
    return torch.log(mean) + zeros[:, :1].index_add(0, text, lse) / count


def text_loss(
    model, inputs: dict, aggregation: str, multi_label: bool, label_smoothing: float = 0.0
):
    """(loss, text logits) of a `collate_text_windows` batch."""
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    text, weight = inputs.pop("window_text"), inputs.pop("window_weight")
    logits = model(**inputs).logits
    per_text = aggregate_logits(logits, text, weight, aggregation, multi_label)
    if multi_label:
        loss = functional.binary_cross_entropy_with_logits(per_text, labels.to(per_text.dtype))
    else:
        loss = functional.cross_entropy(per_text, labels, label_smoothing=label_smoothing)
    return loss, per_text


@dataclass
class WindowLoss:
    """What BerthTrainer needs to take the aggregated loss."""

    aggregation: str
    multi_label: bool
    label_smoothing: float = 0.0

    def __call__(self, model, inputs: dict):
        return text_loss(model, inputs, self.aggregation, self.multi_label, self.label_smoothing)
