"""`python -m training seeds`: one recipe trained with several seeds on one fixed split.

The seed alone moves MiniLM-L6's best validation accuracy on Rotten Tomatoes by 0.7
points (BENCHMARKS.md), more than most recipe changes gain; a change is worth adopting
only when it beats that spread. Each seed is an ordinary `python -m training` run (its
own process and run directory) with `--seed S --split-seed <split seed>`, so every run
trains and is judged on the same texts. The summary gives the best validation metric
(what to choose by) and the test metric (what to report) per seed, with mean and sd.

    python -m training seeds --seeds 42 43 44 --output-dir runs/seeds/lr5e-5 -- --lr 5e-5
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from berth_args import groups, option
from training.data import DataError

# set by this command for every run; passing them after `--` would contradict it
OWNED_FLAGS = ("--seed", "--split-seed", "--output-dir")


@groups({"seeds": "seeds"})
@dataclass
class SeedsConfig:
    seeds: list[int] = option(factory=lambda: [42, 43, 44], help="seeds for init and data order")
    split_seed: int = option(42, "seed of the split every run shares (--split-seed)")
    output_dir: str = option("runs/seeds", "runs go to <output-dir>/seed-<S>")
    parallel: int = option(1, "runs at a time (a GPU fits several small ones)")


@dataclass
class SeedRun:
    seed: int
    run_dir: str
    returncode: int
    metric: str | None = None
    best_validation: float | None = None
    test: float | None = None


def check_train_args(train_args: list[str]) -> None:
    for given in train_args:
        if given.split("=", 1)[0] in OWNED_FLAGS:
            raise DataError(
                f"{given.split('=', 1)[0]} after `--`: `python -m training seeds` sets "
                f"{', '.join(OWNED_FLAGS)} for each run; use --seeds, --split-seed and "
                "--output-dir before `--`"
            )


def run_one(config: SeedsConfig, seed: int, train_args: list[str]) -> SeedRun:
    run_dir = Path(config.output_dir) / f"seed-{seed}"
    cmd = [sys.executable, "-m", "training", *train_args, "--seed", str(seed)]
    cmd += ["--split-seed", str(config.split_seed), "--output-dir", str(run_dir)]
    log = Path(config.output_dir) / f"seed-{seed}.log"
    with open(log, "w") as handle:
        code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT)
    run = SeedRun(seed, str(run_dir), code)
    if code == 0:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        run.metric = metrics["metric"]
        run.best_validation = metrics["best_metric"]
        run.test = metrics["test"].get(run.metric)
    return run


def summary(values: list[float]) -> dict:
    return {
        "mean": statistics.mean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def run_seeds(config: SeedsConfig, train_args: list[str]) -> dict:
    check_train_args(train_args)
    if len(set(config.seeds)) != len(config.seeds):
        raise DataError(f"--seeds {config.seeds}: each seed once")
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, config.parallel)) as pool:
        runs = list(pool.map(lambda s: run_one(config, s, train_args), config.seeds))
    done = [r for r in runs if r.returncode == 0]
    result = {
        "config": asdict(config),
        "train_args": train_args,
        "runs": [asdict(r) for r in runs],
        "metric": done[0].metric if done else None,
    }
    if done:
        result["best_validation"] = summary([r.best_validation for r in done])
        tests = [r.test for r in done if r.test is not None]
        result["test"] = summary(tests) if tests else None
    (Path(config.output_dir) / "seeds.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(result: dict) -> str:
    metric = result["metric"] or "metric"
    lines = [
        f"| seed | best validation {metric} | test {metric} | run |",
        "| ---: | ---: | ---: | --- |",
    ]
    for run in result["runs"]:
        if run["returncode"] != 0:
            log = Path(run["run_dir"]).with_suffix(".log")
            lines.append(f"| {run['seed']} | failed (exit {run['returncode']}) | | see {log} |")
            continue
        test = f"{run['test']:.4f}" if run["test"] is not None else "–"
        best = f"{run['best_validation']:.4f}"
        lines.append(f"| {run['seed']} | {best} | {test} | {run['run_dir']} |")
    for key in ("best_validation", "test"):
        s = result.get(key)
        if s:
            lines.append(
                f"{key.replace('_', ' ')}: mean {s['mean']:.4f}, sd {s['sd']:.4f}, "
                f"range {s['min']:.4f}–{s['max']:.4f}"
            )
    return "\n".join(lines)
