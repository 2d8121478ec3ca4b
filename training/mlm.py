"""Continued masked-LM pretraining on unlabelled domain text (`python -m training mlm`).

The checkpoint it writes (`<output-dir>/model`: safetensors weights + tokenizer) is an
ordinary Hugging Face checkpoint: `python -m training --model <that dir>` fine-tunes it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from berth_args import arg, groups, option
from berth_core.encoding import encode
from training.data import (
    DataError,
    DataSpec,
    Split,
    carve,
    dataset_name,
    load_texts,
)
from training.rundir import (
    last_checkpoint,
    prepare_run_dir,
    publish_model,
    say,
    write_metrics,
)
from training.sources import corpus_listing
from training.train import (
    PRECISIONS,
    EncodedDataset,
    default_model,
    epoch_history,
    fast_tokenizer,
    load_hf_tokenizer,
    optimisation_arguments,
    resolve_precision,
)

MLM_OUTPUTS = ("model", ".model.tmp", "checkpoints", "metrics.json")


# The DataSpec fields `python -m training mlm` has flags for (unlabelled text: no labels,
# no test split), described for pretraining.
MLM_DATA_FLAGS = {
    "dataset": arg(
        "Hub dataset name, local data file or corpus whose texts to pretrain on "
        f"({corpus_listing()}); ignored with --train-file",
        "data",
    ),
    "dataset_config": arg("configuration name of a Hub dataset", "data"),
    "train_file": arg(
        "unlabelled text: .txt (one text per line), .csv, .tsv, .jsonl, .parquet", "data"
    ),
    "text_column": arg("column with the text", "data"),
    "validation_fraction": arg("share of the texts held out to report perplexity", "data"),
    "max_train_samples": arg("pretrain on a slice of this many texts", "data"),
    "trust_remote_code": arg("allow custom model code from the Hub", "model"),
    "seed": arg("random seed", "run"),
}


@groups({"model": "model", "mlm_probability": "optimisation", "output_dir": "run"})
@dataclass
class MLMConfig:
    """Everything `python -m training mlm` accepts: its data (a DataSpec, the flags
    MLM_DATA_FLAGS names) and the pretraining's own."""

    data: DataSpec = option(
        factory=lambda: DataSpec(validation_fraction=0.05), fields=MLM_DATA_FLAGS
    )
    model: str | None = option(
        None,
        "base model: Hub id or local directory (default: the packaged all-MiniLM-L6-v2)",
    )
    max_length: int = option(128, "maximum tokens per text")
    mlm_probability: float = option(0.15, "share of tokens masked")
    epochs: float = option(1, "training epochs")
    batch_size: int = option(32, "batch size per device")
    gradient_accumulation_steps: int = option(1, "accumulate gradients over this many batches")
    lr: float = option(5e-5, "peak learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay")
    warmup_ratio: float = option(0.06, "share of steps in linear warmup")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    precision: str = option(
        "auto",
        "auto = bf16/fp16 on CUDA, bf16 on CPUs with AMX or AMD's AVX-512 BF16, else fp32",
        choices=PRECISIONS,
    )
    output_dir: str | None = option(None, "run directory (default: runs/mlm-<dataset name>)")
    overwrite: bool = option(False, "replace the outputs of an existing run directory")
    resume: bool = option(
        False, "resume from the last Trainer checkpoint in <output-dir>/checkpoints"
    )
    report_to: str = option("none", "experiment trackers (none, tensorboard, wandb, ...)")

    def record(self) -> dict:
        """The configuration as metrics.json records it: one flat dict."""
        flat = asdict(self)
        return flat.pop("data") | flat


@dataclass
class MLMResult:
    run_dir: Path
    checkpoint: Path
    metrics: dict


