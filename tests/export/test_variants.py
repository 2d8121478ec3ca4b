"""The variant registry: one declaration per variant, read by the flags, the build and
the Triton configs; an unknown name is refused, never built as something else."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from berth_core.checkpoint import BerthConfig
from berth_core.errors import InputError
from export.__main__ import main as export_main
from export.build import FusionChoice, build_variants
from export.config import ExportConfig, build_parser, parse_args
from export.errors import ExportInputError
from export.triton_config import repository_configs
from export.variants import (
    VARIANTS,
    BuildInputs,
    Gate,
    Graph,
    Variant,
    default_variants,
    variant,
)

BERTH = BerthConfig(labels=["a", "b"])


def inputs(cfg: ExportConfig, tmp_path) -> BuildInputs:
    raw = tmp_path / "model.raw.onnx"
    raw.write_text("raw")
    return BuildInputs(cfg, BERTH, raw, FusionChoice(raw, False, None, "off"), [])


def fake_build(inputs: BuildInputs, target) -> Graph:
    target.write_text(f"fp8 from {inputs.fusion.path.name}")
    return Graph(target)


# A GPU-only scheme: no CPU form, TensorRT in its own precision, not built by default.
FP8 = Variant("fp8", fake_build, Gate.ACCURACY, cpu=False, gpu=True, trt_precision="FP8")


def test_the_declarations():
    assert list(VARIANTS) == ["fp32", "fp16", "int8"]
    assert [v.gate for v in VARIANTS.values()] == [Gate.PARITY, Gate.ACCURACY, Gate.ACCURACY]
    assert [v.name for v in VARIANTS.values() if not v.gpu] == ["int8"]  # CPU kernels only
    assert all(v.cpu for v in VARIANTS.values())
    assert default_variants() == "fp32,fp16,int8"
    with pytest.raises(ValueError, match="neither"):
        Variant("x", fake_build, Gate.ACCURACY, cpu=False, gpu=False)


def test_an_unknown_variant_is_refused_and_named(tmp_path, capsys):
    with pytest.raises(ExportInputError, match=r"unknown variant 'bf16': one of fp32, fp16, int8"):
        variant("bf16")
    with pytest.raises(InputError, match=r"--variants fp32,bf16: unknown variant 'bf16'"):
        ExportConfig(checkpoint=tmp_path, variants="fp32,bf16", default_variant="fp32")
    assert export_main(["--checkpoint", str(tmp_path), "--variants", "fp32,bf16"]) == 2
    assert "unknown variant 'bf16'" in capsys.readouterr().err


def test_an_unknown_variant_is_not_built_as_int8(tmp_path):
    """The build looks every name up before building anything: a name that got past the
    flag checks is refused, not quantized."""
    cfg = ExportConfig(checkpoint=tmp_path, variants="fp32,int8", gpu_variant="fp32")
    with pytest.raises(ExportInputError, match="bf16"):
        build_variants(inputs(cfg, tmp_path), ["fp32", "bf16"], tmp_path)
    assert not list(tmp_path.glob("model.fp32.onnx"))  # nothing was built


def test_a_registered_variant_reaches_the_flags_the_build_and_the_configs(tmp_path, monkeypatch):
    monkeypatch.setitem(VARIANTS, "fp8", FP8)
    argv = ["--checkpoint", str(tmp_path), "--variants", "fp32,fp8", "--default-variant", "fp32"]
    cfg = parse_args([*argv, "--gpu-variant", "fp8"])
    assert cfg.variant_list == ["fp32", "fp8"]
    assert "fp32/fp16/int8/fp8" in build_parser().description
    with pytest.raises(ExportInputError, match="'fp8' cannot serve on CPU"):
        ExportConfig(
            checkpoint=tmp_path, variants="fp32,fp8", default_variant="fp8", gpu_variant="fp8"
        )

    graphs = build_variants(inputs(cfg, tmp_path), cfg.variant_list, tmp_path)
    assert graphs["fp8"].path.read_text() == "fp8 from model.raw.onnx"
    assert graphs["fp32"].path.read_text() == "raw"

    configs = repository_configs("t", BERTH, cfg.variant_list, "fp32", "fp8")
    gpu = configs["t_onnx_fp8/configs/gpu.pbtxt"]
    assert [g.kind for g in gpu.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    (trt,) = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.parameters["precision_mode"] == "FP8"
    assert configs["t_onnx_fp8/config.pbtxt"] == gpu  # no CPU form
    steps = configs["t/configs/gpu.pbtxt"].ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["t_tokenizer", "t_onnx_fp8"]
    # fp32 declares no precision of its own: the serving settings' (FP16 by default)
    (fp32_trt,) = configs[
        "t_onnx_fp32/configs/gpu.pbtxt"
    ].optimization.execution_accelerators.gpu_execution_accelerator
    assert fp32_trt.parameters["precision_mode"] == "FP16"
    with pytest.raises(ValueError, match="cannot serve on CPU"):
        repository_configs("t", BERTH, cfg.variant_list, "fp8", "fp8")


def test_the_variants_help_lists_every_declaration():
    text = " ".join(build_parser().format_help().split())
    assert "fp32 (the reference; CPU, GPU), fp16 (CPU, GPU), int8 (CPU only)" in text
    assert f"(default: {default_variants()})" in text
