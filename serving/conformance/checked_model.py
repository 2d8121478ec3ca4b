"""The model under check: its configuration, its graph and the serving machine's GPUs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .graph import GraphIO


@dataclass(frozen=True)
class _Model:
    config: Mapping[str, Any]
    graph: GraphIO
    gpus: frozenset[int] | None  # None: the container, with its GPUs

    @property
    def name(self) -> str:
        return str(self.config.get("name", ""))

    @property
    def mbs(self) -> int:
        return int(self.config.get("max_batch_size", 0) or 0)

    @property
    def inputs(self) -> list[Mapping]:
        return list(self.config.get("input") or [])

    @property
    def outputs(self) -> list[Mapping]:
        return list(self.config.get("output") or [])

    @property
    def parameters(self) -> Mapping:
        return self.config.get("parameters") or {}

    def instance_kinds(self) -> list[str]:
        """Each group's kind once core resolved KIND_AUTO (NormalizeInstanceGroup)."""
        groups = self.config.get("instance_group") or [{"kind": "KIND_AUTO"}]
        return [_resolve_kind(g, self.gpus) for g in groups]


def _resolve_kind(group: Mapping, gpus: frozenset[int] | None) -> str:
    kind = group.get("kind", "KIND_AUTO")
    if kind != "KIND_AUTO":
        return kind
    if gpus is None:
        return "KIND_GPU"
    listed = [int(g) for g in group.get("gpus") or []]
    return "KIND_GPU" if gpus and all(g in gpus for g in listed) else "KIND_CPU"
