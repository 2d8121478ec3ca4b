"""The export stage: checkpoint → gated ONNX variants → a new version of the ensemble.

    python -m export --checkpoint runs/sentiment/model --name sentiment \
        --model-repository model_repository

Steps: export fp32 ONNX (logits + in-graph probabilities); optionally keep the
onnxruntime.transformers fusions (`--optimize auto` measures and keeps them only when
faster, and picks the int8 graph and session optimizers the CPU classifier runs
fastest); build every variant asked for as export/variants.py declares it; score each
on the held-out split (parity with the PyTorch reference predictor, scores, latency)
and judge it by its gate (fp32's parity, enforced; the others' accuracy against fp32,
`--max-accuracy-drop`); write `export_report.{json,md}`; publish the Triton repository
atomically.

Where each step lives: config.py (flags), build.py, score.py, gates.py, report.py,
stage.py (publishing). berth.json is read once here and passed down.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from berth_core.checkpoint import BerthConfig
from export.build import Graphs, build_graphs
from export.config import ExportConfig, build_parser, parse_args
from export.errors import ExportInputError, ExportRefused
from export.evaluate import joined_texts, load_eval
from export.gates import apply_gates
from export.progress import say
from export.report import build_report, write_report
from export.score import VariantScore, score_variants
from export.stage import publish_variants


def load_berth(checkpoint: Path) -> BerthConfig:
    """The checkpoint's berth.json, read once per export; a missing or unreadable one is
    the user's input error."""
    try:
        return BerthConfig.load(checkpoint)
    except (OSError, ValueError, TypeError) as exc:
        raise ExportInputError(f"--checkpoint {checkpoint}: {exc}") from exc


@dataclass
class ExportRun:
    """What one export works with: its configuration, berth.json read once (as the
    checkpoint has it, and as the ensemble will serve it), its folders and the held-out
    rows every variant is scored on."""

    cfg: ExportConfig
    checkpoint_berth: BerthConfig
    berth: BerthConfig
    out: Path
    work: Path
    eval_file: Path
    eval_texts: list[str]
    targets: np.ndarray
    parity_texts: list[str]
    started: float = field(default_factory=time.monotonic)


def prepare(cfg: ExportConfig, berth: BerthConfig) -> ExportRun:
    """Read the held-out split; make a fresh work folder. `berth`: the checkpoint's."""
    served = cfg.serving_berth(berth)
    out = cfg.resolved_output_dir
    work = out / "onnx"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    eval_file = cfg.resolved_eval_file
    if not eval_file.is_file():
        raise ExportInputError(f"--eval-file {eval_file} does not exist")
    try:
        eval_texts, targets = load_eval(eval_file, served, cfg.max_eval_samples or None)
    except (OSError, ValueError, KeyError) as exc:
        raise ExportInputError(f"--eval-file {eval_file}: {exc!s}") from exc
    parity_texts = eval_texts[: cfg.parity_samples]
    if served.windowed:  # long real texts too, so that the gate covers the aggregation
        parity_texts += joined_texts(eval_texts)
    say(f"{len(eval_texts)} held-out rows from {eval_file}; parity on {len(parity_texts)}")
    return ExportRun(cfg, berth, served, out, work, eval_file, eval_texts, targets, parity_texts)


def publish_or_refuse(run: ExportRun, graphs: Graphs, scores: list[VariantScore]) -> dict:
    """Judge the scores; write the report; publish what passed, or raise ExportRefused
    (the report still written, the repository untouched). Returns the report."""
    cfg = run.cfg
    gates = apply_gates(cfg, scores)
    report = build_report(run, graphs, scores, gates)
    for line in gates.refusals:
        say(f"REFUSED: {line}")
    if gates.fatal:
        report["elapsed_s"] = time.monotonic() - run.started
        write_report(report, run.out)
        gates.raise_if_fatal()
    if not cfg.no_publish:
        report["version"] = publish_variants(run, graphs.variants, gates.passed, report)
        report["published_variants"] = gates.passed
    report["elapsed_s"] = time.monotonic() - run.started
    json_path, md_path = write_report(report, run.out)
    say(f"report: {json_path}, {md_path}")
    return report


def run_export(cfg: ExportConfig) -> dict:
    """Run the whole stage; returns the report. Raises ExportRefused when a gate fails
    (the report is still written; the repository is untouched), ExportInputError when
    the checkpoint or held-out file cannot be used."""
    run = prepare(cfg, load_berth(cfg.checkpoint))
    graphs = build_graphs(run)
    return publish_or_refuse(run, graphs, score_variants(run, graphs.variants))


__all__ = [
    "ExportConfig",
    "ExportInputError",
    "ExportRefused",
    "ExportRun",
    "build_parser",
    "parse_args",
    "prepare",
    "publish_or_refuse",
    "run_export",
]
