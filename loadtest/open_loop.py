"""Open-loop load: requests sent on a fixed schedule, whatever the answers do.

A closed loop (Locust's users, each waiting for its answer) slows down with the server,
so it never offers more than the server answers and cannot show overload. Here request
i is sent at its scheduled time (`rate` a second, evenly spaced or Poisson arrivals) by
one asyncio event loop in one process: a send never waits for an earlier answer. At most
`max_in_flight` requests await answers; a request due while the cap is reached is
counted as not sent (generator cap) instead of delaying the schedule.

Goodput: requests answered (HTTP 200 with PROBABILITIES) within the latency bound, per
second of the schedule; as a fraction of the offered rate, the share of offered requests
answered in time. Refusals of Triton's bounded queues ("Exceeds maximum queue size",
"Request timeout expired") and client timeouts are counted apart from other failures.
With `client_throttle` k the generator throttles as berth-client does
(`berth_core.throttle`): a request it refuses locally is scheduled but not sent.
Latency runs from a request's send to its whole answer; the schedule lag (send time
minus scheduled time) shows whether the generator itself kept up.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import resource
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from berth_client.model import PROBABILITIES
from berth_core import throttle
from berth_core.admission import ENTRANCE_REFUSAL, QUEUE_FULL, QUEUE_TIMEOUT
from berth_core.admission import REFUSAL as ADMISSION_REFUSAL
from berth_core.errors import InputError
from loadtest.slo import SLOResult
from loadtest.wire import TIMED_OUT, Pool, request_bytes

ARRIVALS = ("uniform", "poisson")
OK, REFUSED, QUEUE_TIMED_OUT, FAILED = "ok", "refused", "queue timeout", "failed"
ADMISSION_REFUSED = "refused at admission"  # the tokenizer's bucket (berth_core.admission)
ENTRANCE_REFUSED = "refused at the entrance"  # nginx in front (serving.entrance)
# not accepts, to the throttle
OVERLOADED = (REFUSED, QUEUE_TIMED_OUT, ADMISSION_REFUSED, ENTRANCE_REFUSED)
# Requests launched back to back (the generator behind schedule) before it lets them start.
BURST = 64
# Distinct failure messages kept for the report; the rest are counted as "(others)".
FAILURE_KINDS = 20


def arrival_offsets(
    rate: float, duration_s: float, arrivals: str = "uniform", seed: int = 0
) -> Iterator[float]:
    """Send times, in seconds from the start, of `rate` requests a second over
    `duration_s`: evenly spaced, or Poisson arrivals (exponential gaps, seeded so that
    runs offer the same schedule). Generated lazily: a long run holds no list of them."""
    if arrivals == "uniform":
        count = math.ceil(rate * duration_s - 1e-9)
        return (i / rate for i in range(count))
    rng = random.Random(seed)

    def poisson() -> Iterator[float]:
        t = rng.expovariate(rate)
        while t < duration_s:
            yield t
            t += rng.expovariate(rate)

    return poisson()


def classify(status: int, content: bytes) -> str:
    """OK, REFUSED (queue full), QUEUE_TIMED_OUT, ADMISSION_REFUSED, ENTRANCE_REFUSED or
    FAILED for one HTTP response."""
    if status == 200 and PROBABILITIES.encode() in content:
        return OK
    text = content[:4096].decode("utf-8", "replace").lower()
    if QUEUE_FULL in text:
        return REFUSED
    if QUEUE_TIMEOUT in text:
        return QUEUE_TIMED_OUT
    if ADMISSION_REFUSAL in text:
        return ADMISSION_REFUSED
    if ENTRANCE_REFUSAL in text:
        return ENTRANCE_REFUSED
    return FAILED


@dataclass
class Tally:
    """What happened to each scheduled request. `lags` has one entry per sent request."""

    scheduled: int = 0
    not_sent: int = 0
    throttled: int = 0  # refused by the generator's own client-side throttle, not sent
    lags: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # answered OK, seconds
    refused: int = 0
    queue_timeouts: int = 0
    admission_refused: int = 0
    entrance_refused: int = 0
    client_timeouts: int = 0
    failed: int = 0
    failure_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        return len(self.lags)

    @property
    def refusals(self) -> int:
        """Refused as overloaded, by any of the server's limits."""
        return self.refused + self.queue_timeouts + self.admission_refused + self.entrance_refused

    def record(self, kind: str, latency_s: float, detail: str = "") -> None:
        if kind == OK:
            self.latencies.append(latency_s)
        elif kind == REFUSED:
            self.refused += 1
        elif kind == QUEUE_TIMED_OUT:
            self.queue_timeouts += 1
        elif kind == ADMISSION_REFUSED:
            self.admission_refused += 1
        elif kind == ENTRANCE_REFUSED:
            self.entrance_refused += 1
        else:
            self.fail(detail)

    def fail(self, detail: str) -> None:
        self.failed += 1
        kind = detail[:160]
        if kind not in self.failure_kinds and len(self.failure_kinds) >= FAILURE_KINDS:
            kind = "(others)"
        self.failure_kinds[kind] += 1


