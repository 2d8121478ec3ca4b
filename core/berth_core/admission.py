"""Admission in the tokenizer: a token bucket it checks before it tokenizes.

Under open-loop overload Triton's queues refuse requests only once they have waited in
the classifier's queue, after the tokenizer has spent CPU on them; on a small machine
that work comes out of the classifier's share and goodput collapses (RELIABILITY.md).
A bucket filled at the rate the server is known to sustain refuses the excess at once,
for the cost of a Python call, so the admitted requests keep the cores and their SLO.

The rate is per tokenizer instance (the model config's `admission_rate` divided by the
instance count); a refused request gets UNAVAILABLE with a message naming the rate,
which berth-client retries with backoff as it does Triton's own queue refusals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

REFUSAL = "over the admission rate"  # in every refusal; berth-client keys on it
# The entrance in front of the server (serving/entrance.py, nginx) starts its refusals so.
ENTRANCE_REFUSAL = "refused at the entrance"
# Triton's own refusals by a model's bounded queue (queue policy, timeout_action REJECT),
# spelled here once for berth-client and the load generator.
QUEUE_FULL = "exceeds maximum queue size"
QUEUE_TIMEOUT = "request timeout expired"


@dataclass
class TokenBucket:
    """`rate` requests a second on average, up to `burst` at once after a quiet spell."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(
                f"admission needs rate > 0 and burst >= 1 (got {self.rate}, {self.burst})"
            )
        self.tokens = self.burst
        self.stamp = self.clock()

    def admit(self) -> bool:
        """Take one token if there is one: True admits the request, False refuses it."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def refusal(self) -> str:
        return (
            f"{REFUSAL} ({self.rate:g} requests/s per tokenizer instance): the server is "
            "at capacity; retry with backoff"
        )


def from_parameters(rate: float, burst: float, instances: int) -> TokenBucket | None:
    """The bucket one tokenizer instance keeps, or None where admission is off (rate 0).
    A burst of 0 means a tenth of a second's worth of the instance's rate."""
    if rate <= 0:
        return None
    share = rate / max(instances, 1)
    return TokenBucket(share, burst if burst > 0 else max(1.0, share / 10))
