"""The aggregation Triton model: a request's window logits → one row per text, with
training's own aggregation (`berth_core.encoding`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import berth_core
from berth_core.checkpoint import MULTI_LABEL
from berth_core.encoding import aggregate, probabilities
from serving.aggregate_model import model as aggregate_model
from tests.serving import fake_pb_utils

ROOT = Path(__file__).resolve().parents[2]
LOGITS = np.array([[1.0, -1.0, 0.5], [3.0, 0.0, -2.0], [0.0, 2.0, 1.0], [-2.0, 4.0, 0.0]])
WINDOWS = np.array([[0, 10], [1, 30], [1, 12], [2, 7]])


@pytest.fixture
def version_dir(tmp_path) -> Path:
    """An aggregation version directory laid out as export publishes it."""
    d = tmp_path / "1"
    d.mkdir()
    shutil.copy(ROOT / "serving/aggregate_model/model.py", d / "model.py")
    berth_core.copy_to(d)
    return d


@pytest.mark.parametrize("method", ["mean", "max", "weighted", "mean_prob"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_served_aggregation_is_trainings(version_dir, method, multi_label):
    agg = aggregate_model.Aggregation(version_dir, method, multi_label)
    logits, probs = agg(LOGITS.astype(np.float32), WINDOWS)
    expected = aggregate(LOGITS, WINDOWS[:, 0], WINDOWS[:, 1], method, multi_label)
    assert logits.dtype == probs.dtype == np.float32 and logits.shape == (3, 3)
    np.testing.assert_allclose(logits, expected, rtol=1e-6)
    np.testing.assert_allclose(probs, probabilities(expected, multi_label), rtol=1e-6)


def test_requests_are_answered_one_row_per_text_and_a_bad_one_fails_alone(
    version_dir, triton_model
):
    model = triton_model(aggregate_model, version_dir, aggregation="mean", problem_type="")
    requests = [
        fake_pb_utils.InferenceRequest(logits=LOGITS.astype(np.float32), windows=WINDOWS),
        fake_pb_utils.InferenceRequest(logits=LOGITS[:1].astype(np.float32), windows=WINDOWS),
        fake_pb_utils.InferenceRequest(
            logits=LOGITS[:2].astype(np.float32), windows=np.array([[1, 3], [2, 3]])
        ),
        fake_pb_utils.InferenceRequest(logits=LOGITS[:1].astype(np.float32), windows=WINDOWS[:1]),
    ]
    good, short, unordered, single = model.execute(requests)
    assert good.error is None and good.output_tensors["LOGITS"].shape == (3, 3)
    np.testing.assert_allclose(good.output_tensors["LOGITS"][1], LOGITS[1:3].mean(0))
    assert "4 windows" in short.error.message and "start at 0" in unordered.error.message
    np.testing.assert_array_equal(single.output_tensors["LOGITS"], LOGITS[:1].astype(np.float32))
    row = single.output_tensors["PROBABILITIES"][0]
    assert row.sum() == pytest.approx(1.0, abs=1e-6)


def test_multi_label_probabilities_are_sigmoids(version_dir, triton_model):
    model = triton_model(aggregate_model, version_dir, aggregation="max", problem_type=MULTI_LABEL)
    (response,) = model.execute(
        [fake_pb_utils.InferenceRequest(logits=LOGITS.astype(np.float32), windows=WINDOWS)]
    )
    logits = response.output_tensors["LOGITS"]
    np.testing.assert_allclose(logits[1], LOGITS[1:3].max(0))
    np.testing.assert_allclose(
        response.output_tensors["PROBABILITIES"], 1 / (1 + np.exp(-logits)), rtol=1e-6
    )


def test_unknown_aggregation_is_refused_at_load(version_dir):
    with pytest.raises(ValueError, match="median"):
        aggregate_model.Aggregation(version_dir, "median")
