"""Triton core's per-model rules (model_config_utils.cc ValidateModelConfig,
ValidateInstanceGroup): model configuration, dynamic and sequence batching, instance
groups, and with core_io.py the tensors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .checked_model import _Model, _resolve_kind
from .core_io import _core_batch_io, _core_io
from .graph import INVALID
from .sources import CORE_UTILS
from .violation import Violation

MIN_COMPUTE_CAPABILITY = 6.0  # server CMakeLists.txt TRITON_MIN_COMPUTE_CAPABILITY
ENSEMBLE = "ensemble"
ONNX_PLATFORM = "onnxruntime_onnx"


def _core_model(m: _Model) -> Iterator[Violation]:
    """ValidateModelConfig: name, platform/backend pair, max_batch_size, scheduling."""
    source = f"{CORE_UTILS} ValidateModelConfig"
    platform, backend = m.config.get("platform", ""), m.config.get("backend", "")
    messages = []
    if not m.name:
        messages.append("model configuration must specify 'name'")
    if backend == "onnxruntime" and platform not in ("", ONNX_PLATFORM):
        messages.append(f"unexpected 'platform' and 'backend' pair, got:{platform}, {backend}")
    if m.mbs < 0:
        messages.append(f"'max_batch_size' must be non-negative value for {m.name}")
    if "ensemble_scheduling" in m.config:
        messages.append(
            f"ensemble scheduling cannot be set for model '{m.name}' whose platform is not "
            f"{ENSEMBLE}"
        )
    decoupled = (m.config.get("model_transaction_policy") or {}).get("decoupled")
    if decoupled and (m.config.get("response_cache") or {}).get("enable"):
        messages.append(
            f"Response Cache does not currently support model {m.name} with 'decoupled' "
            "transaction policy. Please disable the response cache."
        )
    yield from (Violation("core.model", text, source) for text in messages)


def _priority_errors(batching: Mapping, name: str) -> Iterator[str]:
    levels = int(batching.get("priority_levels", 0) or 0)
    if levels == 0:
        return
    if not 1 <= int(batching.get("default_priority_level", 0) or 0) <= levels:
        yield f"default priority level must be in range [1, {levels}] for {name}"
    for level in batching.get("priority_queue_policy") or {}:
        if not 1 <= int(level) <= levels:
            yield (
                f"priority queue policy must have priority level in range [1, {levels}] for {name}"
            )


def _ordering_errors(batching: Mapping, name: str) -> Iterator[str]:
    if not batching.get("preserve_ordering"):
        return
    if int(batching.get("priority_levels", 0) or 0) > 1:
        yield f"Only one priority level is allowed when 'preserve_ordering' is true for {name}"
    policies = [batching.get("default_queue_policy") or {}]
    policies += list((batching.get("priority_queue_policy") or {}).values())
    for policy in policies:
        if policy.get("default_timeout_microseconds") and policy.get("timeout_action") == "DELAY":
            yield (
                "Queue policy can not have DELAY as timeout action when 'preserve_ordering' is "
                f"true for {name}"
            )


def _core_dynamic_batching(m: _Model) -> Iterator[Violation]:
    """ValidateModelConfig: preferred sizes in (0, max_batch_size], priority levels,
    preserve_ordering."""
    batching = m.config.get("dynamic_batching")
    if batching is None:
        return
    texts = []
    for size in batching.get("preferred_batch_size") or []:
        if int(size) <= 0:
            texts.append(f"dynamic batching preferred size must be positive for {m.name}")
        elif int(size) > m.mbs:
            texts.append(f"dynamic batching preferred size must be <= max batch size for {m.name}")
    texts += [*_priority_errors(batching, m.name), *_ordering_errors(batching, m.name)]
    source = f"{CORE_UTILS} ValidateModelConfig"
    yield from (Violation("core.dynamic-batching", text, source) for text in texts)


SEQUENCE_CONTROLS = (
    "CONTROL_SEQUENCE_START",
    "CONTROL_SEQUENCE_END",
    "CONTROL_SEQUENCE_READY",
    "CONTROL_SEQUENCE_CORRID",
)
_CONTROL_VALUES = {
    "int32_false_true": "TYPE_INT32",
    "fp32_false_true": "TYPE_FP32",
    "bool_false_true": "TYPE_BOOL",
}
_CORRID_TYPES = ("TYPE_UINT64", "TYPE_INT64", "TYPE_UINT32", "TYPE_INT32", "TYPE_STRING")


def _control_type(control: Mapping, name: str) -> tuple[str, str | None]:
    """(data type, error) of one control (Get{Boolean,Typed}SequenceControlProperties)."""
    kind = control.get("kind", SEQUENCE_CONTROLS[0])
    given = [key for key in _CONTROL_VALUES if control.get(key)]
    if kind == "CONTROL_SEQUENCE_CORRID":
        error = (
            "sequence batching must not specify either 'int32_false_true', 'fp32_false_true' "
            f"or 'bool_false_true' for {kind} for {name}"
        )
        return control.get("data_type", INVALID), error if given else None
    if not given:
        return INVALID, (
            "sequence batching must specify either 'int32_false_true', 'fp32_false_true' or "
            f"'bool_false_true' for {kind} for {name}"
        )
    if len(given) > 1:
        return INVALID, (
            "sequence batching specifies more than one from 'int32_false_true', "
            f"'fp32_false_true' and 'bool_false_true' for {kind} for {name}"
        )
    if len(control[given[0]]) != 2:
        return INVALID, (
            f"sequence batching control '{given[0]}' must have exactly 2 entries for {kind} "
            f"for {name}"
        )
    return _CONTROL_VALUES[given[0]], None


def sequence_controls(config: Mapping) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """The sequence batcher's control tensors, {kind: (tensor, data type)}, and the errors
    of their declaration."""
    batcher, name = config.get("sequence_batching") or {}, config.get("name", "")
    controls: dict[str, tuple[str, str]] = {}
    errors, seen = [], set()
    for control_input in batcher.get("control_input") or []:
        tensor = control_input.get("name", "")
        if not tensor:
            errors.append(f"sequence batching control tensor must have a name for {name}")
        elif tensor in seen:
            errors.append(
                f"sequence batching control tensor '{tensor}' is specified for multiple "
                f"control kinds for {name}"
            )
        seen.add(tensor)
        for control in control_input.get("control") or []:
            kind = control.get("kind", SEQUENCE_CONTROLS[0])
            data_type, error = _control_type(control, name)
            if kind in controls:
                error = f"sequence batching specifies multiple {kind} tensors for {name}"
            errors += [error] if error else []
            controls.setdefault(kind, (tensor, data_type))
    return controls, errors


def _core_sequence_batching(m: _Model) -> Iterator[Violation]:
    """ValidateModelConfig: the sequence batcher's controls, CORRID type, preferred sizes,
    slot utilization, and no response cache."""
    batcher = m.config.get("sequence_batching")
    if batcher is None:
        return
    controls, texts = sequence_controls(m.config)
    if (m.config.get("response_cache") or {}).get("enable"):
        texts.append(
            f"Response Cache does not currently support model {m.name} with sequence "
            "batching scheduler. Please disable the response cache."
        )
    corrid = controls.get("CONTROL_SEQUENCE_CORRID")
    if corrid is not None and corrid[1] not in _CORRID_TYPES:
        texts.append(
            f"unexpected data type for control CONTROL_SEQUENCE_CORRID for {m.name}. Allowed "
            "data types are TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 and TYPE_STRING"
        )
    for size in (batcher.get("oldest") or {}).get("preferred_batch_size") or []:
        if not 0 < int(size) <= m.mbs:
            relation = "be positive" if int(size) <= 0 else "be <= max batch size"
            texts.append(f"sequence batching preferred batch size must {relation} for {m.name}")
    utilization = (batcher.get("direct") or {}).get("minimum_slot_utilization", 0.0)
    if not 0.0 <= float(utilization) <= 1.0:
        texts.append(
            f"sequence batching minimum slot utilization must be in range (0.0, 1.0] for {m.name}"
        )
    source = f"{CORE_UTILS} ValidateModelConfig"
    yield from (Violation("core.sequence-batching", text, source) for text in texts)


def _core_instance_groups(m: _Model) -> Iterator[Violation]:
    """ValidateInstanceGroup: a group's GPUs only with KIND_GPU; KIND_GPU needs GPUs (when
    `gpus`, the serving machine's, is given); profiles only for TensorRT."""
    source = f"{CORE_UTILS} ValidateInstanceGroup"
    groups = m.config.get("instance_group") or [{"kind": "KIND_AUTO"}]
    for index, group in enumerate(groups):
        label = f"instance group {group.get('name') or f'{m.name}_{index}'} of model {m.name}"
        kind, gpus = _resolve_kind(group, m.gpus), [int(g) for g in group.get("gpus") or []]
        if kind not in ("KIND_CPU", "KIND_GPU", "KIND_MODEL"):
            yield Violation("core.instance-group", f"{label} has unexpected kind {kind}", source)
        elif kind != "KIND_GPU" and gpus:
            text = f"{label} has kind {kind} but specifies one or more GPUs"
            yield Violation("core.instance-group", text, source)
        elif kind == "KIND_GPU" and m.gpus is not None:
            yield from _gpu_group(label, gpus, m.gpus, source)
        if group.get("profile"):
            text = (
                f"{label} and platform {m.config.get('platform', '')}specifies profile field "
                "which is only supported for TensorRT models"
            )
            yield Violation("core.instance-group", text, source)


def _gpu_group(label: str, listed: list[int], gpus: frozenset[int], source: str):
    if not listed and not gpus:
        text = f"{label} has kind KIND_GPU but no GPUs are available"
        yield Violation("core.instance-group", text, source)
    for gid in listed:
        if gid not in gpus:
            text = (
                f"{label} specifies invalid or unsupported gpu id {gid}. GPUs with at least the "
                "minimum required CUDA compute compatibility of "
                f"{MIN_COMPUTE_CAPABILITY:f} are: {', '.join(str(g) for g in sorted(gpus))}"
            )
            yield Violation("core.instance-group", text, source)


CORE_MODEL_RULES = (
    _core_model,
    _core_io,
    _core_batch_io,
    _core_dynamic_batching,
    _core_sequence_batching,
    _core_instance_groups,
)
