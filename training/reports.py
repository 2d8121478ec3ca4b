"""Run reports: sklearn classification report, confusion matrix and training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def classification_report_text(
    truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str], multi_label: bool
) -> str:
    from sklearn.metrics import classification_report

    kwargs = {} if multi_label else {"labels": list(range(len(labels)))}
    return classification_report(
        truth, predicted, target_names=list(labels), digits=4, zero_division=0, **kwargs
    )


def plot_confusion_matrix(
    truth: np.ndarray,
    predicted: np.ndarray,
    labels: Sequence[str],
    multi_label: bool,
    path: Path,
) -> Path:
    """Single-label: one matrix; multi-label: one 2x2 matrix per label."""
    from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix

    plt = _pyplot()
    if not multi_label:
        matrix = confusion_matrix(truth, predicted, labels=list(range(len(labels))))
        size = max(4.0, 0.8 * len(labels) + 2)
        fig, ax = plt.subplots(figsize=(size, size))
        _draw_matrix(ax, matrix, list(labels), list(labels))
        ax.set_title("Confusion matrix (test)")
    else:
        matrices = multilabel_confusion_matrix(truth, predicted)
        cols = min(4, len(labels))
        rows = -(-len(labels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
        for ax in axes.flat[len(labels) :]:
            ax.axis("off")
        for ax, name, matrix in zip(axes.flat, labels, matrices, strict=False):
            _draw_matrix(ax, matrix, ["no", "yes"], ["no", "yes"])
            ax.set_title(name)
        fig.suptitle("Per-label confusion matrices (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_matrix(ax, matrix: np.ndarray, rows: list[str], cols: list[str]) -> None:
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = matrix.max() if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > peak / 2 else "black",
            )


def plot_training_curves(
    history: list[dict], train_log: list[dict], metric: str, path: Path
) -> Path:
    """The training loss at every logging step, the validation loss and the selection
    metric at every evaluation; x is the epoch, so runs of different lengths compare."""
    plt = _pyplot()
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4))

    def series(key):
        points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    if train_log:
        xs = [e["epoch"] for e in train_log]
        loss_ax.plot(xs, [e["loss"] for e in train_log], linewidth=1, label="train loss")
    xs, ys = series("eval_loss")
    if xs:
        loss_ax.plot(xs, ys, marker="o", label="validation loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("Loss")
    loss_ax.legend()
    # a student's runs also draw its agreement with the teacher, whatever selects
    for name in dict.fromkeys([metric, "teacher_agreement", "unlabelled_agreement"]):
        xs, ys = series(f"eval_{name}")
        if xs:
            metric_ax.plot(xs, ys, marker="o", label=name)
    metric_ax.set_xlabel("epoch")
    metric_ax.set_ylabel(metric)
    metric_ax.set_title(f"Validation {metric}")
    if metric_ax.get_legend_handles_labels()[0]:
        metric_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
