"""The ONNX variants export can build, one declaration each.

A variant is declared once, here: how its graph is built, which gate it must pass,
where it may serve (CPU instances, the GPU through TensorRT) and TensorRT's precision
for it. The `--variants` flag, the configuration checks, building, scoring, gating and
the Triton configs all read `VARIANTS`; adding a scheme is one more entry.

This module imports neither torch nor onnxruntime (the build functions import what
they run when they run), so that `export.triton_config`, and the packages that read
configs through it, can use the registry cheaply.
"""

from __future__ import annotations

import enum
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from export.errors import ExportInputError

if TYPE_CHECKING:
    from berth_core.checkpoint import BerthConfig
    from export.build import FusionChoice, Int8Tuning
    from export.config import ExportConfig


class Gate(enum.Enum):
    """What a variant must show on the held-out split before it is published."""

    # The reference: max |Δlogit| against the PyTorch predictor <= --parity-tolerance and
    # every argmax the same. Failing it refuses the whole export (nothing else can be
    # scored against a broken reference).
    PARITY = "parity"
    # At most --max-accuracy-drop points of the primary metric (accuracy; multi-label:
    # micro F1) below the reference. Refusing one refuses the export unless
    # --skip-refused and it is neither the CPU nor the GPU ensemble's variant.
    ACCURACY = "accuracy"


@dataclass(frozen=True)
class BuildInputs:
    """What building a variant's graph may use: the fp32 graph as exported (`raw`), the
    fusion choice (`fusion.path`: the fp32 graph every variant derives from by
    default), the held-out texts the int8 tuning times its candidates on."""

    cfg: ExportConfig
    berth: BerthConfig  # the checkpoint's berth.json
    raw: Path
    fusion: FusionChoice
    eval_texts: list[str]


@dataclass(frozen=True)
class Graph:
    """A built variant: its graph file and, when it was tuned (int8), how."""

    path: Path
    tuning: Int8Tuning | None = None

    @property
    def disabled_optimizers(self) -> tuple[str, ...]:
        """onnxruntime optimizers its sessions skip (scoring, and session.json)."""
        return self.tuning.disabled_optimizers if self.tuning else ()


@dataclass(frozen=True)
class Variant:
    """One variant, everything the export and the configs need to know of it."""

    name: str
    # (inputs, target file) → the built graph, written at target
    build: Callable[[BuildInputs, Path], Graph]
    gate: Gate
    # may serve on CPU instances: render a CPU config, be --default-variant
    cpu: bool
    # GPU-capable: configs/gpu.pbtxt runs it on KIND_GPU through TensorRT; otherwise that
    # config keeps it on CPU instances
    gpu: bool
    # TensorRT's precision_mode in the GPU config; None: ServingSettings.trt_precision
    trt_precision: str | None = None
    # built when --variants is not given
    default: bool = True

    def __post_init__(self) -> None:
        if not (self.cpu or self.gpu):
            raise ValueError(f"variant {self.name!r} serves neither on CPU nor on GPU")

    def where(self) -> str:
        """`name (where it serves)`, for the --variants help."""
        places = {(True, True): "CPU, GPU", (True, False): "CPU only", (False, True): "GPU only"}
        reference = "the reference; " if self.gate is Gate.PARITY else ""
        return f"{self.name} ({reference}{places[self.cpu, self.gpu]})"


def _copy(inputs: BuildInputs, target: Path) -> Graph:
    """fp32: the chosen fp32 graph itself (fused or not)."""
    shutil.copy2(inputs.fusion.path, target)
    return Graph(target)


def _to_fp16(inputs: BuildInputs, target: Path) -> Graph:
    """fp16 weights and compute, fp32 inputs and outputs."""
    from export import onnx_export

    return Graph(onnx_export.to_fp16(inputs.fusion.path, target))


def _to_int8(inputs: BuildInputs, target: Path) -> Graph:
    """Dynamic int8, the graph and session optimizers the CPU runs fastest
    (`--optimize auto`)."""
    from export.build import tune_int8

    return Graph(target, tune_int8(inputs, target))


# The variant every other one is scored against; --variants must include it.
REFERENCE = "fp32"

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        # TensorRT: ServingSettings.trt_precision (FP16 unless set: fp16 kernels allowed)
        Variant("fp32", _copy, Gate.PARITY, cpu=True, gpu=True),
        Variant("fp16", _to_fp16, Gate.ACCURACY, cpu=True, gpu=True, trt_precision="FP16"),
        # Dynamic int8 (MatMulInteger / DynamicQuantizeLinear) are CPU kernels in
        # onnxruntime; TensorRT cannot build them, so the GPU config keeps it on the CPU.
        Variant("int8", _to_int8, Gate.ACCURACY, cpu=True, gpu=False),
    )
}


def variant(name: str) -> Variant:
    """The declaration of `name`; an unknown name is the user's error, never a guess."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ExportInputError(f"unknown variant {name!r}: one of {', '.join(VARIANTS)}") from None


def default_variants() -> str:
    """--variants' default: every variant declared `default`, comma-separated."""
    return ",".join(name for name, v in VARIANTS.items() if v.default)


def variants_help() -> str:
    return "comma-separated variants to build: " + ", ".join(v.where() for v in VARIANTS.values())
