"""How `--optimize auto` times and picks the int8 graph (the export test runs it for real)."""

from __future__ import annotations

import numpy as np

from export.evaluate import interleaved_median_ms
from export.pipeline import choose_int8

SLN = ("SkipLayerNormFusion",)
CANDIDATES = [("unfused", ()), ("fused", ()), ("unfused", SLN)]


def times(unfused: float, fused: float, without_sln: float) -> dict[str, float]:
    return {"unfused": unfused, "fused": fused, "unfused -SkipLayerNormFusion": without_sln}


def test_another_graph_needs_5_percent_a_disabled_fusion_2():
    assert choose_int8(CANDIDATES, times(100, 96, 99)) == ("unfused", ())
    assert choose_int8(CANDIDATES, times(100, 96, 97)) == ("unfused", SLN)
    assert choose_int8(CANDIDATES, times(100, 90, 97)) == ("fused", ())
    assert choose_int8(CANDIDATES, times(100, 120, 101)) == ("unfused", ())


class Recorder:
    """Stands in for OnnxClassifier: records the order of its `run` calls."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def encode(self, texts):
        ids = np.ones((len(texts), 4), dtype=np.int64)
        return ids, ids

    def run(self, ids, mask):
        self.calls.append(self.name)


def test_candidates_are_timed_in_turns():
    calls: list[str] = []
    runners = {name: Recorder(name, calls) for name in ("a", "b", "c")}
    result = interleaved_median_ms(runners, ["one text", "another"], batch_size=2, runs=4)
    assert calls[:3] == ["a", "b", "c"]  # warm-ups
    assert calls[3:] == ["a", "b", "c"] * 4
    assert set(result) == {"a", "b", "c"} and all(ms >= 0 for ms in result.values())
