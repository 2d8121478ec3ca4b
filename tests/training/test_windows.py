"""Window mode: long texts cut into windows (berth_core/encoding.py), their logits
aggregated, the settings in berth.json and in training's flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from berth_core.checkpoint import BerthConfig
from berth_core.encoding import (
    AGGREGATIONS,
    aggregate,
    encode,
    encode_windows,
    load_tokenizer,
    probabilities,
    window_starts,
)
from training.train import DataError, TrainConfig


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return load_tokenizer(str(minilm_dir / "tokenizer.json"))


def numbered(count: int) -> str:
    """A text of `count` words, each one token of the uncased vocabulary ("zero zero
    zero one …"): their positions are easy to check."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    return " ".join(f"{words[i // 10 % 10]} {words[i % 10]}" for i in range(count // 2))


def content(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


# ---------------------------------------------------------------- window boundaries


def test_a_text_that_fits_is_one_window():
    assert window_starts(10, 10, 4, 8) == [0]
    assert window_starts(3, 10, 4, 8) == [0]
    assert window_starts(500, 10, 4, 1) == [0]


def test_windows_step_by_the_stride_and_the_last_ends_at_the_end():
    assert window_starts(11, 10, 4, 8) == [0, 1]
    assert window_starts(30, 10, 8, 8) == [0, 8, 16, 20]
    assert window_starts(26, 10, 8, 8) == [0, 8, 16]  # 16 + 10 = 26: no extra window
    assert window_starts(30, 10, 0, 8) == [0, 10, 20]  # stride 0: the window length
    assert window_starts(30, 10, 50, 8) == [0, 10, 20]  # never a gap between windows


@pytest.mark.parametrize("length", [41, 100, 1000, 12345])
def test_past_the_cap_windows_spread_over_the_whole_text(length):
    starts = window_starts(length, 10, 4, 5)
    assert len(starts) == 5 and starts[0] == 0 and starts[-1] == length - 10
    gaps = np.diff(starts)
    assert gaps.min() > 0 and gaps.max() - gaps.min() <= 1  # evenly spread


# ---------------------------------------------------------------- windows of real text


def test_every_window_has_the_special_tokens_and_the_length(tokenizer):
    text = numbered(300)
    windows = encode_windows(tokenizer, [text], 32, stride=20, max_windows=50)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    assert len(windows) > 5
    for ids in windows.ids:
        assert ids[0] == cls and ids[-1] == sep and len(ids) == 32
        assert cls not in ids[1:-1] and sep not in ids[1:-1]


def test_windows_cover_the_text_with_the_stride_as_overlap(tokenizer):
    text = numbered(300)
    tokens = content(tokenizer, text)
    windows = encode_windows(tokenizer, [text], 32, stride=20, max_windows=50)
    starts = window_starts(len(tokens), 30, 20, 50)
    for start, ids in zip(starts, windows.ids, strict=True):
        assert ids[1:-1] == tokens[start : start + 30]
    # consecutive windows overlap by budget - stride (the last one more, to end at the end)
    assert windows.ids[0][1:-1][20:] == windows.ids[1][1:-1][:10]
    assert windows.ids[-1][-2] == tokens[-1]
    # weights: the tokens each window adds, so that together they count the text once
    assert windows.weight.tolist() == [30, *np.diff(starts).tolist()]
    assert windows.weight.sum() == len(tokens)


def test_the_cap_keeps_first_and_last_windows(tokenizer):
    text = numbered(600)
    tokens = content(tokenizer, text)
    windows = encode_windows(tokenizer, [text], 32, stride=20, max_windows=4)
    assert len(windows) == 4
    assert windows.ids[0][1:-1] == tokens[:30] and windows.ids[-1][1:-1] == tokens[-30:]


def test_short_texts_are_encoded_exactly_as_without_windows(tokenizer):
    texts = ["a gripping, funny film", "", "Ünïcödé 🎬", numbered(40)]
    windows = encode_windows(tokenizer, texts, 64, stride=48, max_windows=16)
    assert windows.ids == encode(tokenizer, texts, 64)
    assert windows.text.tolist() == [0, 1, 2, 3]


def test_mixed_texts_are_laid_out_text_after_text(tokenizer):
    texts = ["short", numbered(100), "also short", numbered(200)]
    windows = encode_windows(tokenizer, texts, 32, stride=24, max_windows=16)
    counts = np.bincount(windows.text).tolist()
    assert counts[0] == counts[2] == 1 and 1 < counts[1] < counts[3]
    assert windows.first().tolist() == [0, 1, 1 + counts[1], 2 + counts[1]]


@pytest.mark.parametrize("truncation", ["head", "head+tail"])
def test_one_window_is_the_truncation(tokenizer, truncation):
    texts = [numbered(200), "short"]
    windows = encode_windows(tokenizer, texts, 32, 24, 1, truncation, head_tokens=8)
    assert windows.ids == encode(tokenizer, texts, 32, truncation, 8)


# ---------------------------------------------------------------- aggregation


LOGITS = np.array([[1.0, -1.0], [3.0, 0.0], [0.0, 2.0], [-2.0, 4.0]], dtype=np.float32)
TEXT = np.array([0, 1, 1, 2])
WEIGHT = np.array([5, 30, 10, 7])


def test_aggregations_by_hand():
    mean = aggregate(LOGITS, TEXT, WEIGHT, "mean")
    np.testing.assert_allclose(mean, [[1, -1], [1.5, 1.0], [-2, 4]])
    np.testing.assert_allclose(aggregate(LOGITS, TEXT, WEIGHT, "max"), [[1, -1], [3, 2], [-2, 4]])
    weighted = aggregate(LOGITS, TEXT, WEIGHT, "weighted")
    np.testing.assert_allclose(weighted[1], [(30 * 3 + 0) / 40, (0 + 10 * 2) / 40])
    for multi_label in (False, True):
        out = aggregate(LOGITS, TEXT, WEIGHT, "mean_prob", multi_label)
        expected = probabilities(LOGITS[1:3].astype(np.float64), multi_label).mean(0)
        np.testing.assert_allclose(probabilities(out[1], multi_label), expected, rtol=1e-6)


@pytest.mark.parametrize("method", AGGREGATIONS)
@pytest.mark.parametrize("multi_label", [False, True])
def test_a_one_window_text_keeps_its_logits(method, multi_label):
    out = aggregate(LOGITS, TEXT, WEIGHT, method, multi_label)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    np.testing.assert_allclose(out[[0, 2]], LOGITS[[0, 3]], rtol=1e-6, atol=1e-6)
    alone = aggregate(LOGITS, np.arange(4), WEIGHT, method, multi_label)
    assert np.array_equal(alone, LOGITS)  # every text one window: untouched


def test_unknown_aggregation_is_refused():
    with pytest.raises(ValueError, match="median"):
        aggregate(LOGITS, TEXT, WEIGHT, "median")


# ---------------------------------------------------------------- settings


def test_berth_json_without_windows_loads_as_one_window(tmp_path):
    old = {"labels": ["a", "b"], "max_length": 64, "truncation": "head+tail", "head_tokens": 8}
    (tmp_path / "berth.json").write_text(json.dumps(old))
    berth = BerthConfig.load(tmp_path)
    assert not berth.windowed and berth.max_windows == 1 and berth.aggregation == "mean"
    windowed = BerthConfig(labels=["a"], max_length=64, window_stride=48, max_windows=8)
    windowed.save(tmp_path)
    assert BerthConfig.load(tmp_path) == windowed and windowed.windowed


@pytest.mark.parametrize(
    "fields",
    [
        {"max_windows": 0},
        {"max_windows": 4, "window_stride": 0},
        {"max_windows": 4, "window_stride": 64},
        {"max_windows": 4, "window_stride": 32, "truncation": "head+tail"},
        {"aggregation": "median"},
    ],
)
def test_invalid_window_settings_are_refused(fields):
    with pytest.raises(ValueError, match=r"berth\.json"):
        BerthConfig(labels=["a"], max_length=64, **fields)


def test_training_defaults_to_windows_except_with_head_tail():
    assert TrainConfig().windows() == (96, 16)
    assert TrainConfig(max_length=64, window_stride=40, max_windows=4).windows() == (40, 4)
    assert TrainConfig(max_windows=1).windows() == (0, 1)
    assert TrainConfig(truncation="head+tail").windows() == (0, 1)
    for bad in (
        {"truncation": "head+tail", "max_windows": 4},
        {"max_windows": 0},
        {"window_stride": 128},
        {"aggregation": "median"},
    ):
        with pytest.raises(DataError):
            TrainConfig(**bad).validate()


# ---------------------------------------------------------------- training in window mode


@pytest.fixture(scope="module")
def windowed_run(tmp_path_factory, bbc_windows_config):
    """BBC articles (hundreds of tokens) as up to 3 windows of 32 tokens."""
    from training.train import train

    run_dir = tmp_path_factory.mktemp("windows") / "run"
    one_epoch = {"epochs": 1, "batch_size": 16, "lr": 1e-3}
    sizes = {"max_train_samples": 60, "max_eval_samples": 20}
    return train(
        bbc_windows_config(run_dir, window_stride=24, aggregation="max", **one_epoch, **sizes)
    )


def test_training_records_the_windows_and_scores_texts(windowed_run):
    berth = BerthConfig.load(windowed_run.checkpoint)
    assert (berth.window_stride, berth.max_windows, berth.aggregation) == (24, 3, "max")
    metrics = windowed_run.metrics
    assert metrics["sizes"] == {"train": 60, "validation": 20, "test": 20}
    assert metrics["history"] and "eval_accuracy" in metrics["history"][0]


def test_the_predictor_reproduces_the_per_text_test_metrics(windowed_run):
    from training.predict import Predictor

    rows = [
        json.loads(line)
        for line in (windowed_run.run_dir / "splits/test.jsonl").read_text().splitlines()
    ]
    predictor = Predictor(windowed_run.checkpoint)
    texts = [r["text"] for r in rows]
    assert len(predictor.windows(texts)) == 3 * len(texts)  # every article is long
    predictions = predictor.predict(texts)
    accuracy = np.mean([p["label"] == r["label"] for p, r in zip(predictions, rows, strict=True)])
    assert accuracy == pytest.approx(windowed_run.metrics["test"]["accuracy"])


def test_a_long_text_trains_on_every_window(tmp_path, bbc_windows_config):
    from training.data import Split
    from training.train import start

    session = start(bbc_windows_config(tmp_path / "run", max_train_samples=8, max_eval_samples=4))
    split = Split(["short text", numbered(200)], [session.data.labels[0]] * 2, ["a", "b"])
    dataset = session.dataset(split)
    assert len(dataset) == 1 + 3 and dataset.windows.text.tolist() == [0, 1, 1, 1]
    assert dataset.labels == [0, 0, 0, 0]
    assert session.encode(split.texts)[1] == dataset.input_ids[1]  # the first window