@dataclass(frozen=True)
class OpenLoopSettings:
    """One open-loop run: where, how fast, how long, how many in flight at most."""

    url: str  # the infer endpoint, http://HOST:PORT/v2/models/<model>/infer
    rate: float
    duration_s: float
    arrivals: str = "uniform"
    max_in_flight: int = 1024
    timeout_s: float = 10.0
    seed: int = 0
    client_throttle: float = 0.0  # k of berth-client's adaptive throttle; 0: off

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise InputError(f"the arrival rate must be > 0 requests/s, got {self.rate:g}")
        if not self.duration_s > 0:
            raise InputError(f"the duration must be > 0 s, got {self.duration_s:g}")
        if self.arrivals not in ARRIVALS:
            raise InputError(f"arrivals must be one of {ARRIVALS}, got {self.arrivals!r}")
        if self.max_in_flight < 1:
            raise InputError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.client_throttle and not self.client_throttle >= 1:
            raise InputError(f"the client throttle's k must be >= 1, got {self.client_throttle:g}")


def infer_url(host: str, model: str) -> str:
    """Triton's v2 infer endpoint of `model` on `host` (HOST:PORT or a URL)."""
    base = host if "://" in host else f"http://{host}"
    return f"{base.rstrip('/')}/v2/models/{model}/infer"


