"""`python -m loadtest.gpu_model` on the CPU: the same code path the GPU figures in
BENCHMARKS.md came from, minus the CUDA graphs."""

from __future__ import annotations

import json

import pytest
import torch

from loadtest import gpu_model


def test_best_of_eager_and_graph_sets_the_rate():
    assert gpu_model.Row(128, 32, "fp16", eager_ms=4.0, graph_ms=0.5).texts_per_s == 64_000
    assert gpu_model.Row(128, 32, "fp32", eager_ms=2.0, graph_ms=None).texts_per_s == 16_000


def test_sweep_and_fp16_check_on_cpu(sentiment_checkpoint, tmp_path, capsys):
    texts = tmp_path / "texts.jsonl"
    source = sentiment_checkpoint.parent / "splits" / "test.jsonl"
    texts.write_text("".join(source.read_text().splitlines(keepends=True)[:40]))
    out = tmp_path / "gpu.json"
    argv = ["--checkpoint", str(sentiment_checkpoint), "--device", "cpu", "--seq", "16", "48"]
    argv += ["--batch", "1", "4", "--iters", "2", "--texts", str(texts), "--output", str(out)]
    assert gpu_model.main(argv) == 0
    result = json.loads(out.read_text())
    points = {(r["precision"], r["seq"], r["batch"]) for r in result["rows"]}
    assert points == {(p, s, b) for p in ("fp16", "fp32") for s in (16, 48) for b in (1, 4)}
    assert all(r["graph_ms"] is None and r["texts_per_s"] > 0 for r in result["rows"])
    check = result["fp16_vs_fp32"]
    assert check["texts"] == 40
    assert 0 < check["max_abs_dprob"] < 1e-2  # fp16 rounds, but only in the 3rd decimal
    assert "| 48 | 4 | fp32 |" in capsys.readouterr().out


def test_without_cuda_it_says_how_to_run_on_the_cpu(sentiment_checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        gpu_model.main(["--checkpoint", str(sentiment_checkpoint)])
    assert exc.value.code == 2
    assert "no CUDA device visible to PyTorch; pass --device cpu" in capsys.readouterr().err
