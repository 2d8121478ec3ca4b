"""`python -m export.agreement`: does a student decide as its teacher does, on text
that neither was trained on?

Held-out agreement (metrics.json, the export report) says how well a student copies its
teacher on the teacher's own distribution; users send other text. This scores both
models on any file of real text, optionally labelled, optionally as the exported ONNX
graphs that serving runs, and prints agreement and each model's accuracy. With labels
it also prints the student's accuracy minus the teacher's with a 95 % interval: on a
thousand texts two models that disagree on a few percent of them differ by chance by
more than half a point, so a gap means little without its interval.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from berth_args import ConfigParser, option
from berth_core.checkpoint import BerthConfig
from berth_core.errors import run_command
from export.evaluate import OnnxClassifier
from training.data import OFFLINE_CORPORA, DataError, source_split
from training.metrics import agreement
from training.sources import resolve


@dataclass
class Probe:
    source: str
    texts: list[str]
    labels: list[str] | None


def load_probe(
    source: str, text_column: str, label_column: str | None, limit: int | None, seed: int
) -> Probe:
    """Texts (and labels, when the column exists) from a data file or a corpus (an
    offline one, or outside text that loadtest.outside_texts wrote), resolved as training
    resolves its data; a seeded sample of `limit` of them."""
    split = source_split(resolve(source, ("file", "corpus"), "--source"), text_column, label_column)
    labelled = split.labels[0] is not None
    index = list(range(len(split.texts)))
    if limit is not None and limit < len(index):
        index = sorted(np.random.default_rng(seed).choice(len(index), limit, replace=False))
    texts = [split.texts[i] for i in index]
    labels = [str(split.labels[i]) for i in index] if labelled else None
    return Probe(source, texts, labels)


def scorer(checkpoint: Path, berth: BerthConfig, onnx: Path | None):
    """logits(texts) of a checkpoint: PyTorch, or its exported ONNX graph."""
    if onnx is None:
        from training.predict import Predictor

        return Predictor(checkpoint, config=berth).logits
    runner = OnnxClassifier(onnx, checkpoint, berth=berth)
    return lambda texts: runner.logits_and_probabilities(texts)[0]


def correct(logits: np.ndarray, labels: list[str], config: BerthConfig) -> np.ndarray:
    """Per text: did the model decide its label?"""
    from training.metrics import predictions

    unknown = sorted(set(labels) - set(config.labels))
    if unknown:
        raise DataError(f"labels {unknown[:5]} are not the model's labels {config.labels}")
    index = {name: i for i, name in enumerate(config.labels)}
    return predictions(logits, config) == np.array([index[x] for x in labels])


def paired_difference(student: np.ndarray, teacher: np.ndarray) -> dict:
    """Student minus teacher accuracy, in points, on the same texts, with the Wald
    interval for paired proportions: only the texts one model gets right and the other
    wrong (the discordant pairs) carry the difference and its uncertainty."""
    n = len(student)
    only_student = int(np.sum(student & ~teacher))
    only_teacher = int(np.sum(teacher & ~student))
    diff = (only_student - only_teacher) / n
    spread = 1.96 * np.sqrt(max(only_student + only_teacher - n * diff**2, 0.0)) / n
    return {
        "points": 100 * diff,
        "interval_95": [100 * (diff - spread), 100 * (diff + spread)],
        "only_student_right": only_student,
        "only_teacher_right": only_teacher,
    }


@dataclass
class AgreementConfig:
    teacher: str = option(help="the teacher checkpoint directory")
    student: str = option(help="the student checkpoint directory")
    source: str = option(
        help=f"a data file (.csv, .tsv, .jsonl, .txt, …) or an offline corpus "
        f"({', '.join(OFFLINE_CORPORA)})"
    )
    text_column: str = "text"
    label_column: str = option(
        "label", "labels, named as the models name them; scored when present"
    )
    max_texts: int | None = option(None, "a seeded sample of this many texts")
    seed: int = 0
    teacher_onnx: Path | None = option(None, "score this exported graph instead")
    student_onnx: Path | None = option(None, "score this exported graph instead")


def compare(args: AgreementConfig) -> dict:
    probe = load_probe(args.source, args.text_column, args.label_column, args.max_texts, args.seed)
    teacher, student = BerthConfig.load(args.teacher), BerthConfig.load(args.student)
    teacher_logits = scorer(Path(args.teacher), teacher, args.teacher_onnx)(probe.texts)
    student_logits = scorer(Path(args.student), student, args.student_onnx)(probe.texts)
    result = {
        "source": probe.source,
        "texts": len(probe.texts),
        "mean_chars": float(np.mean([len(t) for t in probe.texts])),
        "agreement": agreement(student_logits, teacher_logits, student, teacher),
    }
    if probe.labels is not None and not student.multi_label:
        teacher_right = correct(teacher_logits, probe.labels, teacher)
        student_right = correct(student_logits, probe.labels, student)
        result["teacher_accuracy"] = float(teacher_right.mean())
        result["student_accuracy"] = float(student_right.mean())
        result["student_minus_teacher"] = paired_difference(student_right, teacher_right)
    return result


def build_parser() -> ConfigParser:
    return ConfigParser(
        AgreementConfig, prog="python -m export.agreement", description=__doc__.splitlines()[0]
    )


def main(argv: Sequence[str] | None = None) -> int:
    cfg = build_parser().parse_config(argv)
    return run_command(lambda: print(json.dumps(compare(cfg), indent=2)))


if __name__ == "__main__":
    sys.exit(main())