def raise_open_file_limit(wanted: int) -> None:
    """Each request in flight holds a socket: lift the soft descriptor limit towards
    `wanted` so the cap, not EMFILE, bounds them (best effort, within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class OpenLoop:
    """Sends prebuilt request bodies on the schedule of `settings` and tallies the
    answers. `pick()` chooses each request's body (loadtest.data.TextPicker)."""

    def __init__(
        self,
        settings: OpenLoopSettings,
        bodies: Sequence[tuple[bytes, dict]],
        pick: Callable[[], int],
    ) -> None:
        if not bodies:
            raise InputError("the open loop needs at least one request body (no texts?)")
        self.settings = settings
        self.requests = [request_bytes(settings.url, body, headers) for body, headers in bodies]
        self.pick = pick
        self.tally = Tally()
        self.throttle = throttle.from_k(settings.client_throttle)  # None: every request sent
        self.in_flight = 0
        self.drained: asyncio.Event | None = None

    async def run(self) -> Tally:
        """The whole schedule, then every answer (each bounded by the timeout)."""
        raise_open_file_limit(self.settings.max_in_flight + 256)
        pool = Pool(self.settings.url, self.settings.timeout_s)
        self.drained = asyncio.Event()
        try:
            await self._send_all(pool)
            if self.in_flight:  # set whenever in flight fell to 0: wait for the next time
                self.drained.clear()
                await self.drained.wait()
        finally:
            await pool.close()
        return self.tally

    async def _send_all(self, pool: Pool) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        start = loop.time()
        launched = 0  # since the generator last let the event loop run
        for offset in arrival_offsets(s.rate, s.duration_s, s.arrivals, s.seed):
            due = start + offset
            delay = due - loop.time()
            if delay > 0 or launched >= BURST:
                await asyncio.sleep(max(delay, 0.0))
                launched = 0
            self._launch(pool, loop, due)
            launched += 1

    def _launch(self, pool: Pool, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self.tally.scheduled += 1
        if self.in_flight >= self.settings.max_in_flight:
            self.tally.not_sent += 1
            return
        if self.throttle is not None and not self.throttle.allow():
            self.tally.throttled += 1
            return
        self.in_flight += 1
        sent = loop.time()
        self.tally.lags.append(sent - due)

        def done(status: int, content: bytes, error: str) -> None:
            self._answered(status, content, error, loop.time() - sent)

        pool.request(self.requests[self.pick()], done)

    def _answered(self, status: int, content: bytes, error: str, latency_s: float) -> None:
        kind = FAILED if error else classify(status, content)
        if self.throttle is not None:  # accepted unless refused as overloaded, as in berth-client
            self.throttle.record(kind not in OVERLOADED)
        if error == TIMED_OUT:
            self.tally.client_timeouts += 1
        elif error:
            self.tally.fail(error)
        elif kind == FAILED:  # the message is built for failures only, not every answer
            self.tally.fail(f"HTTP {status}: {content[:120].decode('utf-8', 'replace')}")
        else:
            self.tally.record(kind, latency_s)
        self.in_flight -= 1
        if self.in_flight == 0 and self.drained is not None:
            self.drained.set()


def run_open_loop(
    settings: OpenLoopSettings, bodies: Sequence[tuple[bytes, dict]], pick: Callable[[], int]
) -> Tally:
    """One open-loop run in its own event loop."""
    return asyncio.run(OpenLoop(settings, bodies, pick).run())


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ascending values (the smallest value with at least
    `fraction` of them at or below it); None without values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values) - 1e-9))
    return sorted_values[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


@dataclass(frozen=True)
class OpenLoopSummary:
    """The figures of one run; latencies are of the requests answered OK, in ms."""

    arrivals: str
    duration_s: float
    scheduled: int
    sent: int
    not_sent_cap: int
    refused_client_throttle: int
    ok: int
    refused_queue_full: int
    refused_queue_timeout: int
    refused_admission: int
    refused_entrance: int
    client_timeouts: int
    failed: int
    latency_bound_ms: float | None
    good: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    lag_p99_ms: float | None
    lag_max_ms: float | None
    failure_kinds: dict[str, int]

    @property
    def offered_rps(self) -> float:
        return self.scheduled / self.duration_s

    @property
    def ok_rps(self) -> float:
        return self.ok / self.duration_s

    @property
    def goodput_rps(self) -> float:
        return self.good / self.duration_s

    @property
    def goodput_fraction(self) -> float:
        """Goodput / offered rate: the share of scheduled requests answered in time."""
        return self.good / self.scheduled if self.scheduled else 0.0

    @property
    def failure_rate(self) -> float:
        return self.failed / self.sent if self.sent else 0.0

    def as_dict(self) -> dict:
        derived = ("offered_rps", "ok_rps", "goodput_rps", "goodput_fraction", "failure_rate")
        return {**self.__dict__, **{name: getattr(self, name) for name in derived}}


def summarize(
    tally: Tally, duration_s: float, latency_bound_ms: float | None, arrivals: str = "uniform"
) -> OpenLoopSummary:
    """The run's figures. Goodput counts the answers within `latency_bound_ms` (every
    answer when None) per second of the schedule's `duration_s`."""
    latencies = sorted(tally.latencies)
    lags = sorted(tally.lags)
    bound_s = None if latency_bound_ms is None else latency_bound_ms / 1000.0
    good = len(latencies) if bound_s is None else sum(1 for t in latencies if t <= bound_s)
    return OpenLoopSummary(
        arrivals=arrivals,
        duration_s=duration_s,
        scheduled=tally.scheduled,
        sent=tally.sent,
        not_sent_cap=tally.not_sent,
        refused_client_throttle=tally.throttled,
        ok=len(latencies),
        refused_queue_full=tally.refused,
        refused_queue_timeout=tally.queue_timeouts,
        refused_admission=tally.admission_refused,
        refused_entrance=tally.entrance_refused,
        client_timeouts=tally.client_timeouts,
        failed=tally.failed,
        latency_bound_ms=latency_bound_ms,
        good=good,
        p50_ms=_ms(percentile(latencies, 0.50)),
        p90_ms=_ms(percentile(latencies, 0.90)),
        p99_ms=_ms(percentile(latencies, 0.99)),
        max_ms=_ms(latencies[-1] if latencies else None),
        lag_p99_ms=_ms(percentile(lags, 0.99)),
        lag_max_ms=_ms(lags[-1] if lags else None),
        failure_kinds=dict(tally.failure_kinds.most_common()),
    )


def check(
    summary: OpenLoopSummary,
    min_goodput: float | None = None,
    min_rps: float | None = None,
    max_failure_rate: float | None = None,
) -> list[SLOResult]:
    """One result per checked SLO (loadtest.slo's conventions: None = not checked; a run
    that sent nothing fails them all). Refusals and timeouts are not failures here: they
    cost goodput."""
    none = summary.sent == 0
    results = []
    if min_goodput is not None:
        actual = (
            f"{summary.goodput_fraction:.1%} ({summary.goodput_rps:.1f} of "
            f"{summary.offered_rps:.1f} req/s)"
        )
        passed = not none and summary.goodput_fraction >= min_goodput
        results.append(SLOResult("goodput", f">= {min_goodput:.0%} of offered", actual, passed))
    if min_rps is not None:
        passed = not none and summary.ok_rps >= min_rps
        results.append(
            SLOResult("throughput", f">= {min_rps:g} req/s", f"{summary.ok_rps:.1f} req/s", passed)
        )
    if max_failure_rate is not None:
        actual = f"{summary.failure_rate:.2%} ({summary.failed} of {summary.sent})"
        passed = not none and summary.failure_rate <= max_failure_rate
        results.append(SLOResult("failure rate", f"<= {max_failure_rate:.2%}", actual, passed))
    return results


def _shown_ms(*values: float | None) -> str:
    return " / ".join("—" if v is None else f"{v:,.1f}" for v in values) + " ms"


def summary_table(summary: OpenLoopSummary, results: list[SLOResult], cap: int) -> str:
    """A markdown table: the run's figures, then one row per SLO."""
    s = summary
    latency = _shown_ms(s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms)
    bound = "any latency" if s.latency_bound_ms is None else f"<= {s.latency_bound_ms:g} ms"
    lines = [
        "| metric | value | target | verdict |",
        "| --- | ---: | ---: | --- |",
        f"| offered ({s.arrivals}) | {s.offered_rps:.1f} req/s ({s.scheduled} in "
        f"{s.duration_s:g} s) | | |",
        f"| sent | {s.sent} | | |",
        f"| not sent (generator cap {cap}) | {s.not_sent_cap} | | |",
        f"| not sent (client throttle) | {s.refused_client_throttle} | | |",
        f"| answered OK | {s.ok} ({s.ok_rps:.1f} req/s) | | |",
        f"| refused (queue full) | {s.refused_queue_full} | | |",
        f"| refused (queue timeout) | {s.refused_queue_timeout} | | |",
        f"| refused (admission) | {s.refused_admission} | | |",
        f"| refused (entrance) | {s.refused_entrance} | | |",
        f"| timed out (client) | {s.client_timeouts} | | |",
        f"| other failures | {s.failed} | | |",
        f"| goodput ({bound}) | {s.goodput_rps:.1f} req/s ({s.goodput_fraction:.1%} of "
        "offered) | | |",
        f"| latency p50 / p90 / p99 / max (OK) | {latency} | | |",
        f"| schedule lag p99 / max | {_shown_ms(s.lag_p99_ms, s.lag_max_ms)} | | |",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.actual} | {r.target} | {'ok' if r.passed else 'MISSED'} |")
    return "\n".join(lines)
