"""Triton core's rules for a configuration's tensors (model_config_utils.cc
ValidateModelIOConfig, ValidateIOShape, ValidateBatchIO), shared by models and ensembles."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import chain

from .checked_model import _Model
from .graph import INVALID
from .parsing import _dims
from .sources import CORE_UTILS
from .violation import Violation


def _io_shape_errors(io: Mapping, mbs: int, prefix: str) -> Iterator[str]:
    """ValidateIOShape: name, data_type, dims (>= 1 or -1) and a reshape of equal size."""
    if not io.get("name"):
        yield prefix + "must specify 'name'"
        return
    named = f"{prefix}'{io['name']}' "
    if io.get("data_type", INVALID) == INVALID:
        yield named + "must specify 'data_type'"
    dims = _dims(io)
    if not dims:
        yield named + "must specify 'dims'"
    reshape = io.get("reshape")
    if reshape is not None and not reshape.get("shape") and mbs == 0:
        yield named + (
            "cannot have empty reshape for non-batching model as scalar tensors are not supported"
        )
    if any(d < 1 and d != -1 for d in dims):
        yield named + "dimension must be integer >= 1, or -1 to indicate a variable-size dimension"
    if reshape is not None:
        yield from _reshape_errors(dims, [int(d) for d in reshape.get("shape") or []], named)


def _element_count(dims: list[int]) -> int:
    """triton::common::GetElementCount: -1 with a variable dimension, 0 for no dims."""
    if -1 in dims:
        return -1
    count = 0
    for index, dim in enumerate(dims):
        count = dim if index == 0 else count * dim
    return count


def _trunks(dims: list[int]) -> list[int]:
    counts, current = [], 1
    for dim in dims:
        if dim == -1:
            counts.append(current)
            current = 1
        else:
            current *= dim
    return [*counts, current]


def _reshape_errors(dims: list[int], shape: list[int], named: str) -> Iterator[str]:
    if any(d < 1 and d != -1 for d in shape):
        yield named + (
            "reshape dimensions must be integer >= 1, or -1 to indicate a variable-size dimension"
        )
        return
    dims_size, reshape_size = _element_count(dims), _element_count(shape)
    if dims_size != reshape_size and (reshape_size != 0 or dims_size != 1):
        yield named + "has different size for dims and reshape"
    elif dims_size == -1 and len(_trunks(dims)) != len(_trunks(shape)):
        yield named + "has different number of variable-size dimensions for dims and reshape"
    elif dims_size == -1 and _trunks(dims) != _trunks(shape):
        yield named + "has different size for dims and reshape"


def _tensor_kind_errors(io: Mapping, is_input: bool) -> Iterator[str]:
    """ValidateModelInput/Output beyond the shape: what only TensorRT models may use."""
    if is_input and io.get("format") in ("FORMAT_NHWC", "FORMAT_NCHW") and len(_dims(io)) != 3:
        yield "model input NHWC/NCHW require 3 dims"
    if io.get("is_shape_tensor"):
        yield "shape tensors are only supported for TensorRT platform"
    if io.get("is_non_linear_format_io"):
        yield "Non-linear IO format is only supported for the TensorRT platform"


def _io_config_violations(config: Mapping) -> Iterator[Violation]:
    """ValidateModelIOConfig → ValidateModelInput/ValidateModelOutput (+ " for <model>")."""
    name, mbs = config.get("name", ""), int(config.get("max_batch_size", 0) or 0)
    for ios, prefix, is_input in (
        (config.get("input") or [], "model input ", True),
        (config.get("output") or [], "model output ", False),
    ):
        function = "ValidateModelInput" if is_input else "ValidateModelOutput"
        for io in ios:
            for text in chain(_io_shape_errors(io, mbs, prefix), _tensor_kind_errors(io, is_input)):
                yield Violation("core.io", f"{text} for {name}", f"{CORE_UTILS} {function}")


def _core_io(m: _Model) -> Iterator[Violation]:
    yield from _io_config_violations(m.config)


BATCH_INPUT_KINDS = frozenset(
    {
        "BATCH_ELEMENT_COUNT",
        "BATCH_ACCUMULATED_ELEMENT_COUNT",
        "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO",
        "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE",
        "BATCH_ITEM_SHAPE",
        "BATCH_ITEM_SHAPE_FLATTEN",
    }
)


def _batch_input_errors(batch_input: Mapping, inputs: set[str]) -> Iterator[str]:
    kind = batch_input.get("kind", "BATCH_ELEMENT_COUNT")
    sources = list(batch_input.get("source_input") or [])
    if kind not in BATCH_INPUT_KINDS:
        yield f"unknown batch input kind '{kind}'"
    elif len(sources) != 1:
        yield f"batch input kind '{kind}' expects 1 source input, got {len(sources)}"
    if batch_input.get("data_type") not in ("TYPE_INT32", "TYPE_FP32"):
        yield "batch input data type must be TYPE_INT32 or TYPE_FP32"
    yield from (f"unknown source input name '{s}'" for s in sources if s not in inputs)


def _batch_output_errors(batch_output: Mapping, inputs: set[str], outputs: set[str]):
    kind = batch_output.get("kind", "BATCH_SCATTER_WITH_INPUT_SHAPE")
    sources = list(batch_output.get("source_input") or [])
    if kind != "BATCH_SCATTER_WITH_INPUT_SHAPE":
        yield f"unknown batch output kind '{kind}'"
    elif len(sources) != 1:
        yield f"batch output kind '{kind}' expects 1 source input, got {len(sources)}"
    yield from (f"unknown source input name '{s}'" for s in sources if s not in inputs)
    targets = list(batch_output.get("target_name") or [])
    yield from (f"unknown target output name '{t}'" for t in targets if t not in outputs)
    for target in {t for t in targets if targets.count(t) > 1}:
        yield f"target output name '{target}' can only be specified once"


def _core_batch_io(m: _Model) -> Iterator[Violation]:
    """ValidateBatchIO: batch_input/batch_output kinds, sources, targets, data types."""
    inputs = {io.get("name") for io in m.inputs}
    outputs = {io.get("name") for io in m.outputs}
    texts = chain(
        *(_batch_input_errors(b, inputs) for b in m.config.get("batch_input") or []),
        *(_batch_output_errors(b, inputs, outputs) for b in m.config.get("batch_output") or []),
    )
    for text in texts:
        yield Violation("core.batch-io", f"{text} for {m.name}", f"{CORE_UTILS} ValidateBatchIO")
