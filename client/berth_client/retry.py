"""Retries with exponential backoff and full jitter, on transient errors only."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from berth_client.errors import BerthError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` further attempts after the first one; before attempt n (n = 1, 2, ...)
    sleep a uniform random time in [0, min(max_backoff, backoff * 2**(n-1))]
    ("full jitter": spreads retrying clients out instead of synchronising them)."""

    retries: int = 3
    backoff: float = 0.05
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")

    def cap(self, attempt: int) -> float:
        """The upper bound of the sleep before retry number `attempt` (1-based)."""
        return min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))

    def delay(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        return rng(0.0, self.cap(attempt))


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, BerthError) and exc.transient


def _raise_unless_retried(
    exc: Exception,
    attempt: int,
    policy: RetryPolicy,
    translate: Callable[[BaseException], BerthError],
) -> None:
    """Called while `exc` is handled: raise it (translated) unless it is transient and
    retry number `attempt` (1-based) is within `policy`."""
    error = translate(exc)
    if is_transient(error) and attempt <= policy.retries:
        return
    if error is exc:
        raise  # the exception being handled, its traceback untouched
    raise error from exc


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    translate: Callable[[BaseException], BerthError],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn`; translate its exceptions; retry the transient ones per `policy`."""
    for attempt in itertools.count(1):
        try:
            return fn()
        except Exception as exc:
            _raise_unless_retried(exc, attempt, policy, translate)
        sleep(policy.delay(attempt))


async def acall_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    translate: Callable[[BaseException], BerthError],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """The asyncio twin of `call_with_retry`."""
    for attempt in itertools.count(1):
        try:
            return await fn()
        except Exception as exc:
            _raise_unless_retried(exc, attempt, policy, translate)
        await sleep(policy.delay(attempt))
