"""The run directory every training command writes (`train`, `mlm`, `distill`).

One place for the rules they share: never clobber a run without `--overwrite`, resume
only from a real Trainer checkpoint, publish the model directory atomically (staged,
then renamed), and let only the main process of a distributed launch write.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from berth_core.errors import InputError


class RunDirError(InputError):
    """The run directory is in a state the request does not allow (exists, nothing to
    resume)."""


def distributed_state():
    from accelerate import PartialState

    return PartialState()


def say(state, message: str, prefix: str = "training") -> None:
    if state.is_main_process:
        print(f"[{prefix}] {message}", flush=True)


def last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool, outputs: Iterable[str]):
    """Claim `run_dir` for this run and return the distributed state: refuse to clobber
    an existing run; with --overwrite remove its `outputs` (only)."""
    if overwrite and resume:
        raise RunDirError("--overwrite and --resume exclude each other: pick one")
    state = distributed_state()
    existing = [
        name for name in ("model", "metrics.json", "checkpoints") if (run_dir / name).exists()
    ]
    if resume:
        if not last_checkpoint(run_dir / "checkpoints"):
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
            for name in outputs:
                path = run_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
    state.wait_for_everyone()
    return state


def publish_model(trainer, run_dir: Path, state, complete: Callable[[Path], None]) -> Path:
    """Save the trainer's model to `<run>/model` atomically: every rank saves into a
    staging directory (FSDP/DeepSpeed gather there), the main process completes it
    (`complete(staging)`: tokenizer, berth.json) and renames it into place."""
    checkpoint = run_dir / "model"
    staging = run_dir / ".model.tmp"
    if state.is_main_process and staging.exists():
        shutil.rmtree(staging)
    state.wait_for_everyone()
    trainer.save_model(str(staging))
    if state.is_main_process:
        (staging / "training_args.bin").unlink(missing_ok=True)
        complete(staging)
        if checkpoint.exists():
            shutil.rmtree(checkpoint)
        os.replace(staging, checkpoint)
    state.wait_for_everyone()
    return checkpoint


def write_metrics(run_dir: Path, metrics: dict) -> None:
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
