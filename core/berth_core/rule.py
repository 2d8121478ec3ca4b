"""Logits → probabilities → prediction records: the one decision rule of berth.

The reference predictor applies it to a checkpoint's logits, export's gates to the ONNX
graphs', berth-client to the served probabilities, so a label means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class LabelSpace(Protocol):
    """What the rule needs of a model: `BerthConfig` (berth.json) and berth-client's
    `ModelInfo` (the served config) both have it."""

    labels: Sequence[str]

    @property
    def multi_label(self) -> bool: ...

    def decision_thresholds(self) -> list[float]: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits)))


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Softmax (single-label) or sigmoid (multi-label) of float logits."""
    return sigmoid(logits) if multi_label else softmax(logits)


def decide(probs: np.ndarray, space: LabelSpace) -> list[dict]:
    """Probabilities → prediction records.

    Single-label: `{"label", "confidence", "probabilities"}` for the argmax.
    Multi-label: `{"label", "labels", "confidence", "probabilities"}`, where `labels`
    are all labels at or above their threshold and `label` is the most probable of
    them (None when none passes; `confidence` is then the highest probability).
    """
    labels = list(space.labels)
    thresholds = np.asarray(space.decision_thresholds(), dtype=np.float32)
    return [
        _record(row, labels, thresholds, space.multi_label)
        for row in np.asarray(probs, dtype=np.float64).reshape(-1, len(labels))
    ]


def _record(row: np.ndarray, labels: list[str], thresholds: np.ndarray, multi: bool) -> dict:
    named = {name: float(p) for name, p in zip(labels, row, strict=True)}
    best = int(row.argmax())
    if not multi:
        return {"label": labels[best], "confidence": float(row[best]), "probabilities": named}
    chosen = [labels[i] for i in np.flatnonzero(row >= thresholds)]
    top = max(chosen, key=named.__getitem__) if chosen else None
    return {
        "label": top,
        "labels": chosen,
        "confidence": named[top] if top else float(row[best]),
        "probabilities": named,
    }
