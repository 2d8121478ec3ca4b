"""Atomic publishing: new version dirs, configs replaced, rollback, pruning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from export import repository
from export.repository import numeric_versions, publish
from tests.export.trees import tree_hash


def source(tmp_path: Path, name: str, content: str) -> Path:
    d = tmp_path / "src" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.onnx").write_text(content)
    return d


def test_publish_adds_versions_and_replaces_configs(tmp_path):
    repo = tmp_path / "repo"
    v1 = publish(repo, {"m": source(tmp_path, "a", "one")}, {"m/config.pbtxt": "c1"})
    v2 = publish(repo, {"m": source(tmp_path, "b", "two")}, {"m/config.pbtxt": "c2"})
    assert (v1, v2) == (1, 2)
    assert (repo / "m/1/model.onnx").read_text() == "one"
    assert (repo / "m/2/model.onnx").read_text() == "two"
    assert (repo / "m/config.pbtxt").read_text() == "c2"
    assert not [p for p in repo.rglob("*") if p.name.startswith(".staging")]


def test_all_models_of_a_set_share_the_next_version(tmp_path):
    repo = tmp_path / "repo"
    (repo / "a/7").mkdir(parents=True)
    version = publish(repo, {"a": source(tmp_path, "a", "x"), "b": source(tmp_path, "b", "y")}, {})
    assert version == 8 and numeric_versions(repo / "b") == [8]


def test_prune_keeps_the_newest(tmp_path):
    repo = tmp_path / "repo"
    for i in range(4):
        publish(repo, {"m": source(tmp_path, f"s{i}", str(i))}, {}, keep_versions=2)
    assert numeric_versions(repo / "m") == [3, 4]


def test_a_failure_while_publishing_leaves_the_repository_unchanged(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    publish(repo, {"m": source(tmp_path, "a", "one")}, {"m/config.pbtxt": "c1"})
    before = tree_hash(repo)
    real_rename = os.rename
    calls = []

    def failing_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the second model's commit fails
            raise OSError("disk on fire")
        return real_rename(src, dst)

    monkeypatch.setattr(repository.os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk on fire"):
        publish(
            repo,
            {"m": source(tmp_path, "b", "two"), "n": source(tmp_path, "c", "three")},
            {"m/config.pbtxt": "c2", "n/config.pbtxt": "n", "n/configs/gpu.pbtxt": "g"},
        )
    assert tree_hash(repo) == before


def test_an_existing_version_is_never_overwritten(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    publish(repo, {"m": source(tmp_path, "a", "one")}, {})
    before = tree_hash(repo)
    monkeypatch.setattr(repository, "next_version", lambda *_: 1)
    with pytest.raises(FileExistsError):
        publish(repo, {"m": source(tmp_path, "b", "two")}, {"m/config.pbtxt": "x"})
    assert tree_hash(repo) == before


def test_published_python_is_byte_compiled_so_loading_it_writes_nothing(tmp_path):
    """The Python backend's stub ignores PYTHONDONTWRITEBYTECODE; a `__pycache__/` it
    wrote into a live version would make a poll-mode server reload the model."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.py").write_text("import helper\nVALUE = helper.VALUE\n")
    (src / "helper.py").write_text("VALUE = 7\n")
    repo = tmp_path / "repo"
    publish(repo, {"m": src}, {})
    live = repo / "m" / "1"
    tag = sys.implementation.cache_tag
    assert {p.name for p in (live / "__pycache__").iterdir()} == {
        f"model.{tag}.pyc",
        f"helper.{tag}.pyc",
    }
    before = {p: p.stat().st_mtime_ns for p in live.rglob("*")}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [sys.executable, "-c", "import model; print(model.VALUE)"],
        cwd=live,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "7"
    assert {p: p.stat().st_mtime_ns for p in live.rglob("*")} == before
