"""The opt-in sample of served texts: off by default, texts only, each once, capped (also
across processes appending to one file), 0600, and never a failed request."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from berth_core import traffic_sample
from berth_core.errors import InputError
from berth_core.names import SAMPLE_MAX_TEXTS_ENV, SAMPLE_RATE_ENV, SAMPLE_TEXTS_ENV
from berth_core.traffic_sample import SampleConfig, TextSample


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().decode().split("\n") if line]


def sample(path: Path, **settings) -> TextSample:
    return TextSample(SampleConfig(str(path), **{"rate": 1.0, "seed": 0, **settings}))


def test_off_unless_a_file_is_named():
    assert SampleConfig.from_environment({}) is None
    assert traffic_sample.from_environment({SAMPLE_TEXTS_ENV: " "}) is None
    assert traffic_sample.from_environment({SAMPLE_RATE_ENV: "1"}) is None


def test_the_environment_carries_the_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = SampleConfig("texts.jsonl", rate=0.25, max_texts=7, max_bytes=900)
    env = config.environment()
    assert env[SAMPLE_TEXTS_ENV] == str(tmp_path / "texts.jsonl")  # the stubs' cwd may differ
    assert SampleConfig.from_environment(env) == SampleConfig(
        str(tmp_path / "texts.jsonl"), 0.25, 7, 900
    )
    defaults = SampleConfig.from_environment({SAMPLE_TEXTS_ENV: "/s/texts.jsonl"})
    assert (defaults.rate, defaults.max_texts) == (0.1, 10_000)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"path": "texts.txt"}, r"name it \*\.jsonl"),
        ({"rate": 0.0}, r"sample rate 0\.0 \(--sample-rate, BERTH_SAMPLE_RATE\)"),
        ({"rate": 1.5}, r"in \(0, 1\]"),
        ({"max_texts": 0}, r"--sample-max-texts.*use at least 1"),
        ({"max_bytes": 0}, r"BERTH_SAMPLE_MAX_BYTES.*use at least 1"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(InputError, match=message):
        SampleConfig(**{"path": "texts.jsonl", **settings})


def test_bad_variables_turn_the_served_sample_off_with_a_warning(caplog):
    env = {SAMPLE_TEXTS_ENV: "/s/texts.jsonl", SAMPLE_MAX_TEXTS_ENV: "lots"}
    with pytest.raises(InputError, match="BERTH_SAMPLE_MAX_TEXTS='lots': not a int"):
        SampleConfig.from_environment(env)
    with caplog.at_level(logging.WARNING, "berth.traffic_sample"):
        assert traffic_sample.from_environment(env) is None
    assert "text sampling is off" in caplog.text


def test_a_missing_directory_is_refused_at_start_up(tmp_path):
    SampleConfig(str(tmp_path / "texts.jsonl")).check_path()
    with pytest.raises(InputError, match="does not exist"):
        SampleConfig(str(tmp_path / "missing" / "texts.jsonl")).check_path()


def test_texts_only_each_once_in_a_file_only_its_owner_reads(tmp_path):
    path = tmp_path / "texts.jsonl"
    writer = sample(path)
    assert writer.offer(["a film", "two\nlines", "", "   ", "a film"]) == 2
    assert writer.offer(["a film", "naïve café ✓"]) == 1
    assert lines(path) == [{"text": "a film"}, {"text": "two\nlines"}, {"text": "naïve café ✓"}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert writer.stopped is None


def test_the_rate_is_the_share_written(tmp_path):
    path = tmp_path / "texts.jsonl"
    writer = sample(path, rate=0.2, seed=3)
    writer.offer([f"text {i}" for i in range(2000)])
    assert 300 < len(lines(path)) < 500


def test_writing_stops_at_the_cap_for_good(tmp_path, caplog):
    path = tmp_path / "texts.jsonl"
    writer = sample(path, max_texts=5)
    with caplog.at_level(logging.WARNING, "berth.traffic_sample"):
        assert writer.offer([f"text {i}" for i in range(3)]) == 3
        assert writer.offer([f"more {i}" for i in range(4)]) == 2
        assert writer.offer(["late"]) == 0
    assert [line["text"] for line in lines(path)][-2:] == ["more 0", "more 1"]
    assert len(lines(path)) == 5 and "reached its cap" in writer.stopped
    assert caplog.text.count("reached its cap") == 1
    small = sample(tmp_path / "small.jsonl", max_bytes=40)
    assert small.offer(["x" * 10, "y" * 10, "z" * 10]) == 1  # {"text": "xxxxxxxxxx"}\n: 23 bytes
    assert (tmp_path / "small.jsonl").stat().st_size <= 40 and small.stopped


def test_a_new_writer_counts_and_knows_what_the_file_holds(tmp_path):
    path = tmp_path / "texts.jsonl"
    sample(path).offer(["one", "two", "three"])
    again = sample(path, max_texts=4)  # a restarted server: the same file
    assert again.offer(["two", "four", "five"]) == 1
    assert [line["text"] for line in lines(path)] == ["one", "two", "three", "four"]


def test_a_line_cut_short_stays_apart_from_the_next(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_bytes(b'{"text": "whole"}\n{"text": "cut sh')
    sample(path).offer(["next"])
    assert path.read_bytes().split(b"\n")[-2:] == [b'{"text": "next"}', b""]
    assert path.read_bytes().count(b"\n") == 3


def test_an_error_is_logged_once_and_never_raised(tmp_path, caplog):
    writer = sample(tmp_path / "missing" / "texts.jsonl")
    with caplog.at_level(logging.WARNING, "berth.traffic_sample"):
        assert writer.offer(["a"]) == 0
        assert writer.offer(["b"]) == 0
    assert "cannot write the text sample" in writer.stopped
    assert caplog.text.count("sampling stopped") == 1
    assert not (tmp_path / "missing").exists()


WRITER = """
import sys
from berth_core.traffic_sample import SampleConfig, TextSample

path, name = sys.argv[1], sys.argv[2]
sample = TextSample(SampleConfig(path, rate=1.0, max_texts=150))
for i in range(300):
    sample.offer([f"shared {i}", f"{name} {i}"])
"""


def test_two_processes_share_one_cap_and_write_each_text_once(tmp_path):
    """Triton runs one tokenizer process per instance, all appending to one file."""
    path = tmp_path / "texts.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name], env=dict(os.environ))
        for name in ("left", "right")
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    texts = [line["text"] for line in lines(path)]  # every line whole, valid JSON
    assert len(texts) == 150 and len(set(texts)) == 150
