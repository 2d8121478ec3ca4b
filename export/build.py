"""Building the variants' graphs: the fp32 export, the fusion choice, the int8 tuning.

Every variant derives from one fp32 graph: the one `torch.onnx.export` wrote, or the
same with onnxruntime.transformers' fusions (`--optimize on`; `auto` measures and keeps
them only when faster). How each variant is built from it is its declaration's
(export/variants.py); int8 is tuned here to the CPU that exports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from berth_core.checkpoint import BerthConfig
from export import onnx_export
from export.config import ExportConfig
from export.evaluate import OnnxClassifier, interleaved_median_ms
from export.progress import say
from export.variants import BuildInputs, Graph, variant

if TYPE_CHECKING:
    from export.pipeline import ExportRun

# onnxruntime's session-level SkipLayerNormalization fusion: on the onnxruntime 1.32 CPU
# build its fused kernel took 2x the time of the LayerNormalization + Add it replaces
# (BENCHMARKS.md, "Where the time goes").
SLOW_FUSIONS = ("SkipLayerNormFusion",)


@dataclass(frozen=True)
class FusionChoice:
    """The fp32 graph the variants derive from, and (`--optimize auto`) why."""

    path: Path  # the chosen fp32 graph
    fused: bool
    fused_path: Path | None  # auto: the fused graph, kept or not
    mode: str  # --optimize: off, on, auto
    median_ms: dict[str, dict[str, float]] | None = None  # auto: by graph, by batch
    decision: str | None = None  # auto

    def summary(self) -> str:
        return self.decision or self.mode

    def record(self) -> dict:
        """As export_report.json's "fusion" has it."""
        return dataclasses.asdict(self, dict_factory=_recorded)


@dataclass(frozen=True)
class Int8Tuning:
    """How the int8 graph was chosen: the fp32 graph it was quantized from, the
    onnxruntime optimizers its CPU sessions skip and (`--optimize auto`) the batch-32
    timings of every candidate. The default: no int8 was built."""

    source: str | None = None  # "fused" or "unfused"
    disabled_optimizers: tuple[str, ...] = ()
    threads: int | None = None
    batch_32_median_ms: dict[str, float] | None = None
    decision: str | None = None

    def summary(self) -> str:
        return self.decision or str(self.source)

    def record(self) -> dict:
        """As export_report.json's "int8_graph" has it."""
        return dataclasses.asdict(self, dict_factory=_recorded)


def _recorded(fields: list[tuple[str, object]]) -> dict:
    """`asdict` for the report: what was not measured (None) left out, paths as text,
    tuples as the lists JSON reads back."""
    return {key: _plain(value) for key, value in fields if value is not None}


