"""Triton core's ensemble rules (model_config_utils.cc ValidateModelConfig,
ValidateEnsembleSchedulingConfig, BuildEnsembleGraph; ensemble_utils.cc
ValidateEnsembleConfig; model_repository_manager.cc UpdateGraph)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .core_io import _io_config_violations
from .core_rules import ENSEMBLE
from .parsing import _dims, _io_dims, _shape
from .sources import CORE_ENSEMBLE, CORE_REPOSITORY, CORE_UTILS
from .violation import Violation


@dataclass
class _FlowNode:
    """EnsembleTensor (model_config_utils.cc BuildEnsembleGraph)."""

    is_output: bool
    ready: bool = False
    prev: list[str] = field(default_factory=list)
    next: list[str] = field(default_factory=list)


def _steps(config: Mapping) -> list[Mapping]:
    return list((config.get("ensemble_scheduling") or {}).get("step") or [])


def _ensemble_model_errors(config: Mapping, name: str) -> Iterator[str]:
    """ValidateModelConfig: an ensemble is platform "ensemble", no backend, scheduled."""
    platform = config.get("platform", "")
    if config.get("backend"):
        yield f"Ensemble model '{name}' must have platform type '{platform}' and empty backend type"
    if int(config.get("max_batch_size", 0) or 0) < 0:
        yield f"'max_batch_size' must be non-negative value for {name}"
    if platform != ENSEMBLE:
        yield (
            f"ensemble scheduling cannot be set for model '{name}' whose platform is not {ENSEMBLE}"
        )
    if "ensemble_scheduling" not in config:
        yield f"ensemble scheduling must be set for ensemble {name} whose platform is {ENSEMBLE}"


def _ensemble_scheduling_errors(config: Mapping, name: str) -> Iterator[str]:
    """ValidateEnsembleSchedulingConfig: no instances, optimization or warmup of its own
    (its steps' models have them), and at least one step."""
    if config.get("instance_group"):
        yield f"instance group should not be specified for ensemble '{name}'"
    if "optimization" in config:
        yield f"optimization should not be specified for ensemble '{name}'"
    if config.get("model_warmup"):
        yield f"model_warmup can not be specified for ensemble '{name}'"
    if "ensemble_scheduling" in config and not _steps(config):
        yield f"must specify 'step' for ensemble '{name}'"


def _ensemble_fields(config: Mapping) -> Iterator[Violation]:
    name = config.get("name", "")
    for function, errors in (
        ("ValidateModelConfig", _ensemble_model_errors),
        ("ValidateEnsembleSchedulingConfig", _ensemble_scheduling_errors),
    ):
        for text in errors(config, name):
            yield Violation("core.ensemble-config", text, f"{CORE_UTILS} {function}")


def _build_flow(config: Mapping) -> tuple[dict[str, _FlowNode], list[str]]:
    """BuildEnsembleGraph: each step's outputs depend on all its inputs; a tensor is
    written by one output map only."""
    name, tensors, errors = config.get("name", ""), {}, []
    for index, step in enumerate(_steps(config)):
        where = f"in step {index} of ensemble '{name}'"
        for key in ("model_name", "input_map", "output_map"):
            if not step.get(key):
                errors.append(f"must specify '{key}' {where}")
        outputs = []
        for tensor in (step.get("output_map") or {}).values():
            node = tensors.setdefault(tensor, _FlowNode(is_output=False))
            if node.is_output:
                errors.append(
                    f"ensemble tensor '{tensor}' can appear in an output map only once for "
                    f"ensemble '{name}' step {index}"
                )
            node.is_output = True
            outputs.append(tensor)
        for tensor in (step.get("input_map") or {}).values():
            node = tensors.setdefault(tensor, _FlowNode(is_output=False))
            for output in outputs:
                tensors[output].prev.append(tensor)
                node.next.append(output)
    return tensors, errors


def _mark_ready(tensors: dict[str, _FlowNode], ready: list[str]) -> None:
    queue = list(ready)
    while queue:
        for following in tensors[queue.pop(0)].next:
            node = tensors[following]
            if not node.ready and all(tensors[p].ready for p in node.prev):
                node.ready = True
                queue.append(following)


def _not_written(tensors: dict[str, _FlowNode], output: str, name: str) -> str:
    """The message for an output never written, with its first unconnected source."""
    text, last, seen = f"output '{output}' for ensemble '{name}' is not written", output, set()
    prev = tensors[output].prev
    while prev:
        upstream = next((p for p in prev if not tensors[p].ready and p not in seen), None)
        if upstream is None:
            break
        seen.add(upstream)
        last, prev = upstream, tensors[upstream].prev
    if last != output:
        text += f": at least one of its depending tensors, '{last}', is not connected"
    return text


def _ensemble_flow(config: Mapping) -> Iterator[Violation]:
    """ValidateEnsembleSchedulingConfig: every ensemble input used, every output written,
    every tensor in between consumed."""
    name, source = config.get("name", ""), f"{CORE_UTILS} ValidateEnsembleSchedulingConfig"
    if not _steps(config):
        return  # _ensemble_fields
    tensors, errors = _build_flow(config)
    inputs = [io.get("name", "") for io in config.get("input") or []]
    for tensor in inputs:
        if tensor in tensors:
            tensors[tensor].ready = True
        else:
            errors.append(f"ensemble input '{tensor}' for ensemble {name}' is not used")
    _mark_ready(tensors, [t for t in inputs if t in tensors])
    outputs = set()
    for io in config.get("output") or []:
        tensor = io.get("name", "")
        if tensor not in tensors:
            errors.append(f"ensemble output '{tensor}' for ensemble {name}' is not used")
        elif not tensors[tensor].ready:
            errors.append(_not_written(tensors, tensor, name))
        else:
            outputs.add(tensor)
    for tensor, node in tensors.items():
        if tensor not in outputs and (not node.ready or not node.next):
            errors.append(f"ensemble tensor '{tensor}' is unused in ensemble '{name}'")
    yield from (Violation("core.ensemble-flow", text, source) for text in errors)


def _ensemble_io(config: Mapping) -> Iterator[Violation]:
    yield from _io_config_violations(config)


def _ensemble_members(config: Mapping, members: Mapping[str, Mapping]) -> Iterator[Violation]:
    """DependencyGraph::UpdateGraph: every step's model must be in the repository."""
    missing = sorted({s.get("model_name", "") for s in _steps(config)} - set(members))
    if missing:
        text = (
            f"ensemble {config.get('name', '')} contains models that are not available or "
            f"ambiguous: {', '.join(missing)}"
        )
        yield Violation("core.ensemble-members", text, f"{CORE_REPOSITORY} UpdateGraph")


@dataclass(frozen=True)
class _TensorNode:
    """TensorNode (ensemble_utils.cc): a tensor's type and shape as one model sees it."""

    model: str
    batching: bool
    data_type: str
    dims: tuple[int, ...]

    @property
    def full_dims(self) -> tuple[int, ...]:
        return (-1, *self.dims) if self.batching else self.dims


def _dims_with_wildcard(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """triton::common::CompareDimsWithWildcard."""
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def _consistency(seen: _TensorNode, node: _TensorNode, prefix: str) -> str | None:
    """ValidateTensorConsistency: one data type, and shapes that agree (a -1 agrees with
    anything), with or without the batch dimension."""
    if seen.data_type != node.data_type:
        return (
            f"{prefix}inconsistent data type: {seen.data_type} is inferred from model "
            f"{seen.model} while {node.data_type} is inferred from model {node.model}"
        )
    if not _dims_with_wildcard(seen.dims, node.dims) and not _dims_with_wildcard(
        seen.full_dims, node.full_dims
    ):
        return (
            f"{prefix}inconsistent shape: {_shape(seen.full_dims)} is inferred from model "
            f"{seen.model} while {_shape(node.full_dims)} is inferred from model {node.model}"
        )
    return None


def _step_mapping(ensemble: str, step: Mapping, member: Mapping, nodes: dict) -> Iterator[str]:
    """ValidateTensorMapping: a step's maps name its model's real tensors, every
    non-optional input is mapped, and each ensemble tensor agrees with its first sight."""
    model = step.get("model_name", "")
    batching = int(member.get("max_batch_size", 0) or 0) > 0
    inputs = {io.get("name"): io for io in member.get("input") or []}
    outputs = {io.get("name"): io for io in member.get("output") or []}
    input_map, output_map = step.get("input_map") or {}, step.get("output_map") or {}
    for key, tensor in input_map.items():
        if key not in inputs:
            yield (
                f"in ensemble {ensemble}, ensemble tensor {tensor} is mapping to non-existing "
                f"input {key} in model {model}"
            )
    for key, io in inputs.items():
        if key not in input_map and not io.get("optional"):
            yield (
                f"in ensemble {ensemble}, input {key} in model {model} is not mapped to any "
                "ensemble tensors"
            )
    for key, tensor in output_map.items():
        if key not in outputs:
            yield (
                f"in ensemble {ensemble}, ensemble tensor {tensor} is mapped from non-existing "
                f"output {key} in model {model}"
            )
    for ios, mapping in ((inputs, input_map), (outputs, output_map)):
        for key, tensor in ((k, t) for k, t in mapping.items() if k in ios):
            node = _TensorNode(
                model, batching, ios[key].get("data_type", ""), tuple(_dims(ios[key]))
            )
            seen = nodes.setdefault(tensor, node)
            error = _consistency(seen, node, f"in ensemble {ensemble}, ensemble tensor {tensor}: ")
            yield from [error] if error else []


def _ensemble_wiring(config: Mapping, members: Mapping[str, Mapping]) -> Iterator[Violation]:
    """ValidateEnsembleConfig: each step's model batches at least as large as the
    ensemble (or not at all), and the wiring's types and shapes agree."""
    name, source = config.get("name", ""), f"{CORE_ENSEMBLE} ValidateEnsembleConfig"
    mbs = int(config.get("max_batch_size", 0) or 0)
    nodes: dict[str, _TensorNode] = {}
    for io in [*(config.get("input") or []), *(config.get("output") or [])]:
        node = _TensorNode(name, mbs > 0, io.get("data_type", ""), tuple(_io_dims(io)))
        nodes.setdefault(io.get("name", ""), node)
    for step in _steps(config):
        member = members.get(step.get("model_name", ""))
        if member is None:
            continue  # _ensemble_members
        member_mbs = int(member.get("max_batch_size", 0) or 0)
        if member_mbs != 0 and member_mbs < mbs:
            text = (
                f"ensemble {name} allows maximum batch size {mbs}, but it contains model "
                f"{step.get('model_name')} which only allows maximum batch size to be {member_mbs}"
            )
            yield Violation("core.ensemble-batch-size", text, source)
        for text in _step_mapping(name, step, member, nodes):
            yield Violation("core.ensemble-wiring", text, f"{source} / ValidateTensorMapping")


def check_ensemble(config: Mapping, members: Mapping[str, Mapping]) -> list[Violation]:
    """Triton core's refusals of the ensemble `config` whose steps' models have the
    configurations `members` (model name → config dict, as loaded)."""
    return [
        *_ensemble_fields(config),
        *_ensemble_io(config),
        *_ensemble_flow(config),
        *_ensemble_members(config, members),
        *_ensemble_wiring(config, members),
    ]
