"""What the client learns from the served model's config, and the decision rule.

Pure functions, no I/O: parsing Triton model configs (HTTP JSON or gRPC `as_json`),
validating inputs and chunking. Probabilities become prediction records by berth's one
decision rule, `berth_core.rule.decide`, the reference predictor's too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from berth_client.errors import BerthError, InvalidInputError
from berth_core.names import (
    LOGITS,
    MULTI_LABEL,
    PROBABILITIES,
    PROBLEM_TYPES,
    SINGLE_LABEL,
    TEXT,
)
from berth_core.rule import decide  # noqa: F401  (the client's rule is berth's own)

DEFAULT_INPUT = TEXT


@dataclass(frozen=True)
class ModelInfo:
    """A served berth classifier, as described by its Triton config."""

    name: str
    labels: list[str]
    problem_type: str = SINGLE_LABEL
    thresholds: list[float] = field(default_factory=list)
    max_batch_size: int = 0
    input_name: str = DEFAULT_INPUT

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    def decision_thresholds(self) -> list[float]:
        """Per-label thresholds for multi-label decisions (0.5 where none were set)."""
        return list(self.thresholds) if self.thresholds else [0.5] * len(self.labels)

    @property
    def chunk_size(self) -> int:
        """Texts per request: the server's max batch size (1 without batching)."""
        return self.max_batch_size if self.max_batch_size > 0 else 1

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelInfo:
        """Parse a model config as returned by `get_model_config` (HTTP: the dict
        itself; gRPC with `as_json=True`: `{"config": {...}}`)."""
        if "config" in config and isinstance(config["config"], Mapping):
            config = config["config"]
        name = str(config.get("name", ""))
        params = {
            key: (value.get("string_value", "") if isinstance(value, Mapping) else str(value))
            for key, value in (config.get("parameters") or {}).items()
        }
        outputs = {o.get("name"): o for o in config.get("output", [])}
        num_labels = None
        for out_name in (PROBABILITIES, LOGITS):
            dims = outputs.get(out_name, {}).get("dims")
            if dims:
                num_labels = int(dims[-1])
                break
        if PROBABILITIES not in outputs:
            raise BerthError(
                f"model {name!r} has no {PROBABILITIES} output (outputs: {sorted(outputs)}); "
                "is it a berth ensemble?"
            )
        labels = parse_id2label(params.get("id2label", ""), num_labels, name)
        problem_type = params.get("problem_type") or SINGLE_LABEL
        if problem_type not in PROBLEM_TYPES:
            raise BerthError(
                f"model {name!r}: unknown problem_type {problem_type!r} "
                f"(expected one of {PROBLEM_TYPES})"
            )
        thresholds = parse_thresholds(params.get("thresholds", ""), len(labels), name)
        inputs = config.get("input") or [{"name": DEFAULT_INPUT}]
        return cls(
            name=name,
            labels=labels,
            problem_type=problem_type,
            thresholds=thresholds,
            max_batch_size=int(config.get("max_batch_size", 0) or 0),
            input_name=str(inputs[0].get("name", DEFAULT_INPUT)),
        )


def parse_id2label(raw: str, num_labels: int | None, model: str = "") -> list[str]:
    """`id2label` as a JSON list (`["neg", "pos"]`) or object (`{"0": "neg", ...}`).
    Without it, transformers' default names `LABEL_<i>` from the output width."""
    if not raw.strip():
        if not num_labels:
            raise BerthError(f"model {model!r}: no id2label parameter and no output dims")
        return [f"LABEL_{i}" for i in range(num_labels)]
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BerthError(f"model {model!r}: id2label is not JSON: {raw!r}") from exc
    if isinstance(value, Mapping):
        try:
            pairs = sorted((int(k), str(v)) for k, v in value.items())
        except ValueError as exc:
            raise BerthError(f"model {model!r}: id2label keys must be integers: {raw!r}") from exc
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise BerthError(f"model {model!r}: id2label ids are not 0..n-1: {raw!r}")
        labels = [v for _, v in pairs]
    elif isinstance(value, list):
        labels = [str(v) for v in value]
    else:
        raise BerthError(f"model {model!r}: id2label must be a list or an object: {raw!r}")
    if num_labels is not None and len(labels) != num_labels:
        raise BerthError(
            f"model {model!r}: id2label names {len(labels)} labels, outputs have {num_labels}"
        )
    return labels


def parse_thresholds(raw: str, num_labels: int, model: str = "") -> list[float]:
    if not raw.strip():
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BerthError(f"model {model!r}: thresholds is not JSON: {raw!r}") from exc
    if value in (None, []):
        return []
    if isinstance(value, int | float):
        return [float(value)] * num_labels
    if not isinstance(value, list) or len(value) != num_labels:
        raise BerthError(f"model {model!r}: expected {num_labels} thresholds, got {raw!r}")
    return [float(v) for v in value]


def validate_texts(texts: object) -> tuple[list[str], bool]:
    """→ (the texts as a list, whether a single string was given).

    Accepts one `str` or any iterable of `str` (list, tuple, generator); anything
    else raises `InvalidInputError` naming the offending item.
    """
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, bytes | bytearray):
        raise InvalidInputError("texts must be str, got bytes: decode them first")
    if isinstance(texts, Mapping) or not isinstance(texts, Iterable):
        raise InvalidInputError(f"texts must be a str or a list of str, got {type(texts).__name__}")
    items = list(texts)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInputError(
                f"texts[{index}] must be a str, got {type(item).__name__}: {item!r:.60}"
            )
    return items, False


def encode_texts(texts: Sequence[str]) -> np.ndarray:
    """UTF-8 bytes in an object array of shape [n, 1] (Triton BYTES, one text a row)."""
    encoded = []
    for index, text in enumerate(texts):
        try:
            encoded.append(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"texts[{index}] is not valid Unicode: {exc}") from exc
    return np.array(encoded, dtype=np.object_).reshape(-1, 1)


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
