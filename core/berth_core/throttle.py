"""Client-side adaptive throttling: refuse locally what the server would refuse anyway.

Under overload the server's admission (`berth_core.admission`) refuses the excess, but
each refusal still costs it an HTTP request, a pass through the ensemble and a Python
call; at five times its capacity, on a small machine, those refusals take a third of the
cores from the requests it serves. A client that has just seen most of its requests
refused can refuse the next ones itself, for nothing. This is the adaptive throttling of
Google's SRE book ("Handling Overload"): over a trailing window the client counts the
requests it attempted and those the server accepted (answered with anything but an
overload refusal), and refuses a new request locally with probability

    max(0, (requests - k * accepts) / (requests + 1))

With every request accepted it never refuses; once the server accepts fewer than 1/k of
them, the client sends about k times what the server accepts, so the server still sees
enough traffic to signal recovery. `k` = 2 lets the server refuse as much as it serves.
Below `min_requests` attempts in the window it never refuses: after one refused call the
formula alone would refuse the retry half the time, and a client that calls now and then
is not what overloads a server; its retries should reach the server.

One instance serves one thread (or one event loop): berth-client keeps one per client.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

THROTTLED = "refused by client-side throttling"  # in every local refusal's message
DEFAULT_K = 2.0
DEFAULT_WINDOW_S = 10.0
DEFAULT_MIN_REQUESTS = 20


@dataclass
class AdaptiveThrottle:
    """Attempts and accepts over the last `window_s` seconds, kept in one-second slots."""

    k: float = DEFAULT_K
    window_s: float = DEFAULT_WINDOW_S
    min_requests: int = DEFAULT_MIN_REQUESTS
    clock: Callable[[], float] = time.monotonic
    rng: Callable[[], float] = random.random
    slots: deque[list[int]] = field(init=False, default_factory=deque)  # [second, req, acc]
    requests: int = field(init=False, default=0)
    accepts: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not self.k >= 1:
            raise ValueError(f"the throttle's k must be >= 1 (2 is usual), got {self.k}")
        if not self.window_s >= 1:
            raise ValueError(f"the throttle's window must be >= 1 s, got {self.window_s}")

    def _slot(self) -> list[int]:
        """The current second's slot, once the slots older than the window are dropped."""
        second = int(self.clock())
        while self.slots and self.slots[0][0] <= second - self.window_s:
            _, requests, accepts = self.slots.popleft()
            self.requests -= requests
            self.accepts -= accepts
        if not self.slots or self.slots[-1][0] != second:
            self.slots.append([second, 0, 0])
        return self.slots[-1]

    def _probability(self) -> float:
        """From the counters as they stand (the window moved on by the caller)."""
        if self.requests < self.min_requests:
            return 0.0
        return max(0.0, (self.requests - self.k * self.accepts) / (self.requests + 1))

    def rejection_probability(self) -> float:
        self._slot()
        return self._probability()

    def allow(self) -> bool:
        """Whether to send the next request; counts it as attempted either way."""
        slot = self._slot()  # the window moved on once a call: allow is on the hot path
        p = self._probability()
        slot[1] += 1
        self.requests += 1
        return p <= 0 or self.rng() >= p

    def record(self, accepted: bool) -> None:
        """The server's answer to a sent request: accepted unless an overload refusal."""
        if accepted:
            self._slot()[2] += 1
            self.accepts += 1

    def refusal(self) -> str:
        return (
            f"{THROTTLED}: the server refused most recent requests as overloaded (it "
            f"accepted {self.accepts} of {self.requests} in the last {self.window_s:g} s); "
            "retry with backoff"
        )


def from_k(k: float | None) -> AdaptiveThrottle | None:
    """The throttle for `k`, or None where throttling is off (k None or 0)."""
    return AdaptiveThrottle(float(k)) if k else None
