"""The onnxruntime backend's rules (onnxruntime.cc, onnxruntime_utils.cc): autocomplete,
the configuration's tensors against the graph (input count, data types, dims, ragged
inputs, sequence controls), the model file; and `check_onnxruntime_model`, which runs
core's per-model rules and these."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import chain
from pathlib import Path

from .checked_model import _Model
from .core_rules import CORE_MODEL_RULES, sequence_controls
from .graph import INVALID, SUPPORTED_DATA_TYPES, TENSOR, GraphIO, TensorInfo
from .onnxruntime_options import _ort_accelerators, _ort_parameters
from .parsing import _io_dims, _shape
from .sources import BACKEND_COMMON, ORT, ORT_UTILS
from .violation import Violation

DEFAULT_MAX_BATCH_SIZE = 4  # core src/backend_model.cc backend_config_defaults


def autocomplete(
    config: Mapping, graph: GraphIO, default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
) -> tuple[dict, list[Violation]]:
    """ModelState::AutoCompleteConfig: a configuration without inputs or without outputs
    is completed from the graph (the server's default: auto-complete on), its
    max_batch_size too; one that declares both is left as it is."""
    config = dict(config)
    declared = len(config.get("input") or []) + len(config.get("batch_input") or [])
    if declared and config.get("output"):
        return config, []
    infos = [*graph.inputs.values(), *graph.outputs.values()]
    batching = all(info.dims and info.dims[0] == -1 for info in infos)
    mbs = int(config.get("max_batch_size", 0) or 0)
    if not batching and mbs != 0:
        text = (
            f"autofill failed for model '{config.get('name', '')}': model does not support "
            "batching while non-zero max_batch_size is specified"
        )
        return config, [Violation("ort.autocomplete", text, f"{ORT} AutoCompleteMaxBatch")]
    if batching and mbs == 0:
        mbs = config["max_batch_size"] = max(default_max_batch_size, 0)
    if mbs > 1 and not {"sequence_batching", "dynamic_batching"} & set(config):
        config["dynamic_batching"] = {}
    if not declared:
        config["input"] = _autocomplete_io(graph.inputs, mbs)
    if not config.get("output"):
        config["output"] = _autocomplete_io(graph.outputs, mbs)
    return config, []


def _autocomplete_io(infos: Mapping[str, TensorInfo], mbs: int) -> list[dict]:
    """ModelState::AutoCompleteIO: the batch dimension dropped, a scalar as [1]."""
    ios = []
    for name in sorted(infos):
        dims = list(infos[name].dims[1:] if mbs > 0 else infos[name].dims)
        io = {"name": name, "data_type": infos[name].data_type, "dims": dims or [1]}
        if not dims and mbs > 0:
            io["reshape"] = {"shape": []}
        ios.append(io)
    return ios


def _ort_tensor_types(m: _Model) -> Iterator[Violation]:
    """InputOutputInitializerInfos: every graph input, output and overridable initializer
    must be a tensor (no sequences, maps, …)."""
    source = f"{ORT_UTILS} InputOutputInitializerInfos"
    graph = m.graph
    for name, info in chain(
        graph.inputs.items(), graph.outputs.items(), graph.initializers.items()
    ):
        if info.onnx_type != TENSOR:
            text = (
                f"Unsupported ONNX Type '{info.onnx_type}' for I/O '{name}', expected '{TENSOR}'."
            )
            yield Violation("ort.onnx-type", text, source)


def _ort_input_count(m: _Model) -> Iterator[Violation]:
    """ModelInstanceState::ModelInstanceState + ValidateInputs: the graph's inputs (not
    its overridable initializers) are exactly the configuration's non-optional inputs,
    batch inputs, sequence controls and sequence states, counted."""
    controls, _ = sequence_controls(m.config)
    states = (m.config.get("sequence_batching") or {}).get("state") or []
    expected = (
        sum(not io.get("optional") for io in m.inputs)
        + len(m.config.get("batch_input") or [])
        + len(controls)
        + len(states)
    )
    if len(m.graph.inputs) != expected:
        declared = {io.get("name") for io in m.inputs}
        declared |= {
            t for b in m.config.get("batch_input") or [] for t in b.get("target_name") or []
        }
        declared |= {tensor for tensor, _ in controls.values()}
        declared |= {state.get("input_name") for state in states}
        undeclared = sorted(set(m.graph.inputs) - declared)
        text = (
            f"unable to load model '{m.name}', configuration expects {expected} inputs, model "
            f"provides {len(m.graph.inputs)}"
            + (f" (graph inputs not declared: {', '.join(undeclared)})" if undeclared else "")
        )
        yield Violation("ort.input-count", text, f"{ORT} ModelInstanceState::ValidateInputs")


def _datatype(m: _Model, io: Mapping, info: TensorInfo, kind: str, function: str):
    """The configuration's data type: one the backend maps, and the graph's."""
    name, data_type = io.get("name", ""), io.get("data_type", INVALID)
    if data_type == INVALID:
        return  # core refuses it first ("must specify 'data_type'")
    if data_type not in SUPPORTED_DATA_TYPES:
        text = f"unsupported datatype {data_type} for {kind} '{name}' for model '{m.name}'"
        yield Violation("ort.unsupported-datatype", text, f"{ORT} {function}")
    elif data_type != info.data_type:
        text = (
            f"unable to load model '{m.name}', configuration expects datatype {data_type} for "
            f"{kind} '{name}', model provides {info.provided}"
        )
        yield Violation("ort.datatype", text, f"{ORT} {function}")


def _dims_match(model_shape: tuple[int, ...], dims: list[int], exact: bool) -> bool:
    return len(model_shape) == len(dims) and all(
        md == d for md, d in zip(model_shape, dims, strict=True) if exact or md != -1
    )


def _dims_violations(m: _Model, name: str, model_shape, dims: list[int], exact: bool):
    """CompareDimsSupported (onnxruntime_utils.cc), or a scalar's all-1 dims
    (ValidateInputs/ValidateOutputs). Inputs compare loosely (a -1 in the graph takes any
    dim), outputs exactly (compare_exact)."""
    source = f"{ORT_UTILS} CompareDimsSupported"
    if not model_shape:
        if any(d != 1 for d in dims):
            text = (
                f"unable to load model '{m.name}', scalar tensor '{name}', should only provide 1 "
                "in the model configuration when the model doesn't support batching. Model "
                f"configuration provided: {_shape(dims)}."
            )
            function = "ValidateOutputs" if exact else "ValidateInputs"
            yield Violation("ort.dims", text, f"{ORT} ModelInstanceState::{function}")
    elif m.mbs > 0 and model_shape[0] != -1:
        text = (
            f"model '{m.name}', tensor '{name}': for the model to support batching the shape "
            "should have at least 1 dimension and the first dimension must be -1; but shape "
            f"expected by the model is {_shape(model_shape)}"
        )
        yield Violation("ort.batch-dim", text, source)
    elif m.mbs > 0 and not _dims_match(model_shape, [-1, *dims], exact):
        text = (
            f"model '{m.name}', tensor '{name}': the model expects {len(model_shape)} dimensions "
            f"(shape {_shape(model_shape)}) but the model configuration specifies "
            f"{len(dims) + 1} dimensions (an initial batch dimension because max_batch_size > 0 "
            "followed by the explicit tensor shape, making complete shape "
            f"{_shape([-1, *dims])})"
        )
        yield Violation("ort.dims", text, source)
    elif m.mbs <= 0 and not _dims_match(model_shape, dims, exact):
        text = (
            f"model '{m.name}', tensor '{name}': the model expects {len(model_shape)} dimensions "
            f"(shape {_shape(model_shape)}) but the model configuration specifies {len(dims)} "
            f"dimensions (shape {_shape(dims)})"
        )
        yield Violation("ort.dims", text, source)


def _ragged_violations(m: _Model, io: Mapping, info: TensorInfo) -> Iterator[Violation]:
    """ValidateInputs: a ragged input is fed flattened, so the graph input must be [-1];
    never an optional one."""
    name, source = io.get("name", ""), f"{ORT} ModelInstanceState::ValidateInputs"
    if io.get("optional"):
        text = (
            f"unable to load model '{m.name}', configuration expects model provides input with "
            f"shape [-1] for ragged input '{name}', which is not supported for optional input"
        )
        yield Violation("ort.ragged-batch", text, source)
    if info.dims != (-1,):
        text = (
            f"unable to load model '{m.name}', configuration expects model provides input with "
            f"shape [-1]  for ragged input '{name}', model provides {_shape(info.dims)}"
        )
        yield Violation("ort.ragged-batch", text, source)


def _input_violations(m: _Model, io: Mapping) -> Iterator[Violation]:
    name, source = io.get("name", ""), f"{ORT} ModelInstanceState::ValidateInputs"
    if io.get("optional") and m.mbs != 0:
        text = (
            f"unable to load model '{m.name}', optional input '{name}' is not supported for "
            "models that support batching"
        )
        yield Violation("ort.optional-input", text, source)
    infos = {**m.graph.inputs, **m.graph.initializers}
    info = infos.get(name)
    if info is None:
        text = (
            f"unexpected inference input '{name}', allowed inputs are: {', '.join(sorted(infos))}"
        )
        yield Violation("ort.unknown-input", text, f"{BACKEND_COMMON} CheckAllowedModelInput")
        return
    if info.onnx_type != TENSOR:
        return  # refused by _ort_tensor_types
    yield from _datatype(m, io, info, "input", "ModelInstanceState::ValidateInputs")
    if io.get("allow_ragged_batch"):
        yield from _ragged_violations(m, io, info)
    else:
        yield from _dims_violations(m, name, info.dims, _io_dims(io), exact=False)


def _ort_inputs(m: _Model) -> Iterator[Violation]:
    """ModelInstanceState::ValidateInputs, one configuration input at a time."""
    for io in m.inputs:
        yield from _input_violations(m, io)


def _ort_outputs(m: _Model) -> Iterator[Violation]:
    """ModelInstanceState::ValidateOutputs: each output a graph output, of its type, of
    exactly its dims (batch outputs' dims are not compared)."""
    targets = {t for b in m.config.get("batch_output") or [] for t in b.get("target_name") or []}
    for io in m.outputs:
        name = io.get("name", "")
        info = m.graph.outputs.get(name)
        if info is None:
            allowed = ", ".join(sorted(m.graph.outputs))
            text = f"unexpected inference output '{name}', allowed outputs are: {allowed}"
            yield Violation("ort.unknown-output", text, f"{BACKEND_COMMON} CheckAllowedModelOutput")
            continue
        if info.onnx_type != TENSOR:
            continue
        yield from _datatype(m, io, info, "output", "ModelInstanceState::ValidateOutputs")
        if name not in targets:
            yield from _dims_violations(m, name, info.dims, _io_dims(io), exact=True)


def _ort_sequence_controls(m: _Model) -> Iterator[Violation]:
    """ValidateBooleanSequenceControl/ValidateTypedSequenceControl: each control tensor a
    graph input of (unbatched) dims [1] and of the control's data type."""
    controls, _ = sequence_controls(m.config)
    for kind, (tensor, data_type) in controls.items():
        function = "Typed" if kind == "CONTROL_SEQUENCE_CORRID" else "Boolean"
        source = f"{ORT} ModelInstanceState::Validate{function}SequenceControl"
        info = m.graph.inputs.get(tensor)
        if info is None:
            text = (
                f"configuration specified sequence control '{tensor}', but model does not "
                "provide that input"
            )
            yield Violation("ort.sequence-control", text, source)
            continue
        dims = info.dims[1:] if m.mbs > 0 else info.dims
        if dims != (1,):
            text = (
                f"unable to load model '{m.name}', sequence control '{tensor}' in model has dims "
                f"{_shape(dims)} but dims [1] is expected"
            )
            yield Violation("ort.sequence-control", text, source)
        if data_type not in SUPPORTED_DATA_TYPES or data_type != info.data_type:
            text = (
                f"unable to load model '{m.name}', sequence control '{tensor}', the model "
                f"expects data-type {info.element} but the model configuration specifies "
                f"data-type {data_type}"
            )
            yield Violation("ort.sequence-control", text, source)


ONNXRUNTIME_RULES = (
    _ort_tensor_types,
    _ort_input_count,
    _ort_inputs,
    _ort_outputs,
    _ort_sequence_controls,
    _ort_parameters,
    _ort_accelerators,
)


def check_onnxruntime_model(
    config: Mapping,
    graph: GraphIO,
    *,
    gpus: Iterable[int] | None = None,
    auto_complete: bool = True,
) -> list[Violation]:
    """Every load-time refusal of Triton core and the native onnxruntime backend for
    `config` served with the graph `graph`. `gpus`: the serving machine's GPU ids (None:
    the container, whose GPUs make KIND_GPU and KIND_AUTO GPU instances)."""
    violations: list[Violation] = []
    if auto_complete:
        config, violations = autocomplete(config, graph)
    if violations:
        return violations  # the model state is never created: nothing further is checked
    model = _Model(config, graph, None if gpus is None else frozenset(gpus))
    for rule in (*CORE_MODEL_RULES, *ONNXRUNTIME_RULES):
        violations.extend(rule(model))
    return violations


def native_model_path(version_dir: str | Path, config: Mapping) -> Path:
    """ModelState::LoadModel: `<version dir>/<default_model_filename or model.onnx>`, and
    `<that>/model.onnx` when it is a directory; nowhere else."""
    path = Path(version_dir) / (config.get("default_model_filename") or "model.onnx")
    return path / "model.onnx" if path.is_dir() else path


def check_model_file(version_dir: str | Path, config: Mapping) -> list[Violation]:
    """ModelState::LoadModel: the graph file must be where the backend looks."""
    path = native_model_path(version_dir, config)
    if path.is_file():
        return []
    text = f"unable to find '{path}' for model instance '{config.get('name', '')}'"
    return [Violation("ort.model-file", text, f"{ORT} ModelState::LoadModel")]
