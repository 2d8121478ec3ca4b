"""Scoring ONNX variants: held-out data, an onnxruntime runner, metrics, parity, latency."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from berth_core.checkpoint import BerthConfig
from berth_core.encoding import Windows, aggregate, load_tokenizer_and_pad, pad, probabilities
from training.metrics import probability_metrics


def load_eval(
    path: Path, berth: BerthConfig, limit: int | None = None
) -> tuple[list[str], np.ndarray]:
    """Rows `{"text", "label"}` (name or index) or multi-label `{"text", "labels": [...]}`.

    Returns texts and targets: class indices (single-label) or a 0/1 matrix (multi-label).
    """
    index = {name: i for i, name in enumerate(berth.labels)}

    def to_index(value) -> int:
        if isinstance(value, str) and value in index:
            return index[value]
        if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.isdigit()):
            return int(value)
        raise ValueError(f"{path}: label {value!r} is not one of {berth.labels}")

    texts, targets = [], []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            texts.append(row["text"])
            if berth.multi_label:
                values = row.get("labels", row.get("label"))
                values = values if isinstance(values, list) else [values]
                hot = np.zeros(len(berth.labels), dtype=np.int64)
                for value in values:
                    hot[to_index(value)] = 1
                targets.append(hot)
            else:
                targets.append(to_index(row["label"]))
            if limit and len(texts) >= limit:
                break
    if not texts:
        raise ValueError(f"{path}: no evaluation rows")
    return texts, np.asarray(targets)


def session(path: Path, threads: int = 0, disabled_optimizers: Sequence[str] = ()):
    """A CPU session set up as the serving backend sets it up (`disabled_optimizers`
    as in the classifier's config parameters)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(disabled_optimizers),
    )


class OnnxClassifier:
    """Tokenize exactly as training does, run the ONNX graph, aggregate each text's
    windows as the served ensemble does. `berth` replaces the checkpoint's berth.json
    (export serving other window settings)."""

    def __init__(
        self,
        model: Path,
        checkpoint: Path,
        threads: int = 0,
        disabled_optimizers: Sequence[str] = (),
        *,
        berth: BerthConfig,
    ) -> None:
        self.berth = berth
        self.tokenizer, self.pad_id = load_tokenizer_and_pad(
            str(Path(checkpoint) / "tokenizer.json")
        )
        self.session = session(model, threads, disabled_optimizers)

    def windows(self, texts: Sequence[str]) -> Windows:
        return self.berth.encode_windows(self.tokenizer, texts)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) of every window of `texts` (a row per text
        without window mode), padded to the longest."""
        return pad(self.windows(texts).ids, self.pad_id)

    def run(self, input_ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, probs = self.session.run(
            ["logits", "probabilities"], {"input_ids": input_ids, "attention_mask": mask}
        )
        return logits, probs

    def logits_and_probabilities(
        self, texts: Sequence[str], batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """One row per text. Without window mode the graph's own probabilities; with it,
        those of the aggregated logits (as the served aggregation step computes them)."""
        if not self.berth.windowed:
            logits, probs = [], []
            for start in range(0, len(texts), batch_size):
                out = self.run(*self.encode(texts[start : start + batch_size]))
                logits.append(out[0])
                probs.append(out[1])
            return np.concatenate(logits), np.concatenate(probs)
        windows = self.windows(texts)
        return self.aggregate(windows, self.window_logits(windows.ids, batch_size))

    def window_logits(self, ids: list[list[int]], batch_size: int = 32) -> np.ndarray:
        """Logits of token-id rows, `batch_size` rows a run, in order."""
        out = [
            self.run(*pad(ids[start : start + batch_size], self.pad_id))[0]
            for start in range(0, len(ids), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(self.berth.labels)), np.float32)

    def aggregate(
        self, windows: Windows, logits: np.ndarray, method: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Window logits → (logits, probabilities) per text, by `method` (default: the
        berth.json aggregation)."""
        b = self.berth
        out = aggregate(
            logits, windows.text, windows.weight, method or b.aggregation, b.multi_label
        )
        return out, probabilities(out.astype(np.float64), b.multi_label).astype(np.float32)


def joined_texts(texts: Sequence[str], count: int = 16) -> list[str]:
    """`count` long texts, each consecutive held-out texts joined (2, 4, 8, … 64 of
    them, cycling): real text of one to dozens of windows, for the parity gate."""
    out, start, size = [], 0, 2
    while texts and len(out) < count:
        picked = [texts[(start + i) % len(texts)] for i in range(size)]
        out.append(" ".join(picked))
        start, size = start + size, 2 if size >= 64 else size * 2
    return out


