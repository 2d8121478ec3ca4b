"""The checkpoint contract between training, export and serving.

A checkpoint directory is what `save_pretrained` writes (safetensors weights, a
`config.json` whose `id2label` names every class and whose `problem_type` is set,
the tokenizer with `tokenizer.json`) plus `berth.json`: what export and serving need
beyond that to reproduce the model's input pipeline and decision rule exactly: label
order, problem type, thresholds, the input length, and how a text longer than that is
read (truncated to one window, or cut into windows whose logits are aggregated).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from berth_core.encoding import AGGREGATIONS, Windows, encode_windows
from berth_core.errors import CheckpointError
from berth_core.names import MULTI_LABEL, PROBLEM_TYPES, SINGLE_LABEL

BERTH_FILE = "berth.json"
TRUNCATIONS = ("head", "head+tail")
FORMAT_VERSION = 1


@dataclass
class BerthConfig:
    """What `berth.json` holds. Labels are in output-index order."""

    labels: list[str]
    problem_type: str = SINGLE_LABEL
    max_length: int = 128
    truncation: str = "head"
    # With "head+tail": how many content tokens come from the start; the rest of the
    # budget (max_length - special tokens - head_tokens) comes from the end.
    head_tokens: int = 0
    # Long texts: windows of max_length tokens, `window_stride` content tokens apart, at
    # most `max_windows` per text (spread over the text past that), their logits combined
    # by `aggregation` (berth_core/encoding.py). 1 window = the truncation above (files
    # written before windows existed load so).
    window_stride: int = 0
    max_windows: int = 1
    aggregation: str = "mean"
    # Multi-label only: one decision threshold per label, tuned on validation.
    thresholds: list[float] | None = None
    base_model: str = ""
    # A distilled student: its teacher, how it was made and the loss settings.
    distillation: dict | None = None
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.labels:
            raise CheckpointError(
                "berth.json: `labels` is empty; a classifier needs at least one label"
            )
        if len(set(self.labels)) != len(self.labels):
            raise CheckpointError(f"berth.json: duplicate labels in {self.labels}")
        if self.problem_type not in PROBLEM_TYPES:
            raise CheckpointError(
                f"berth.json: problem_type {self.problem_type!r} is not one of {PROBLEM_TYPES}"
            )
        if self.truncation not in TRUNCATIONS:
            raise CheckpointError(
                f"berth.json: truncation {self.truncation!r} is not one of {TRUNCATIONS}"
            )
        if self.max_length < 8:
            raise CheckpointError(f"berth.json: max_length {self.max_length} is too small (min 8)")
        self._check_windows()
        if self.thresholds is not None and len(self.thresholds) != len(self.labels):
            raise CheckpointError(
                f"berth.json: {len(self.thresholds)} thresholds for {len(self.labels)} labels"
            )

    def _check_windows(self) -> None:
        if self.max_windows < 1:
            raise CheckpointError(f"berth.json: max_windows {self.max_windows} must be >= 1")
        if self.aggregation not in AGGREGATIONS:
            raise CheckpointError(
                f"berth.json: aggregation {self.aggregation!r} is not one of {AGGREGATIONS}"
            )
        if not self.windowed:
            return
        if self.truncation != "head":
            raise CheckpointError(
                f"berth.json: truncation {self.truncation!r} keeps one window; windows "
                f"(max_windows {self.max_windows}) need truncation 'head'"
            )
        if not 0 < self.window_stride < self.max_length:
            raise CheckpointError(
                f"berth.json: window_stride {self.window_stride} must be between 1 and "
                f"max_length - 1 ({self.max_length - 1})"
            )

    @property
    def windowed(self) -> bool:
        """Long texts are read as several windows (else truncated to one)."""
        return self.max_windows > 1

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def decision_thresholds(self) -> list[float]:
        """Per-label thresholds for multi-label decisions (0.5 where none were tuned)."""
        return list(self.thresholds) if self.thresholds else [0.5] * len(self.labels)

    def encode_windows(self, tokenizer, texts: Sequence[str]) -> Windows:
        """Every window the model scores for `texts` (one a text without window mode),
        cut as this berth.json says."""
        return encode_windows(
            tokenizer,
            texts,
            self.max_length,
            self.window_stride,
            self.max_windows,
            self.truncation,
            self.head_tokens,
        )

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / BERTH_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> BerthConfig:
        path = Path(directory) / BERTH_FILE
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: {directory} is not a berth checkpoint "
                "(train one with `python -m training`)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            data.setdefault("extra", {}).update({k: data.pop(k) for k in unknown})
        return cls(**data)
