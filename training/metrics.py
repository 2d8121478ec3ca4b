"""Evaluation metrics and multi-label threshold tuning.

Decisions go through `berth_core.rule.decide` (the reference predictor's rule), so the
numbers training reports are the numbers the predictor, export and serving reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from berth_core.checkpoint import BerthConfig
from berth_core.rule import decide, probabilities

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 4)


def predictions(logits: np.ndarray, config: BerthConfig) -> np.ndarray:
    """Class indices (single-label) or a 0/1 indicator matrix (multi-label)."""
    return decisions(
        probabilities(np.asarray(logits, dtype=np.float64), config.multi_label), config
    )


def decisions(probs: np.ndarray, config: BerthConfig) -> np.ndarray:
    """`predictions` from probabilities (softmax or sigmoid, as the served model answers)."""
    records = decide(probs, config)
    index = {name: i for i, name in enumerate(config.labels)}
    if not config.multi_label:
        return np.array([index[r["label"]] for r in records], dtype=np.int64)
    out = np.zeros((len(records), len(config.labels)), dtype=np.int64)
    for row, record in enumerate(records):
        for name in record["labels"]:
            out[row, index[name]] = 1
    return out


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, config: BerthConfig
) -> dict[str, float]:
    """accuracy, macro/micro/weighted F1 (+ micro precision/recall for multi-label;
    accuracy is the exact-match ratio there), each from 0 to 1."""
    probs = probabilities(np.asarray(logits, dtype=np.float64), config.multi_label)
    return probability_metrics(probs, labels, config)


def probability_metrics(
    probs: np.ndarray, labels: np.ndarray, config: BerthConfig
) -> dict[str, float]:
    """`classification_metrics` of probabilities (export scores the ONNX graph's)."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return {}
    predicted = decisions(probs, config)
    if config.multi_label:
        truth = (labels >= 0.5).astype(np.int64)
        return {
            "accuracy": float(accuracy_score(truth, predicted)),
            "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "micro_precision": float(
                precision_score(truth, predicted, average="micro", zero_division=0)
            ),
            "micro_recall": float(recall_score(truth, predicted, average="micro", zero_division=0)),
            "hamming_accuracy": float((truth == predicted).mean()),
        }
    truth = labels.astype(np.int64)
    every = list(range(len(config.labels)))
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(
            f1_score(truth, predicted, average="macro", labels=every, zero_division=0)
        ),
        "micro_f1": float(
            f1_score(truth, predicted, average="micro", labels=every, zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(truth, predicted, average="weighted", labels=every, zero_division=0)
        ),
    }


def f1_at(probs: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    predicted = probs >= threshold
    tp = float(np.sum(predicted & truth))
    fp = float(np.sum(predicted & ~truth))
    fn = float(np.sum(~predicted & truth))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def tune_thresholds(
    probs: np.ndarray, truth: np.ndarray, grid: Sequence[float] = THRESHOLD_GRID
) -> list[float]:
    """Per label, the threshold that maximizes F1 on (validation) probabilities.

    Ties go to the threshold closest to 0.5; a label without positives (or with F1 0
    everywhere) keeps 0.5.
    """
    probs = np.asarray(probs, dtype=np.float64)
    truth = np.asarray(truth) >= 0.5
    out = []
    for j in range(probs.shape[1]):
        best, best_f1 = 0.5, f1_at(probs[:, j], truth[:, j], 0.5)
        for threshold in grid:
            score = f1_at(probs[:, j], truth[:, j], float(threshold))
            if score > best_f1 + 1e-12 or (
                abs(score - best_f1) <= 1e-12 and abs(threshold - 0.5) < abs(best - 0.5)
            ):
                best, best_f1 = float(threshold), score
        out.append(best)
    return out


def agreement(
    logits: np.ndarray, reference_logits: np.ndarray, config: BerthConfig, reference: BerthConfig
) -> float:
    """Share of texts decided as a reference model decides them (a student against its
    teacher): the label for single-label, the whole label set for multi-label; each model
    with its own thresholds."""
    if len(logits) == 0:
        return float("nan")
    mine = decide(probabilities(np.asarray(logits, np.float64), config.multi_label), config)
    theirs = decide(
        probabilities(np.asarray(reference_logits, np.float64), reference.multi_label), reference
    )
    key = "labels" if config.multi_label else "label"
    return float(np.mean([a[key] == b[key] for a, b in zip(mine, theirs, strict=True)]))