# The figures export reports (in %) and the names training.metrics gives them (0–1).
SINGLE_LABEL_SCORES = {"accuracy": "accuracy", "macro_f1": "macro_f1"}
MULTI_LABEL_SCORES = {"micro_f1": "micro_f1", "macro_f1": "macro_f1", "exact_match": "accuracy"}


@dataclass(frozen=True)
class Scores:
    """Held-out figures in % by name (accuracy, F1s), `primary_metric` naming the one the
    accuracy gate compares; a distilled student's agreement with its teacher (0-1)."""

    figures: dict[str, float]
    primary_metric: str
    teacher_agreement: float | None = None

    @property
    def primary(self) -> float:
        return self.figures[self.primary_metric]

    def record(self) -> dict:
        """As the reports have it: the figures, then `primary` and `primary_metric`."""
        shown = {**self.figures, "primary": self.primary, "primary_metric": self.primary_metric}
        if self.teacher_agreement is not None:
            shown["teacher_agreement"] = self.teacher_agreement
        return shown


def classification_scores(probs: np.ndarray, targets: np.ndarray, berth: BerthConfig) -> Scores:
    """training.metrics' figures, as the export report shows them: in %. Single-label:
    accuracy, macro F1. Multi-label (thresholds applied): micro/macro F1, exact-match
    accuracy. The primary figure (the accuracy gate's): accuracy, micro F1."""
    metrics = probability_metrics(probs, targets, berth)
    shown = MULTI_LABEL_SCORES if berth.multi_label else SINGLE_LABEL_SCORES
    figures = {name: 100 * metrics[key] for name, key in shown.items()}
    return Scores(figures, "micro_f1" if berth.multi_label else "accuracy")


@dataclass(frozen=True)
class Parity:
    """A variant's logits against the PyTorch reference's on the same texts."""

    texts: int
    max_abs_logit_diff: float
    max_abs_prob_diff: float
    argmax_agreement: float


def parity(reference_logits: np.ndarray, logits: np.ndarray, multi_label: bool) -> Parity:
    from berth_core.rule import probabilities

    ref_p = probabilities(reference_logits, multi_label)
    p = probabilities(logits, multi_label)
    return Parity(
        texts=len(logits),
        max_abs_logit_diff=float(np.abs(reference_logits - logits).max()),
        max_abs_prob_diff=float(np.abs(ref_p - p).max()),
        argmax_agreement=float((reference_logits.argmax(1) == logits.argmax(1)).mean()),
    )


def _batches(runner: OnnxClassifier, texts: Sequence[str], batch_size: int, runs: int) -> list:
    pool = list(texts) * (1 + batch_size // max(len(texts), 1))
    return [
        runner.encode(pool[(i * batch_size) % len(pool) :][:batch_size])
        for i in range(min(runs, 8))
    ]


def _run_times(
    runners: dict[str, OnnxClassifier], texts: Sequence[str], batch_size: int, runs: int
) -> dict[str, list[float]]:
    """Seconds per `session.run` on real texts (tokenization excluded), each runner warmed
    up once, then timed in turns (A, B, C, A, B, C, …) so that a drift of the machine's
    speed during the measurement hits every runner alike."""
    batches = {key: _batches(runner, texts, batch_size, runs) for key, runner in runners.items()}
    for key, runner in runners.items():
        runner.run(*batches[key][0])  # warm-up
    times: dict[str, list[float]] = {key: [] for key in runners}
    for i in range(runs):
        for key, runner in runners.items():
            ids, mask = batches[key][i % len(batches[key])]
            start = time.perf_counter()
            runner.run(ids, mask)
            times[key].append(time.perf_counter() - start)
    return times


def interleaved_median_ms(
    runners: dict[str, OnnxClassifier], texts: Sequence[str], batch_size: int, runs: int
) -> dict[str, float]:
    """Median ms of one `session.run` per runner, the runners timed in turns."""
    times = _run_times(runners, texts, batch_size, runs)
    return {key: 1000 * statistics.median(t) for key, t in times.items()}


@dataclass(frozen=True)
class Latency:
    """One `session.run` at one batch size, on real texts (tokenization excluded)."""

    batch_size: int
    median_ms: float
    p90_ms: float
    texts_per_s: float


def latency(runner: OnnxClassifier, texts: Sequence[str], batch_size: int, runs: int) -> Latency:
    """Median (and p90) wall time of one `session.run`, timed `runs` times."""
    times = _run_times({"": runner}, texts, batch_size, runs)[""]
    median = statistics.median(times)
    return Latency(
        batch_size=batch_size,
        median_ms=1000 * median,
        p90_ms=1000 * sorted(times)[int(0.9 * (len(times) - 1))],
        texts_per_s=batch_size / median,
    )
