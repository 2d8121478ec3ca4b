"""`python -m training seeds`: real runs of a tiny BERT, one process per seed."""

from __future__ import annotations

import json
import statistics

from training.cli import main


def test_two_seeds_share_the_split_and_are_summarised(tmp_path, tiny_base_model, capsys):
    out = tmp_path / "seeds"
    train_args = ["--dataset", "rotten_tomatoes", "--model", str(tiny_base_model)]
    train_args += ["--max-train-samples", "64", "--max-eval-samples", "32", "--epochs", "1"]
    argv = ["seeds", "--seeds", "1", "2", "--split-seed", "7", "--output-dir", str(out)]
    assert main([*argv, "--parallel", "2", "--", *train_args]) == 0

    result = json.loads((out / "seeds.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [1, 2]
    metrics = [json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in (1, 2)]
    assert [m["config"]["seed"] for m in metrics] == [1, 2]
    assert {m["config"]["split_seed"] for m in metrics} == {7}
    # the same texts for both seeds, yet two different trainings
    splits = [(out / f"seed-{s}" / "splits" / "validation.jsonl").read_text() for s in (1, 2)]
    assert splits[0] == splits[1]
    assert metrics[0]["train_loss"] != metrics[1]["train_loss"]
    best = [m["best_metric"] for m in metrics]
    assert result["metric"] == "accuracy"
    assert result["best_validation"]["mean"] == statistics.mean(best)
    assert result["test"]["max"] == max(m["test"]["accuracy"] for m in metrics)
    printed = capsys.readouterr().out
    assert f"| 1 | {best[0]:.4f} |" in printed and "best validation: mean" in printed


def test_a_failed_seed_is_reported_with_its_log(tmp_path, capsys):
    out = tmp_path / "seeds"
    argv = ["seeds", "--seeds", "5", "--output-dir", str(out), "--", "--train-file", "nope.csv"]
    assert main(argv) == 1
    assert "| 5 | failed (exit 2) |" in capsys.readouterr().out
    assert "nope.csv" in (out / "seed-5.log").read_text()
    assert json.loads((out / "seeds.json").read_text())["runs"][0]["returncode"] == 2


def test_flags_the_command_sets_are_refused_after_the_separator(tmp_path, capsys):
    assert main(["seeds", "--output-dir", str(tmp_path), "--", "--seed", "3"]) == 2
    assert "--seed after `--`" in capsys.readouterr().err
    assert not (tmp_path / "seeds.json").exists()
