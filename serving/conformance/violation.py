"""A refusal and its message."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One refusal: `rule` an id, `message` as the source words it, `source` where it is."""

    rule: str
    message: str
    source: str


def refusal(violations: Iterable[Violation]) -> str:
    """One message for a load-time refusal: each violation's message as Triton words it,
    then its rule and where the rule comes from; "" when there is none."""
    return "\n".join(f"{v.message} [{v.rule}: {v.source}]" for v in violations)