def mlm_splits(config: MLMConfig) -> tuple[str, Split, Split]:
    """(source, train, eval): the unlabelled texts, a share held out for perplexity."""
    source, texts = load_texts(config.data)
    if len(texts) < 2:
        raise DataError(f"{source}: {len(texts)} texts; masked-LM pretraining needs more")
    pool = Split(texts, [None] * len(texts), [source] * len(texts))
    data = config.data
    train_split, eval_split = carve(pool, data.validation_fraction, data.seed, True)
    if data.max_train_samples:
        train_split = train_split.subset(range(min(data.max_train_samples, len(train_split))))
        eval_split = eval_split.subset(
            range(min(max(data.max_train_samples // 10, 1), len(eval_split)))
        )
    return source, train_split, eval_split


def mlm_tokenizer(config: MLMConfig, model_name: str):
    """(Hugging Face tokenizer, fast `tokenizers` tokenizer) of the base model."""
    hf_tokenizer = load_hf_tokenizer(model_name, config.data.trust_remote_code)
    if hf_tokenizer.mask_token is None:
        raise DataError(f"{model_name}: the tokenizer has no mask token; pick an MLM model")
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer, _ = fast_tokenizer(hf_tokenizer, workdir)
    return hf_tokenizer, tokenizer


def mlm_arguments(config: MLMConfig, run_dir: Path):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        **optimisation_arguments(config, config.batch_size),
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=2,
        seed=config.data.seed,
    )


def mlm_metrics(config, trainer, model_name: str, run_dir: Path, source: str, wall: float, sizes):
    import math

    eval_loss = trainer.evaluate().get("eval_loss")
    return {
        "source": source,
        "history": epoch_history(trainer.state.log_history),
        "eval_loss": eval_loss,
        "eval_perplexity": math.exp(eval_loss) if eval_loss is not None else None,
        "train_wall_time_s": round(wall, 2),
        "sizes": sizes,
        "config": config.record() | {"model": model_name, "output_dir": str(run_dir)},
    }


def pretrain(config: MLMConfig) -> MLMResult:
    from transformers import (
        AutoModelForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        set_seed,
    )

    resolve_precision(config.precision)  # refuses fp16 without CUDA before any output
    model_name = config.model or default_model()
    run_dir = Path(config.output_dir or Path("runs") / f"mlm-{dataset_name(config.data)}")
    state = prepare_run_dir(run_dir, config.overwrite, config.resume, MLM_OUTPUTS)

    source, train_split, eval_split = mlm_splits(config)
    say(state, f"MLM on {source}: {len(train_split)} train / {len(eval_split)} eval texts")
    set_seed(config.data.seed)
    hf_tokenizer, tokenizer = mlm_tokenizer(config, model_name)
    train_set = EncodedDataset(encode(tokenizer, train_split.texts, config.max_length))
    eval_set = EncodedDataset(encode(tokenizer, eval_split.texts, config.max_length))

    kwargs = {"trust_remote_code": True} if config.data.trust_remote_code else {}
    model = AutoModelForMaskedLM.from_pretrained(model_name, use_safetensors=True, **kwargs)
    collator = DataCollatorForLanguageModeling(
        tokenizer=hf_tokenizer, mlm_probability=config.mlm_probability, seed=config.data.seed
    )
    trainer = Trainer(
        model=model,
        args=mlm_arguments(config, run_dir),
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
    )
    resume_from = last_checkpoint(run_dir / "checkpoints") if config.resume else None
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=resume_from)
    sizes = {"train": len(train_split), "eval": len(eval_split)}
    metrics = mlm_metrics(
        config, trainer, model_name, run_dir, source, time.monotonic() - started, sizes
    )
    checkpoint = publish_model(
        trainer, run_dir, state, lambda staging: hf_tokenizer.save_pretrained(str(staging))
    )
    if state.is_main_process:
        write_metrics(run_dir, metrics)
        say(state, f"MLM checkpoint: {checkpoint} (eval perplexity {metrics['eval_perplexity']})")
    state.wait_for_everyone()
    return MLMResult(run_dir=run_dir, checkpoint=checkpoint, metrics=metrics)
