"""Crafted export records (a run, graphs, scores) for testing the gates, the report and
publishing without building or timing a real graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from berth_core.checkpoint import BerthConfig
from export.build import FusionChoice, Graphs, Int8Tuning
from export.config import ExportConfig
from export.evaluate import Latency, Parity, Scores
from export.pipeline import ExportRun
from export.score import VariantScore
from export.variants import Graph

LABELS = ["negative", "positive"]


def score(
    variant: str, primary: float, logit_diff: float = 0.0, argmax: float = 1.0
) -> VariantScore:
    """A variant's measurements: `primary` is its accuracy (%), `logit_diff` and
    `argmax` its parity with the PyTorch reference."""
    return VariantScore(
        variant=variant,
        file=Path(f"model.{variant}.onnx"),
        size_mb=1.0,
        parity=Parity(
            texts=8,
            max_abs_logit_diff=logit_diff,
            max_abs_prob_diff=0.0,
            argmax_agreement=argmax,
        ),
        scores=Scores({"accuracy": primary, "macro_f1": primary}, "accuracy"),
        scoring_s=0.1,
        latency=(Latency(1, 1.0, 1.0, 1000.0), Latency(32, 10.0, 12.0, 3200.0)),
    )


def run(tmp: Path, berth: BerthConfig | None = None, cfg: ExportConfig | None = None):
    """An ExportRun over a checkpoint folder holding only what publishing copies (a
    tokenizer.json), with a fake held-out row."""
    checkpoint = tmp / "checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    tokenizer(checkpoint / "tokenizer.json")
    berth = berth or BerthConfig(labels=LABELS)
    cfg = cfg or ExportConfig(
        checkpoint=checkpoint,
        model_repository=tmp / "repo",
        output_dir=tmp / "export",
        variants="fp32,int8",
        default_variant="int8",
        gpu_variant="fp32",
    )
    out = cfg.resolved_output_dir
    work = out / "onnx"
    work.mkdir(parents=True, exist_ok=True)
    return ExportRun(
        cfg, berth, berth, out, work, tmp / "test.jsonl", ["a text"], np.array([0]), ["a text"]
    )


def tokenizer(path: Path) -> Path:
    """A real tokenizer.json of two tokens (publishing reads its pad id)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    Tokenizer(WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(path))
    return path


def tiny_graph(path: Path, name: str) -> Path:
    """A real, tiny classifier graph (input_ids, attention_mask → logits,
    probabilities) named `name`: publishing puts the flat front end before it."""
    ids, mask = (
        helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"])
        for n in ("input_ids", "attention_mask")
    )
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", 2])
        for n in ("logits", "probabilities")
    ]
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["m"]),
        helper.make_node("Cast", ["m"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f", "axes"], ["s"], keepdims=1),
        helper.make_node("Concat", ["s", "s"], ["logits"], axis=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(nodes, name, [ids, mask], outputs, initializer=[axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def graphs(export_run: ExportRun, disabled_optimizers: tuple[str, ...] = ()) -> Graphs:
    """A tiny graph file per variant of the run; int8 as tuned with
    `disabled_optimizers` skipped."""
    raw = tiny_graph(export_run.work / "model.raw.onnx", "raw graph")
    built = {}
    for name in export_run.cfg.variant_list:
        path = tiny_graph(export_run.work / f"model.{name}.onnx", f"{name} graph")
        tuning = Int8Tuning("unfused", disabled_optimizers) if name == "int8" else None
        built[name] = Graph(path, tuning)
    return Graphs(raw, FusionChoice(raw, fused=False, fused_path=None, mode="off"), built)
