"""The onnxruntime backend's rules for what it parses from the configuration
(onnxruntime.cc ModelState::ModelState, ModelState::LoadModel): model parameters and
execution accelerators."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .checked_model import _Model
from .parsing import _parameter, parse_bool, parse_int, parse_unsigned
from .sources import ORT
from .violation import Violation

# server build.py (r24.10): the x86-64 GPU container builds the backend with
# TRITON_ENABLE_ONNXRUNTIME_TENSORRT and TRITON_ENABLE_ONNXRUNTIME_OPENVINO, so
# ModelState::LoadModel knows "tensorrt" (kTensorRTExecutionAccelerator) and "cuda" for GPU
# instances, "openvino" (kOpenVINOExecutionAccelerator) for CPU ones, nothing else.
GPU_ACCELERATORS = ("tensorrt", "cuda")
CPU_ACCELERATORS = ("openvino",)


# parameter → (parser, allowed values or None, message for a value not allowed, function)
_Parser = Callable[[str], tuple[Any, "str | None"]]
_EXECUTION_MODE = (
    "Invalid configuration value provided. Expected values for  execution_mode are 0 or 1 "
    "but got {} ."
)
MODEL_PARAMETERS: dict[str, tuple[_Parser, range | None, str]] = {
    "execution_mode": (parse_int, range(2), _EXECUTION_MODE),
    "intra_op_thread_count": (parse_int, None, ""),
    "inter_op_thread_count": (parse_int, None, ""),
    "enable_mem_arena": (parse_bool, None, ""),
    "enable_mem_pattern": (parse_bool, None, ""),
}
# read by ModelState::LoadModel for GPU instances only
GPU_PARAMETERS: dict[str, tuple[_Parser, range | None, str]] = {
    "cudnn_conv_algo_search": (
        parse_int,
        range(3),
        "unsupported cudnn_conv_algo_search value '{}' is requested",
    ),
    "arena_extend_strategy": (
        parse_int,
        range(2),
        "unsupported arena_extend_strategy value '{}' is requested",
    ),
}


def _ort_parameters(m: _Model) -> Iterator[Violation]:
    """ModelState::ModelState (TryParseModelStringParameter, ParseBoolValue) and, for GPU
    instances, ModelState::LoadModel: the parameters the backend reads must parse."""
    tables = [(MODEL_PARAMETERS, "ModelState::ModelState")]
    if "KIND_GPU" in m.instance_kinds():
        tables.append((GPU_PARAMETERS, "ModelState::LoadModel"))
    for table, function in tables:
        for key in (k for k in m.parameters if k in table):
            parser, allowed, wording = table[key]
            value, error = parser(_parameter(m.parameters, key))
            if error is None and allowed is not None and value not in allowed:
                error = wording.format(value)
            if error is not None:
                yield Violation(
                    "ort.parameter", f"{error} (parameter '{key}')", f"{ORT} {function}"
                )


# ModelState::LoadModel's TensorRT accelerator parameters, by how it parses their values
# fmt: off
TENSORRT_STRINGS = frozenset((
    "int8_calibration_table_name", "trt_engine_cache_path", "trt_engine_cache_prefix",
    "trt_timing_cache_path", "trt_tactic_sources", "trt_extra_plugin_lib_paths",
    "trt_profile_min_shapes", "trt_profile_max_shapes", "trt_profile_opt_shapes",
    "trt_ep_context_file_path",
))
TENSORRT_BOOLS = frozenset((
    "int8_use_native_calibration_table", "trt_dla_enable", "trt_engine_cache_enable",
    "trt_dump_subgraphs", "trt_force_sequential_engine_build",
    "trt_context_memory_sharing_enable", "trt_layer_norm_fp32_fallback",
    "trt_timing_cache_enable", "trt_force_timing_cache", "trt_detailed_build_log",
    "trt_build_heuristics_enable", "trt_sparsity_enable", "trt_cuda_graph_enable",
    "trt_dump_ep_context_model",
))
TENSORRT_INTS = frozenset((
    "trt_max_partition_iterations", "trt_min_subgraph_size", "trt_dla_core",
    "trt_builder_optimization_level", "trt_auxiliary_streams", "trt_ep_context_embed_mode",
))
# fmt: on


def _tensorrt_error(key: str, value: str) -> str | None:
    """One TensorRT accelerator parameter as ModelState::LoadModel validates it."""
    if key == "precision_mode":
        ok = value in ("FP16", "INT8", "FP32")
        return None if ok else f"unsupported precision mode '{value}' is requested"
    if key == "max_workspace_size_bytes":
        return parse_unsigned(value)[1]
    if key in TENSORRT_INTS:
        return parse_int(value)[1]
    if key in TENSORRT_BOOLS:
        return parse_bool(value)[1]
    if key in TENSORRT_STRINGS:
        return None
    return f"unknown parameter '{key}' is provided for TensorRT Execution Accelerator"


def _accelerator_errors(accelerator: Mapping, known: tuple[str, ...]) -> Iterator[str]:
    name, params = accelerator.get("name", ""), accelerator.get("parameters") or {}
    if name not in known:
        yield f"unknown Execution Accelerator '{name}' is requested"
    elif name == "tensorrt":
        errors = (_tensorrt_error(k, str(v)) for k, v in params.items())
        yield from (e for e in errors if e is not None)
    elif name == "cuda":
        bools = ("do_copy_in_default_stream", "use_ep_level_unified_stream")
        errors = (parse_bool(str(v))[1] for k, v in params.items() if k in bools)
        yield from (e for e in errors if e is not None)


def _ort_accelerators(m: _Model) -> Iterator[Violation]:
    """ModelState::LoadModel: CPU accelerators for every instance, GPU ones for GPU
    instances only (a CPU instance never reads them); an unknown name is refused."""
    accelerators = (m.config.get("optimization") or {}).get("execution_accelerators") or {}
    lists = [(accelerators.get("cpu_execution_accelerator") or [], CPU_ACCELERATORS)]
    if "KIND_GPU" in m.instance_kinds():
        lists.append((accelerators.get("gpu_execution_accelerator") or [], GPU_ACCELERATORS))
    for entries, known in lists:
        for accelerator in entries:
            for text in _accelerator_errors(accelerator, known):
                yield Violation("ort.accelerator", text, f"{ORT} ModelState::LoadModel")
