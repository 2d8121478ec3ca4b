"""How `--optimize auto` times and picks the int8 graph (the export test runs it for real)."""

from __future__ import annotations

import numpy as np
import pytest

from export import evaluate
from export.build import choose_int8
from export.evaluate import interleaved_median_ms
from tests.fake_clock import FakeClock

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
    """Stands in for OnnxClassifier: records the order of its `run` calls; its n-th call
    takes `costs[n]` seconds on `clock`."""

    def __init__(self, name: str, calls: list[str], clock: FakeClock, costs: list[float]) -> None:
        self.name, self.calls, self.clock, self.costs = name, calls, clock, costs

    def encode(self, texts):
        ids = np.ones((len(texts), 4), dtype=np.int64)
        return ids, ids

    def run(self, ids, mask):
        self.calls.append(self.name)
        self.clock.now += self.costs[self.calls.count(self.name) - 1]


def test_candidates_are_timed_in_turns(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(evaluate.time, "perf_counter", clock)
    calls: list[str] = []
    # per runner, the seconds its successive runs take (the warm-up first)
    costs = {"a": [0.001] * 5, "b": [0.002] * 5, "c": [0.5, 0.003, 0.004, 0.003, 0.1]}
    runners = {name: Recorder(name, calls, clock, costs[name]) for name in costs}
    result = interleaved_median_ms(runners, ["one text", "another"], batch_size=2, runs=4)
    assert calls[:3] == ["a", "b", "c"]  # warm-ups
    assert calls[3:] == ["a", "b", "c"] * 4
    # c's timed runs take 3, 4, 3 and 100 ms (the 500 ms warm-up is not timed): median 3.5
    assert result == pytest.approx({"a": 1.0, "b": 2.0, "c": 3.5})
