"""A clock the test moves by hand, for code that takes `clock=time.monotonic` (or
`time.perf_counter`): assign or add to `now`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now
