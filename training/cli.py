"""`python -m training` (fine-tune), `python -m training mlm` (continued pretraining),
`python -m training seeds` (a seed study) and `python -m training distill`.

The argument parsers are generated from the configuration dataclasses by berth_args:
one flag per field (`--field-name`), its help text, choices and group from the
field's metadata.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from berth_args import build_parser, parse_config
from berth_core.errors import run_command

__all__ = ["build_parser", "main", "parse_config"]

EPILOG_TRAIN = """\
examples:
  python -m training                                   # MiniLM-L6 on Rotten Tomatoes (offline)
  python -m training --dataset bbc_news --epochs 4
  python -m training --train-file data/train.csv --text-column review --label-column stars
  python -m training --dataset imdb --model bert-base-uncased --max-length 512 \\
      --truncation head+tail --batch-size 16 --lr 3e-5
  torchrun --nproc-per-node 4 -m training --dataset imdb    # multi-GPU, no code change
  python -m training mlm --help                         # continued masked-LM pretraining
  python -m training seeds --seeds 42 43 44 -- --lr 5e-5    # seed study on one split
  python -m training distill --teacher runs/sentiment/model  # a 3-layer student
"""

EPILOG_DISTILL = """\
examples:
  python -m training distill --teacher runs/sentiment/model --output-dir runs/student
  python -m training distill --teacher runs/sentiment/model --student-layers 2 \\
      --unlabelled-file reviews.txt --output-dir runs/student-2l
  python -m training distill --teacher runs/news/model --student prajjwal1/bert-mini
"""


PROG = "python -m training"
DESCRIPTION_TRAIN = (
    "Fine-tune a BERT-family text classifier (binary, multi-class, multi-label) "
    "and write runs/<run>/: model/ (the checkpoint), metrics.json, reports, plots, "
    "splits/. `python -m training mlm --help`: continued MLM pretraining."
)
DESCRIPTION_MLM = (
    "Continued masked-LM pretraining on unlabelled domain text; the checkpoint "
    "it writes fine-tunes with `python -m training --model <dir>`."
)
DESCRIPTION_SEEDS = (
    "Train one recipe with several seeds on one fixed split and summarise the "
    "best validation and the test metric: is a change bigger than seed noise? "
    "Flags for `python -m training` follow `--`."
)
EPILOG_SEEDS = (
    "example:\n  python -m training seeds --seeds 42 43 44 --output-dir "
    "runs/seeds/lr5e-5 -- --lr 5e-5\n"
)
DESCRIPTION_DISTILL = (
    "Train big, serve small: distil a trained teacher (a berth checkpoint) into "
    "a smaller student on the teacher's data plus teacher-labelled unlabelled "
    "text; the student is an ordinary berth run that `python -m export` takes."
)


def run_mlm(argv: list[str]) -> int:
    from training.mlm import MLMConfig, pretrain

    config = parse_config(MLMConfig, argv, f"{PROG} mlm", DESCRIPTION_MLM)
    result = pretrain(config)
    print(f"MLM checkpoint: {result.checkpoint}")
    print(f"eval perplexity: {result.metrics.get('eval_perplexity')}")
    print(f"fine-tune it: python -m training --model {result.checkpoint}")
    return 0


def run_seeds(argv: list[str]) -> int:
    from training.seeds import SeedsConfig, report, run_seeds

    own, train_args = argv, []
    if "--" in own:
        at = own.index("--")
        own, train_args = own[:at], own[at + 1 :]
    config = parse_config(SeedsConfig, own, f"{PROG} seeds", DESCRIPTION_SEEDS, EPILOG_SEEDS)
    result = run_seeds(config, train_args)
    print(report(result))
    return 0 if all(r["returncode"] == 0 for r in result["runs"]) else 1


def run_distill(argv: list[str]) -> int:
    from training.distill import DistillConfig, distill

    config = parse_config(
        DistillConfig, argv, f"{PROG} distill", DESCRIPTION_DISTILL, EPILOG_DISTILL
    )
    return _summary(distill(config))


def run_train(argv: list[str]) -> int:
    from training.train import TrainConfig, train

    config = parse_config(TrainConfig, argv, PROG, DESCRIPTION_TRAIN, EPILOG_TRAIN)
    return _summary(train(config))


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "mlm": run_mlm,
    "seeds": run_seeds,
    "distill": run_distill,
    "train": run_train,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = SUBCOMMANDS.get(argv[0]) if argv else None
    return run_command(lambda: command(argv[1:]) if command else run_train(argv))


def _summary(result) -> int:
    if os.environ.get("RANK", "0") != "0":
        return 0
    test = result.metrics["test"]
    print(f"run directory: {result.run_dir}")
    print(f"checkpoint:    {result.checkpoint}")
    print(f"test accuracy: {test.get('accuracy', float('nan')):.4f}")
    print(f"test macro-F1: {test.get('macro_f1', float('nan')):.4f}")
    agreement = result.metrics.get("teacher_agreement")
    if agreement:
        print(f"agreement with the teacher (test): {agreement['test']:.4f}")
        if "unlabelled" in agreement:
            print(
                f"agreement with the teacher (held-out unlabelled): {agreement['unlabelled']:.4f}"
            )
    return 0
