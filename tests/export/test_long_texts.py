"""`python -m export.long_texts`: accuracy by strategy on long texts, and the demo's
long-review printout, on the tiny fine-tuned checkpoint."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from berth_core.checkpoint import BerthConfig
from export.long_texts import main, show_long_reviews
from tests.export.checkpoints import rotten_tomatoes
from training.predict import Predictor

pytestmark = pytest.mark.slow
STRATEGIES = [
    "head",
    "head+tail",
    "windows mean",
    "windows max",
    "windows weighted",
    "windows mean_prob",
    "every window mean",
]


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    """24 long texts of real snippets (12 each, about 330 tokens), labelled by the
    majority of their snippets."""
    rows = rotten_tomatoes()[1000:1288]
    path = tmp_path_factory.mktemp("long") / "long.jsonl"
    with open(path, "w") as f:
        for start in range(0, len(rows), 12):
            group = rows[start : start + 12]
            positive = sum(label == "positive" for _, label in group)
            label = "positive" if positive * 2 >= len(group) else "negative"
            f.write(json.dumps({"text": " ".join(t for t, _ in group), "label": label}) + "\n")
    return path


def test_every_strategy_is_scored_and_the_windows_are_the_predictors(
    sentiment_checkpoint, long_file, tmp_path, capsys
):
    out, texts_out = tmp_path / "result.json", tmp_path / "texts.jsonl"
    args = ["--checkpoint", str(sentiment_checkpoint), "--eval-file", str(long_file)]
    args += ["--window-stride", "40", "--max-windows", "4"]
    assert main([*args, "--output", str(out), "--texts-out", str(texts_out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["results"]) == STRATEGIES
    assert report["texts"] == 24 and report["mean_windows"] == 4.0
    assert report["longer_than_max_length"] == 1.0 and report["mean_tokens"] > 250
    assert "| windows mean |" in capsys.readouterr().out
    rows = [json.loads(line) for line in texts_out.read_text().splitlines()]
    assert len(rows) == 24 and set(rows[0]) == {"text", "label"}
    # the strategies are the reference predictor's readings of the texts
    berth = BerthConfig.load(sentiment_checkpoint)
    texts = [r["text"] for r in rows]
    targets = np.array([berth.labels.index(r["label"]) for r in rows])
    for name, settings in (
        ("head", {"max_windows": 1}),
        ("windows mean", {"max_windows": 4, "window_stride": 40}),
    ):
        predictor = Predictor(sentiment_checkpoint, config=replace(berth, **settings))
        accuracy = 100 * np.mean(predictor.probabilities(texts).argmax(1) == targets)
        assert report["results"][name]["accuracy"] == pytest.approx(accuracy)


def test_stats_only_scores_nothing(sentiment_checkpoint, long_file, tmp_path):
    out = tmp_path / "stats.json"
    args = ["--checkpoint", str(sentiment_checkpoint), "--eval-file", str(long_file)]
    assert main([*args, "--stats-only", "--limit", "5", "--output", str(out)]) == 0
    assert not out.exists()  # nothing scored, nothing written but the texts' figures


def test_demo_prints_long_reviews_served_and_head_only(sentiment_checkpoint, capsys):
    class Served:  # stands in for berth-client: the windowed reference predictor
        def __init__(self):
            berth = BerthConfig.load(sentiment_checkpoint)
            windowed = replace(berth, max_windows=4, window_stride=40)
            self.predictor = Predictor(sentiment_checkpoint, config=windowed)

        def predict(self, texts):
            return self.predictor.predict(texts)

    show_long_reviews(Served(), sentiment_checkpoint, count=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "long reviews (IMDB)" in lines[0] and len(lines) == 4
    assert all(line.split()[0] in ("negative", "positive") for line in lines[2:])
