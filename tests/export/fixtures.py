"""Session fixtures shared by tests/export and tests/serving (imported by both conftests;
the checkpoints are built once per session: `cached_run` keeps them on disk)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tests.export.checkpoints import cached_run
from training.checkpoint import BerthConfig

# The windowed checkpoint reads texts as up to 4 windows of 64 tokens, 40 apart.
WINDOWS = {"max_windows": 4, "window_stride": 40}


def _runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "berth-runs"


@pytest.fixture(scope="session")
def sentiment_checkpoint(tmp_path_factory, tiny_base_model) -> Path:
    """A tiny BERT fine-tuned on Rotten Tomatoes (negative/positive): runs/<run>/model."""
    return cached_run(_runs_root(tmp_path_factory), "sentiment", tiny_base_model)


@pytest.fixture(scope="session")
def multilabel_checkpoint(tmp_path_factory, tiny_base_model, sentiment_checkpoint) -> Path:
    """Multi-label (positive, negative, film) with per-label thresholds in berth.json."""
    return cached_run(
        _runs_root(tmp_path_factory),
        "tags",
        tiny_base_model,
        multi_label=True,
        epochs=1,
        init_from=sentiment_checkpoint,
    )


def windowed_copy(tmp_path_factory, checkpoint: Path) -> Path:
    """`checkpoint`'s run with window mode in its berth.json (`WINDOWS`): same weights,
    long texts read as windows whose logits are averaged. Built once per session."""
    run = _runs_root(tmp_path_factory) / f"{checkpoint.parent.name}-windows"
    if not (run / ".done").exists():
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(checkpoint.parent, run)
        berth = BerthConfig.load(run / "model")
        dataclasses.replace(berth, **WINDOWS).save(run / "model")
        (run / ".done").touch()
    return run / "model"


@pytest.fixture(scope="session")
def windowed_checkpoint(tmp_path_factory, sentiment_checkpoint) -> Path:
    """The sentiment checkpoint in window mode (see `windowed_copy`)."""
    return windowed_copy(tmp_path_factory, sentiment_checkpoint)
