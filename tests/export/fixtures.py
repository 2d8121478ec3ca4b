"""Session fixtures shared by tests/export and tests/serving (imported by both conftests;
the checkpoints are built once per session: `cached_run` keeps them on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.export.checkpoints import cached_run


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
