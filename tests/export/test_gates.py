"""The gates at their thresholds: a figure exactly at the limit passes (the rules are
`<=` as coded), one just past it is refused and nothing is published."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from berth_core.errors import GateError
from export.config import ExportConfig
from export.gates import apply_gates
from export.pipeline import ExportRefused, publish_or_refuse
from tests.export import crafted
from tests.export.trees import tree_hash

PAST_79 = float(np.nextafter(79.0, 0.0))  # the largest float below 79: a loss just over 1
TOLERANCE = 1e-3
PAST_TOLERANCE = float(np.nextafter(TOLERANCE, 1.0))


def config(tmp_path, **kw) -> ExportConfig:
    base = dict(
        checkpoint=tmp_path,
        variants="fp32,fp16,int8",
        default_variant="int8",
        gpu_variant="fp32",
        max_accuracy_drop=1.0,
        parity_tolerance=TOLERANCE,
    )
    return ExportConfig(**{**base, **kw})


def test_an_accuracy_loss_of_exactly_the_limit_passes(tmp_path):
    gates = apply_gates(
        config(tmp_path), [crafted.score("fp32", 80.0), crafted.score("int8", 79.0)]
    )
    int8 = gates.of("int8")
    assert (int8.drop, int8.verdict, int8.passed) == (1.0, "ok", True)
    assert not gates.fatal and gates.refusals == [] and gates.passed == ["fp32", "int8"]


def test_an_accuracy_loss_just_past_the_limit_is_refused(tmp_path):
    gates = apply_gates(
        config(tmp_path), [crafted.score("fp32", 80.0), crafted.score("int8", PAST_79)]
    )
    int8 = gates.of("int8")
    assert int8.drop > 1.0 and int8.verdict == "refused: accuracy"
    assert gates.fatal  # int8 is the CPU ensemble's variant
    assert gates.passed == ["fp32"]
    (refusal,) = gates.refusals
    assert refusal.startswith("int8 refused: accuracy 79.00 vs fp32 80.00 loses 1.00 points")
    with pytest.raises(ExportRefused, match="int8 refused"):
        gates.raise_if_fatal()


def test_skip_refused_drops_only_a_variant_no_ensemble_serves(tmp_path):
    scores = [
        crafted.score("fp32", 80.0),
        crafted.score("fp16", PAST_79),
        crafted.score("int8", 79.0),
    ]
    gates = apply_gates(config(tmp_path, skip_refused=True), scores)
    assert gates.of("fp16").verdict == "refused: accuracy" and not gates.fatal
    assert gates.passed == ["fp32", "int8"]
    scores[2] = crafted.score("int8", PAST_79)  # the CPU ensemble's: fatal all the same
    assert apply_gates(config(tmp_path, skip_refused=True), scores).fatal


@pytest.mark.parametrize(
    ("logit_diff", "argmax", "verdict"),
    [
        (TOLERANCE, 1.0, "ok"),  # exactly the tolerance
        (PAST_TOLERANCE, 1.0, "refused: parity"),
        (0.0, 1.0 - 1 / 256, "refused: parity"),  # one argmax of 256 differs
    ],
)
def test_fp32_parity_at_the_tolerance(tmp_path, logit_diff, argmax, verdict):
    scores = [crafted.score("fp32", 80.0, logit_diff, argmax), crafted.score("int8", 80.0)]
    gates = apply_gates(config(tmp_path, skip_refused=True), scores)
    assert gates.of("fp32").verdict == verdict
    assert gates.fatal == (verdict != "ok")  # --skip-refused never skips the reference
    if verdict != "ok":
        assert gates.refusals[0].startswith("fp32 parity failed")


def test_the_reference_refusal_comes_first_whatever_the_order(tmp_path):
    cfg = config(tmp_path, variants="int8,fp32")
    scores = [crafted.score("int8", 10.0), crafted.score("fp32", 80.0, logit_diff=1.0)]
    refusals = apply_gates(cfg, scores).refusals
    assert [r.split()[0] for r in refusals] == ["fp32", "int8"]


def test_at_the_limit_publishes_just_past_it_publishes_nothing(tmp_path):
    """Through what run_export does after scoring: the gates, the report, publishing."""
    run = crafted.run(tmp_path)
    graphs = crafted.graphs(run)
    at_limit = [crafted.score("fp32", 80.0), crafted.score("int8", 79.0)]
    report = publish_or_refuse(run, graphs, at_limit)
    assert report["status"] == "published" and report["version"] == 1
    assert report["published_variants"] == ["fp32", "int8"]
    repo = run.cfg.model_repository
    assert onnx.load(repo / "sentiment_onnx_int8/1/model.onnx").graph.name == "int8 graph"
    before = tree_hash(repo)

    past = [crafted.score("fp32", 80.0), crafted.score("int8", PAST_79)]
    with pytest.raises(GateError, match="nothing published") as refused:
        publish_or_refuse(run, graphs, past)
    assert isinstance(refused.value, ExportRefused)
    assert tree_hash(repo) == before  # no version 2, no config rewritten
    written = json.loads((run.out / "export_report.json").read_text())
    assert written["status"] == "refused" and "version" not in written
    assert [v["verdict"] for v in written["variants"]] == ["ok", "refused: accuracy"]