def _plain(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Graphs:
    """What building produced: the raw fp32 export, the fusion choice, each variant."""

    raw: Path
    fusion: FusionChoice
    variants: dict[str, Graph]

    @property
    def int8(self) -> Int8Tuning:
        graph = self.variants.get("int8")
        return graph.tuning if graph is not None and graph.tuning else Int8Tuning()


def build_graphs(run: ExportRun) -> Graphs:
    """Export fp32, choose the fusions, build every variant asked for."""
    cfg, berth = run.cfg, run.checkpoint_berth
    raw = onnx_export.export_fp32(cfg.checkpoint, run.work / "model.raw.onnx", berth, cfg.opset)
    fusion = choose_fusion(cfg, berth, raw, run.work, run.eval_texts)
    say(f"fusions: {fusion.summary()}")
    inputs = BuildInputs(cfg, berth, raw, fusion, run.eval_texts)
    return Graphs(raw, fusion, build_variants(inputs, cfg.variant_list, run.work))


def build_variants(inputs: BuildInputs, names: Sequence[str], work: Path) -> dict[str, Graph]:
    """{variant: its graph}, each built as its declaration says, into `work`. Every name
    is looked up before anything is built: an unknown one is refused, not guessed."""
    declared = [variant(name) for name in names]
    graphs: dict[str, Graph] = {}
    for spec in declared:
        graph = spec.build(inputs, work / f"model.{spec.name}.onnx")
        if graph.tuning is not None:
            say(f"{spec.name}: {graph.tuning.summary()}")
        graphs[spec.name] = graph
    return graphs


def choose_fusion(
    cfg: ExportConfig, berth: BerthConfig, raw: Path, work: Path, eval_texts: list[str]
) -> FusionChoice:
    """`--optimize`: off keeps the raw graph, on the fused one; auto times both in turns
    and keeps the fusions only when >=5% faster at batch 32."""
    if cfg.optimize == "off":
        return FusionChoice(raw, fused=False, fused_path=None, mode="off")
    fused_path = onnx_export.fuse(cfg.checkpoint, raw, work / "model.fused.onnx")
    if cfg.optimize == "on":
        return FusionChoice(fused_path, fused=True, fused_path=None, mode="on")
    runners = {
        label: OnnxClassifier(path, cfg.checkpoint, threads=cfg.threads, berth=berth)
        for label, path in (("unfused", raw), ("fused", fused_path))
    }
    by_batch = {
        bs: interleaved_median_ms(runners, eval_texts, bs, cfg.latency_runs) for bs in (1, 32)
    }
    measured = {label: {f"batch_{bs}": by_batch[bs][label] for bs in by_batch} for label in runners}
    keep = measured["fused"]["batch_32"] < 0.95 * measured["unfused"]["batch_32"]
    return FusionChoice(
        fused_path if keep else raw,
        fused=keep,
        fused_path=fused_path,
        mode="auto",
        median_ms=measured,
        decision="kept the fusions (>=5% faster at batch 32)"
        if keep
        else "dropped the fusions (not >=5% faster at batch 32 than onnxruntime's own "
        "session-level optimizations)",
    )


def tune_int8(inputs: BuildInputs, target: Path) -> Int8Tuning:
    """Quantize, and with `--optimize auto` pick the int8 graph the CPU classifier runs
    fastest at its serving thread count: quantized from the fused or the unfused graph,
    with or without onnxruntime's SkipLayerNorm fusion, timed in turns at batch 32. A
    candidate replaces the plain one (unfused, every session optimizer) only when faster
    by a margin: >=5% for the other graph (its int8 weights differ, and so does its
    accuracy), >=2% for a disabled session fusion (the same arithmetic; a smaller margin
    keeps a real but modest gain from flipping between exports on noise)."""
    cfg, fusion = inputs.cfg, inputs.fusion
    if cfg.optimize != "auto" or fusion.fused_path is None:
        onnx_export.to_int8(fusion.path, target, fused=fusion.fused)
        return Int8Tuning(source="fused" if fusion.fused else "unfused")
    graphs = {"unfused": _work_file(target, "unfused"), "fused": _work_file(target, "fused")}
    onnx_export.to_int8(inputs.raw, graphs["unfused"], fused=False)
    onnx_export.to_int8(fusion.fused_path, graphs["fused"], fused=True)
    candidates = [("unfused", ()), ("fused", ()), ("unfused", SLOW_FUSIONS)]
    threads = cfg.serving.intra_op_threads
    runners = {
        _key((source, disabled)): OnnxClassifier(
            graphs[source],
            cfg.checkpoint,
            threads=threads,
            disabled_optimizers=disabled,
            berth=inputs.berth,
        )
        for source, disabled in candidates
    }
    median_ms = interleaved_median_ms(runners, inputs.eval_texts, 32, cfg.latency_runs)
    del runners
    best = choose_int8(candidates, median_ms)
    baseline = median_ms[_key(candidates[0])]
    source, disabled = best
    graphs[source].replace(target)
    for path in graphs.values():
        path.unlink(missing_ok=True)
    return Int8Tuning(
        source=source,
        disabled_optimizers=tuple(disabled),
        threads=threads,
        batch_32_median_ms=median_ms,
        decision=f"int8 from the {source} graph"
        + (f", without {', '.join(disabled)}" if disabled else "")
        + f" ({median_ms[_key(best)]:.1f} ms vs {baseline:.1f} ms at batch 32, "
        f"{threads} thread(s))",
    )


def choose_int8(
    candidates: list[tuple[str, tuple[str, ...]]], median_ms: dict[str, float]
) -> tuple[str, tuple[str, ...]]:
    """The fastest candidate that beats the first (the baseline) by its margin: 5% for
    another graph, 2% for the baseline's graph with session fusions disabled."""
    baseline = median_ms[_key(candidates[0])]

    def wins(candidate: tuple[str, tuple[str, ...]]) -> bool:
        margin = 0.98 if candidate[0] == candidates[0][0] else 0.95
        return candidate == candidates[0] or median_ms[_key(candidate)] < margin * baseline

    return min(filter(wins, candidates), key=lambda c: median_ms[_key(c)])


def _key(candidate: tuple[str, tuple[str, ...]]) -> str:
    source, disabled = candidate
    return source + "".join(f" -{name}" for name in disabled)


def _work_file(target: Path, tag: str) -> Path:
    return target.with_name(f"{target.stem}.{tag}{target.suffix}")
