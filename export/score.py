"""Scoring the built variants: parity with the PyTorch reference, held-out scores,
agreement with a distilled student's teacher, latency. The gates judge what this
measures (export/gates.py)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from berth_core.checkpoint import BERTH_FILE, BerthConfig
from export.evaluate import (
    Latency,
    OnnxClassifier,
    Parity,
    Scores,
    classification_scores,
    latency,
    parity,
)
from export.progress import say
from export.variants import Graph
from training.metrics import agreement

if TYPE_CHECKING:
    from export.config import ExportConfig
    from export.pipeline import ExportRun

LATENCY_BATCHES = (1, 32)


@dataclass(frozen=True)
class VariantScore:
    """One variant's measurements, as the report lists them (before its verdict)."""

    variant: str
    file: Path
    size_mb: float
    parity: Parity
    scores: Scores
    scoring_s: float
    latency: tuple[Latency, ...]  # one per batch size

    def record(self) -> dict:
        return {
            "variant": self.variant,
            "file": str(self.file),
            "size_mb": self.size_mb,
            "parity": dataclasses.asdict(self.parity),
            "scores": self.scores.record(),
            "scoring_s": self.scoring_s,
            "latency": {f"batch_{t.batch_size}": dataclasses.asdict(t) for t in self.latency},
        }


@dataclass(frozen=True)
class Reference:
    """What every variant is compared with: the PyTorch predictor's logits on the parity
    texts, and a distilled student's teacher (its berth.json, its held-out logits)."""

    logits: np.ndarray
    teacher: tuple[BerthConfig, np.ndarray] | None = None


def score_variant(variant: str, graph: Graph, run: ExportRun, reference: Reference) -> VariantScore:
    """Parity on the parity texts, scores on the held-out rows, latency at batch 1, 32."""
    cfg, berth = run.cfg, run.berth
    runner = OnnxClassifier(
        graph.path,
        cfg.checkpoint,
        threads=cfg.threads,
        disabled_optimizers=graph.disabled_optimizers,
        berth=berth,
    )
    started = time.monotonic()
    logits, _ = runner.logits_and_probabilities(run.parity_texts)
    parity_result = parity(reference.logits, logits, berth.multi_label)
    eval_logits, probs = runner.logits_and_probabilities(run.eval_texts)
    scores = classification_scores(probs, run.targets, berth)
    if reference.teacher is not None:
        teacher_berth, teacher_logits = reference.teacher
        shared = agreement(eval_logits, teacher_logits, berth, teacher_berth)
        scores = dataclasses.replace(scores, teacher_agreement=shared)
    scoring_s = time.monotonic() - started
    return VariantScore(
        variant=variant,
        file=graph.path,
        size_mb=graph.path.stat().st_size / 1e6,
        parity=parity_result,
        scores=scores,
        scoring_s=scoring_s,
        latency=tuple(_latencies(runner, run.eval_texts, cfg)),
    )


def _latencies(runner: OnnxClassifier, texts: Sequence[str], cfg: ExportConfig) -> list[Latency]:
    return [latency(runner, texts, bs, cfg.latency_runs) for bs in LATENCY_BATCHES]


def score_variants(run: ExportRun, graphs: dict[str, Graph]) -> list[VariantScore]:
    """Each variant's parity with the PyTorch reference, scores and latency."""
    from training.predict import Predictor

    reference = Reference(
        Predictor(run.cfg.checkpoint, config=run.berth).logits(run.parity_texts),
        teacher_reference(run.berth, run.eval_texts),
    )
    results = []
    for name, graph in graphs.items():
        say(f"scoring {name} …")
        results.append(score_variant(name, graph, run, reference))
    return results


def teacher_reference(
    berth: BerthConfig, texts: list[str]
) -> tuple[BerthConfig, np.ndarray] | None:
    """A distilled student's teacher and its logits on `texts` (PyTorch reference), so
    that each variant's agreement with its teacher is reported; None for other
    checkpoints, or when the teacher is no longer where berth.json says."""
    from training.predict import Predictor

    teacher_dir = Path((berth.distillation or {}).get("teacher", ""))
    if not berth.distillation or not (teacher_dir / BERTH_FILE).is_file():
        if berth.distillation:
            say(f"teacher {teacher_dir} not found: agreement with it is not reported")
        return None
    say(f"teacher {teacher_dir}: scoring the held-out rows for agreement")
    teacher = Predictor(teacher_dir)
    return teacher.config, teacher.logits(texts)
