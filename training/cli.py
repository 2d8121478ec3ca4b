"""`python -m training` (fine-tune) and `python -m training mlm` (continued pretraining).

The argument parsers are generated from the configuration dataclasses: one flag per
field (`--field-name`), its help text, choices and group from the field's metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Sequence

from training.data import DataError

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


def _field_type(tp) -> tuple[type, bool]:
    """(base type, is_list) for `X`, `X | None`, `list[X] | None`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _field_type(args[0])
    if origin is list:
        return typing.get_args(tp)[0], True
    return tp, False


def build_parser(cls, prog: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        group_name = meta.get("group", "options")
        group = groups.get(group_name) or groups.setdefault(
            group_name, parser.add_argument_group(group_name)
        )
        flag = "--" + f.name.replace("_", "-")
        base, is_list = _field_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = meta.get("help", "")
        if base is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            group.add_argument(flag, action=action, default=default, help=help_text)
            continue
        kwargs: dict = {"type": base, "default": default, "dest": f.name}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if is_list:
            kwargs["nargs"] = "+"
            kwargs["metavar"] = f.name.upper().rstrip("S")
        suffix = f" (default: {default})" if default not in (None, [], "") else ""
        group.add_argument(flag, help=help_text + suffix, **kwargs)
    return parser


def parse_config(cls, argv: Sequence[str], prog: str, description: str, epilog: str = ""):
    args = build_parser(cls, prog, description, epilog).parse_args(argv)
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from training.train import RunDirError

    try:
        if argv and argv[0] == "mlm":
            from training.mlm import MLMConfig, pretrain

            config = parse_config(
                MLMConfig,
                argv[1:],
                "python -m training mlm",
                "Continued masked-LM pretraining on unlabelled domain text; the checkpoint "
                "it writes fine-tunes with `python -m training --model <dir>`.",
            )
            result = pretrain(config)
            print(f"MLM checkpoint: {result.checkpoint}")
            print(f"eval perplexity: {result.metrics.get('eval_perplexity')}")
            print(f"fine-tune it: python -m training --model {result.checkpoint}")
            return 0
        if argv and argv[0] == "seeds":
            from training.seeds import SeedsConfig, report, run_seeds

            own, train_args = argv[1:], []
            if "--" in own:
                at = own.index("--")
                own, train_args = own[:at], own[at + 1 :]
            config = parse_config(
                SeedsConfig,
                own,
                "python -m training seeds",
                "Train one recipe with several seeds on one fixed split and summarise the "
                "best validation and the test metric: is a change bigger than seed noise? "
                "Flags for `python -m training` follow `--`.",
                "example:\n  python -m training seeds --seeds 42 43 44 --output-dir "
                "runs/seeds/lr5e-5 -- --lr 5e-5\n",
            )
            result = run_seeds(config, train_args)
            print(report(result))
            return 0 if all(r["returncode"] == 0 for r in result["runs"]) else 1
        if argv and argv[0] == "distill":
            from training.distill import DistillConfig, distill

            config = parse_config(
                DistillConfig,
                argv[1:],
                "python -m training distill",
                "Train big, serve small: distil a trained teacher (a berth checkpoint) into "
                "a smaller student on the teacher's data plus teacher-labelled unlabelled "
                "text; the student is an ordinary berth run that `python -m export` takes.",
                EPILOG_DISTILL,
            )
            return _summary(distill(config))
        if argv and argv[0] == "train":
            argv = argv[1:]
        from training.train import TrainConfig, train

        config = parse_config(
            TrainConfig,
            argv,
            "python -m training",
            "Fine-tune a BERT-family text classifier (binary, multi-class, multi-label) "
            "and write runs/<run>/: model/ (the checkpoint), metrics.json, reports, plots, "
            "splits/. `python -m training mlm --help`: continued MLM pretraining.",
            EPILOG_TRAIN,
        )
        return _summary(train(config))
    except (DataError, RunDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


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
    return 0
