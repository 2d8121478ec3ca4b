"""Unit tests (no server): berth-client's opt-in sample of the texts it classifies."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from berth_client import AsyncClassifier, Classifier, ModelInfo
from berth_client.cli import main
from berth_core.errors import InputError

INFO = ModelInfo("sentiment", ["negative", "positive"], max_batch_size=2)


def fake_probabilities(self, texts, info):
    return np.full((len(texts), 2), 0.5, dtype=np.float32)


async def async_fake_probabilities(self, texts, info):
    return fake_probabilities(self, texts, info)


@pytest.fixture
def served(monkeypatch):
    """Both clients answer from a stand-in for the server."""
    for cls, infer in (
        (Classifier, fake_probabilities),
        (AsyncClassifier, async_fake_probabilities),
    ):
        monkeypatch.setattr(cls, "_infer_chunk", infer)
    monkeypatch.setattr(Classifier, "model_info", lambda self, refresh=False: INFO)

    async def model_info(self, refresh=False):
        return INFO

    monkeypatch.setattr(AsyncClassifier, "model_info", model_info)


def sampled(path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines()]


def test_nothing_is_written_unless_asked(served, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with Classifier("localhost:8000") as clf:
        assert clf.sample is None
        clf.predict(["a gripping film", "dull", "fine"])
    assert main(["predict", "a gripping film"]) == 0
    assert list(tmp_path.iterdir()) == []


def test_the_texts_sent_are_sampled_once_each(served, tmp_path):
    path = tmp_path / "texts.jsonl"
    texts = ["a gripping film", "two\nlines", "naïve ✓", "a gripping film"]
    with Classifier("localhost:8000", sample_file=path, sample_rate=1.0) as clf:
        assert len(clf.predict(texts)) == 4  # three requests of at most two texts
    assert sampled(path) == texts[:3]
    assert (path.stat().st_mode & 0o777) == 0o600


def test_the_async_client_samples_too(served, tmp_path):
    path = tmp_path / "texts.jsonl"

    async def run() -> None:
        async with AsyncClassifier(
            "localhost:8000", sample_file=str(path), sample_rate=1.0, sample_max_texts=2
        ) as clf:
            await clf.predict(["one", "two", "three"])

    asyncio.run(run())
    assert sampled(path) == ["one", "two"]


def test_bad_sample_settings_are_refused_before_any_call(tmp_path):
    with pytest.raises(InputError, match=r"name it \*\.jsonl"):
        Classifier("localhost:8000", sample_file=tmp_path / "texts.txt")
    with pytest.raises(InputError, match="does not exist"):
        Classifier("localhost:8000", sample_file=tmp_path / "no" / "texts.jsonl")


def test_the_cli_samples_with_its_flags(served, tmp_path, capsys):
    path = tmp_path / "texts.jsonl"
    flags = ["--sample-texts", str(path), "--sample-rate", "1", "--sample-max-texts", "2"]
    assert main(["predict", *flags, "first", "second", "third"]) == 0
    assert sampled(path) == ["first", "second"]
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["predict", "--sample-texts", str(path), "--sample-rate", "2", "x"]) == 2
    assert "sample rate 2.0" in capsys.readouterr().err
