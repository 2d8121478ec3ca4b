"""Accuracy by strategy on long labelled texts: how to read a text longer than the model.

    python -m export.long_texts --checkpoint runs/sentiment/model --dataset imdb_reviews \
        --onnx runs/sentiment/export/onnx/model.int8.onnx --limit 2000
    python -m export.long_texts --checkpoint runs/news/model \
        --eval-file runs/news/splits/test.jsonl

One model, one set of texts, every strategy: `head` (the first max_length tokens),
`head+tail` (half from the start, half from the end), and windows of max_length tokens
`--window-stride` apart, at most `--max-windows` a text, their logits aggregated by
each method of berth_core/encoding.py (mean, max, weighted, mean_prob), plus the mean of
every window (no cap). The windows are scored once; each strategy aggregates them.
Scoring runs the exported ONNX graph (`--onnx`, what the ensemble serves) or, without
it, the PyTorch reference predictor. Nothing is tuned here: report texts outside the
split the model was tuned on.

`--texts-out FILE` writes the texts as JSON Lines for `python -m loadtest --texts FILE`
and the token counts that turn its texts/s into tokens/s (`--stats-only`: no scoring).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from berth_args import ConfigParser, option
from berth_core.checkpoint import BerthConfig
from berth_core.encoding import AGGREGATIONS, Windows, aggregate, encode_windows, probabilities
from berth_core.errors import InputError, run_command
from export.evaluate import classification_scores, load_eval

UNCAPPED = 1 << 30


@dataclass
class LongTextsConfig:
    """--dataset or --eval-file: one of them (main checks)."""

    checkpoint: Path = option(help="a berth checkpoint")
    dataset: str | None = option(None, "an offline corpus: imdb_reviews, bbc_news")
    eval_file: Path | None = option(None, "JSON Lines {text, label} (a split)")
    onnx: Path | None = option(None, "score with this exported graph (default: PyTorch)")
    window_stride: int = option(0, "0: berth.json's, else 3/4 of max_length")
    max_windows: int = option(0, "cap per text; 0: berth.json's, else 16")
    limit: int = option(0, "a seeded sample of N texts (0: all)")
    seed: int = option(0, "seed of the sample")
    batch_size: int = option(32, "windows a forward pass")
    threads: int = option(0, "onnxruntime threads (0: all)")
    texts_out: Path | None = option(None, "write the texts here (JSON Lines)")
    output: Path | None = option(None, "write the results here (JSON)")
    stats_only: bool = option(False, "token counts, no scoring")


def build_parser() -> ConfigParser:
    return ConfigParser(
        LongTextsConfig,
        prog="python -m export.long_texts",
        description="Accuracy by strategy (head, head+tail, windows by aggregation) on "
        "long labelled texts.",
    )


def load_texts(cfg: LongTextsConfig, berth: BerthConfig) -> tuple[list[str], np.ndarray]:
    """Texts and class indices, a seeded sample of `limit` when given."""
    if cfg.eval_file:
        texts, targets = load_eval(cfg.eval_file, berth)
    else:
        from training.data import offline_rows

        rows = offline_rows(cfg.dataset).rows
        texts = [row["text"] for _, row in rows]
        targets = np.array([berth.labels.index(row["label"]) for _, row in rows])
    if cfg.limit and cfg.limit < len(texts):
        picked = sorted(random.Random(cfg.seed).sample(range(len(texts)), cfg.limit))
        texts, targets = [texts[i] for i in picked], targets[picked]
    return texts, targets


def window_settings(cfg: LongTextsConfig, berth: BerthConfig) -> BerthConfig:
    """berth.json with the windows measured here (flags, else berth.json's, else 3/4 of
    max_length and 16)."""
    stride = cfg.window_stride or berth.window_stride or max(1, berth.max_length * 3 // 4)
    cap = cfg.max_windows or (berth.max_windows if berth.windowed else 16)
    return replace(berth, truncation="head", head_tokens=0, window_stride=stride, max_windows=cap)


class Scorer:
    """Window rows → logits, with the exported graph or the PyTorch reference."""

    def __init__(self, cfg: LongTextsConfig, berth: BerthConfig) -> None:
        self.batch_size = cfg.batch_size
        if cfg.onnx:
            from export.evaluate import OnnxClassifier

            self.engine = OnnxClassifier(cfg.onnx, cfg.checkpoint, cfg.threads, berth=berth)
        else:
            from training.predict import Predictor

            self.engine = Predictor(cfg.checkpoint, config=berth)
        self.tokenizer = self.engine.tokenizer

    def logits(self, windows: Windows) -> np.ndarray:
        """Rows in length order (little padding), answered in input order."""
        order = sorted(range(len(windows.ids)), key=lambda i: len(windows.ids[i]))
        out = self.engine.window_logits([windows.ids[i] for i in order], self.batch_size)
        result = np.empty_like(out)
        result[order] = out
        return result


def strategies(scorer: Scorer, texts: list[str], berth: BerthConfig) -> dict[str, np.ndarray]:
    """Logits per strategy, one row per text."""
    tok, b = scorer.tokenizer, berth
    every = encode_windows(tok, texts, b.max_length, b.window_stride, UNCAPPED)
    every_logits = scorer.logits(every)
    out = {"head": every_logits[every.first()]}
    half = (b.max_length - 2) // 2
    tails = encode_windows(tok, texts, b.max_length, 0, 1, "head+tail", half)
    out["head+tail"] = scorer.logits(tails)
    capped = encode_windows(tok, texts, b.max_length, b.window_stride, b.max_windows)
    capped_logits = scorer.logits(capped)
    for method in AGGREGATIONS:
        out[f"windows {method}"] = aggregate(
            capped_logits, capped.text, capped.weight, method, b.multi_label
        )
    out["every window mean"] = aggregate(every_logits, every.text, every.weight, "mean")
    return out


def text_stats(scorer_tokenizer, texts: Sequence[str], berth: BerthConfig) -> dict:
    lengths = [
        len(e.ids) for e in scorer_tokenizer.encode_batch(list(texts), add_special_tokens=True)
    ]
    windows = encode_windows(
        scorer_tokenizer, texts, berth.max_length, berth.window_stride, berth.max_windows
    )
    return {
        "texts": len(texts),
        "mean_tokens": float(np.mean(lengths)),
        "median_tokens": float(np.median(lengths)),
        "longer_than_max_length": float(np.mean(np.array(lengths) > berth.max_length)),
        "mean_windows": len(windows) / max(len(texts), 1),
        "max_length": berth.max_length,
        "window_stride": berth.window_stride,
        "max_windows": berth.max_windows,
    }


def table(results: dict[str, dict]) -> str:
    lines = ["| strategy | accuracy | macro F1 |", "| --- | ---: | ---: |"]
    for name, scores in results.items():
        lines.append(f"| {name} | {scores['accuracy']:.2f} % | {scores['macro_f1']:.2f} % |")
    return "\n".join(lines)


def run(cfg: LongTextsConfig) -> dict:
    berth = window_settings(cfg, BerthConfig.load(cfg.checkpoint))
    if berth.multi_label:
        raise InputError("long_texts scores single-label checkpoints (accuracy by strategy)")
    texts, targets = load_texts(cfg, berth)
    from berth_core.encoding import load_tokenizer

    stats = text_stats(load_tokenizer(str(cfg.checkpoint / "tokenizer.json")), texts, berth)
    print(json.dumps(stats), flush=True)
    if cfg.texts_out:
        cfg.texts_out.parent.mkdir(parents=True, exist_ok=True)
        with open(cfg.texts_out, "w") as f:
            for text, target in zip(texts, targets, strict=True):
                row = {"text": text, "label": berth.labels[int(target)]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    report = {"checkpoint": str(cfg.checkpoint), "engine": str(cfg.onnx or "pytorch"), **stats}
    if cfg.stats_only:
        return report
    started = time.monotonic()
    logits = strategies(Scorer(cfg, berth), texts, berth)
    report["results"] = {
        name: classification_scores(probabilities(values, False), targets, berth).record()
        for name, values in logits.items()
    }
    report["elapsed_s"] = time.monotonic() - started
    print(table(report["results"]))
    if cfg.output:
        cfg.output.write_text(json.dumps(report, indent=2) + "\n")
    return report


def show_long_reviews(classifier, checkpoint: Path, count: int = 3, seed: int = 0) -> None:
    """`make demo`: whole IMDB reviews (a corpus the model never saw) through the served
    ensemble, beside the reference predictor reading only each review's first window."""
    from berth_core.encoding import load_tokenizer
    from training.data import offline_rows
    from training.predict import Predictor

    berth = BerthConfig.load(checkpoint)
    tokenizer = load_tokenizer(str(Path(checkpoint) / "tokenizer.json"))
    rows = offline_rows("imdb_reviews").rows
    rows = [row for _, row in random.Random(seed).sample(rows, 200)]
    lengths = [len(e.ids) for e in tokenizer.encode_batch([r["text"] for r in rows])]
    picked = [r for r, n in zip(rows, lengths, strict=True) if n > 3 * berth.max_length][:count]
    texts = [r["text"] for r in picked]
    head = Predictor(checkpoint, config=replace(berth, max_windows=1)).predict(texts)
    served = classifier.predict(texts)
    how = f"up to {berth.max_windows} windows" if berth.windowed else "one window"
    print(f"\n=== long reviews (IMDB): whole text served ({how}) vs its first window", flush=True)
    print(f"{'true':>9} {'served':>15} {'head only':>15} {'tokens':>6}  text")
    for row, whole, first in zip(picked, served, head, strict=True):
        tokens = len(tokenizer.encode(row["text"]).ids)
        print(
            f"{row['label']:>9} {whole['label']:>9} {whole['confidence']:.3f} "
            f"{first['label']:>9} {first['confidence']:.3f} {tokens:>6}  "
            f"{' '.join(row['text'].split())[:60]}…"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    cfg = parser.parse_config(argv)
    if (cfg.dataset is None) == (cfg.eval_file is None):
        parser.error("give one of --dataset, --eval-file")

    def scores() -> None:
        run(cfg)

    return run_command(scores)


if __name__ == "__main__":
    raise SystemExit(main())
