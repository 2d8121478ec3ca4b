"""Soak: the open loop for a long run at a steady share of capacity, sampled every
interval, to show that the server's memory, file descriptors, throughput and latency
stay flat (a benchmark, not a CI test: `python -m loadtest --soak 30m`).

Every `interval_s` a thread of its own (off the event loop: sends keep their schedule)
records the RSS and open file descriptors summed over the tritonserver process tree
(Python-backend stubs included), its live stubs, and what the open loop's Tally gained
in that interval: OK answers a second, their p99 latency, refusals and failures; with a
metrics endpoint, Triton's pending requests. RSS is summed per process, so pages the
stubs share are counted once per stub: a constant offset, not a trend.

The trend is a least-squares line through the samples after the warm-up (the first
10 % of the intervals, at least one: allocators, arenas and connection pools fill
then). RSS or descriptors rising by more than `max_growth` of the line's starting value
over that window is "growing"; otherwise "flat".
"""

from __future__ import annotations

import asyncio
import csv
import math
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import psutil

from berth_core.errors import InputError
from loadtest.open_loop import OpenLoop, OpenLoopSettings, Tally, percentile
from loadtest.slo import SLOResult
from serving.liveness import SERVER_COMM, STUB_COMM

DEFAULT_LOAD = 0.7  # share of the measured capacity a soak offers
MAX_GROWTH = 0.05  # RSS or descriptors: growth over the trend window / starting value
WARMUP_FRACTION = 0.1  # of the intervals left out of the trend (at least one)
MIN_INTERVALS = 3  # one of warm-up, two for a trend line
PENDING = "nv_inference_pending_request_count"
FLAT, GROWING, TOO_SHORT = "flat", "growing", "too short"


# ----------------------------------------------------------------- the server's processes


@dataclass(frozen=True)
class TreeSample:
    """One look at a process tree, summed over its live processes (zombies excluded)."""

    rss_bytes: int
    fds: int
    processes: int
    stubs: int  # live Python-backend stub processes


def _one(process: psutil.Process) -> tuple[int, int, bool] | None:
    """(RSS, descriptors, is a stub) of a live process; None when gone or a zombie."""
    try:
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            rss, fds = process.memory_info().rss, process.num_fds()
            return rss, fds, process.name().startswith(STUB_COMM)
    except psutil.Error:
        return None


def sample_tree(pid: int) -> TreeSample:
    """RSS, open descriptors, live processes and stubs of `pid` and all its descendants
    (psutil: a handful of /proc reads each). A process that exits meanwhile counts
    nothing; the root gone: all zero."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return TreeSample(0, 0, 0, 0)
    seen = [one for one in map(_one, tree) if one is not None]
    return TreeSample(
        rss_bytes=sum(rss for rss, _, _ in seen),
        fds=sum(fds for _, fds, _ in seen),
        processes=len(seen),
        stubs=sum(stub for _, _, stub in seen),
    )


def _listens_on(process: psutil.Process, port: int) -> bool:
    connections = getattr(process, "net_connections", None) or process.connections
    try:
        listening = connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in listening)


def find_listener(port: int, name: str = SERVER_COMM) -> int | None:
    """The PID of a process called `name` listening on TCP `port` on this machine (one
    this user may inspect); None when there is none."""
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == name and _listens_on(process, port):
            return process.pid
    return None


def host_port(host: str) -> int:
    """The port of HOST:PORT or a URL. InputError: none given."""
    port = urllib.parse.urlsplit(host if "://" in host else f"http://{host}").port
    if port is None:
        raise InputError(f"--host {host} names no port to find the server by; give --server-pid")
    return port


def server_process(started: int | None, given: int | None, host: str) -> tuple[int, str]:
    """(PID of the server's root process, how it was found): the one this run started,
    `--server-pid`, or the tritonserver listening on `host`'s port. InputError: none."""
    if started is not None:
        return started, "started for the run"
    if given is not None:
        if not psutil.pid_exists(given):
            raise InputError(f"--server-pid {given}: no such process on this machine")
        return given, "--server-pid"
    port = host_port(host)
    pid = find_listener(port)
    if pid is None:
        raise InputError(
            f"no {SERVER_COMM} process of this user listens on port {port} here: the soak "
            "samples the server's processes, so it runs on the server's machine; give "
            "--server-pid PID or --model-repository DIR"
        )
    return pid, f"the {SERVER_COMM} listening on port {port}"


def parse_pending(text: str) -> float | None:
    """Triton's pending requests summed over its models, from the Prometheus text of
    its metrics endpoint; None without that metric."""
    values = [
        float(line.rsplit(None, 1)[1])
        for line in text.splitlines()
        if line.startswith((PENDING + "{", PENDING + " "))
    ]
    return sum(values) if values else None


def pending_requests(metrics_url: str, timeout: float = 2.0) -> float | None:
    """`parse_pending` of GET /metrics on `metrics_url` (HOST:PORT); None when
    unreachable."""
    base = metrics_url if "://" in metrics_url else f"http://{metrics_url}"
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/metrics", timeout=timeout) as r:
            return parse_pending(r.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------- one sample an interval


@dataclass(frozen=True)
class Mark:
    """A Tally's counters at one moment; its lists only grow, their lengths mark them."""

    at: float  # time.monotonic()
    ok: int
    refused: int  # queue full, queue timeout, admission and entrance
    timeouts: int
    failed: int
    not_sent: int

    @classmethod
    def of(cls, tally: Tally, at: float) -> Mark:
        return cls(
            at=at,
            ok=len(tally.latencies),
            refused=tally.refusals,
            timeouts=tally.client_timeouts,
            failed=tally.failed,
            not_sent=tally.not_sent,
        )


@dataclass(frozen=True)
class SoakSample:
    """One interval: the server's process tree at its end, the answers within it."""

    t_s: float  # from the start of the run to this sample
    rss_mb: float
    fds: int
    processes: int
    stubs: int
    ok_rps: float  # answered OK in the interval, a second
    p99_ms: float | None  # of the interval's OK answers
    refused: int  # queue full, queue timeout or admission
    timeouts: int  # client timeouts
    failed: int  # other failures
    not_sent: int  # generator cap
    pending: float | None  # Triton's pending requests, summed over models


def interval_sample(
    tally: Tally, before: Mark, now: Mark, start: float, tree: TreeSample, pending: float | None
) -> SoakSample:
    """The sample of the interval from `before` to `now`."""
    seconds = max(now.at - before.at, 1e-9)
    p99 = percentile(sorted(tally.latencies[before.ok : now.ok]), 0.99)
    return SoakSample(
        t_s=round(now.at - start, 3),
        rss_mb=round(tree.rss_bytes / 2**20, 3),
        fds=tree.fds,
        processes=tree.processes,
        stubs=tree.stubs,
        ok_rps=round((now.ok - before.ok) / seconds, 3),
        p99_ms=None if p99 is None else round(p99 * 1000.0, 3),
        refused=now.refused - before.refused,
        timeouts=now.timeouts - before.timeouts,
        failed=now.failed - before.failed,
        not_sent=now.not_sent - before.not_sent,
        pending=pending,
    )


class Sampler:
    """Takes a SoakSample every `interval_s` (from `start()`) in a daemon thread until
    stopped: psutil and one HTTP GET, never on the open loop's event loop. `stop()`
    samples the run's last interval too when at least half of it has passed: a run of
    N intervals often ends just before the thread's N-th sample is due."""

    def __init__(
        self,
        tally: Tally,
        pid: int,
        interval_s: float,
        metrics_url: str | None = None,
        on_sample: Callable[[SoakSample], None] | None = None,
    ) -> None:
        self.tally, self.pid, self.interval_s = tally, pid, interval_s
        self.metrics_url = metrics_url
        self.on_sample = on_sample
        self.samples: list[SoakSample] = []
        self.started = 0.0
        self._last: Mark | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self.started = time.monotonic()
        self._last = Mark.of(self.tally, self.started)
        self._thread = threading.Thread(target=self._run, name="berth-soak", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._last is not None and time.monotonic() - self._last.at >= self.interval_s / 2:
            self.take()

    def _run(self) -> None:
        due = self.started + self.interval_s
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self.take()
            while due <= time.monotonic():  # a late sample does not bunch the next ones
                due += self.interval_s

    def take(self) -> SoakSample:
        """Sample now: the tree, the pending requests, the Tally since the last one."""
        assert self._last is not None, "start() first"
        tree = sample_tree(self.pid)
        pending = pending_requests(self.metrics_url) if self.metrics_url else None
        now = Mark.of(self.tally, time.monotonic())
        sample = interval_sample(self.tally, self._last, now, self.started, tree, pending)
        self._last = now
        self.samples.append(sample)
        if self.on_sample is not None:
            self.on_sample(sample)
        return sample

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_soak(
    settings: OpenLoopSettings,
    bodies: Sequence[tuple[bytes, dict]],
    pick: Callable[[], int],
    sampler: Callable[[Tally], Sampler],
) -> tuple[Tally, list[SoakSample]]:
    """The open loop of `settings` (loadtest.open_loop.OpenLoop, unchanged) with the
    Sampler `sampler(tally)` builds watching it from its start to its last answer."""
    loop = OpenLoop(settings, bodies, pick)
    with sampler(loop.tally) as watching:
        tally = asyncio.run(loop.run())
    return tally, watching.samples


# ----------------------------------------------------------------- the trend


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of `ys` over `xs`; 0 without two distinct xs."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


@dataclass(frozen=True)
class Line:
    """A least-squares line over the trend window: its value at the window's start, its
    slope an hour, and its rise over the window as a fraction of that start."""

    start: float
    per_h: float
    growth: float


def fit(hours: Sequence[float], values: Sequence[float]) -> Line:
    per_h = slope(hours, values)
    if not hours:
        return Line(0.0, 0.0, 0.0)
    mean_h, mean_v = sum(hours) / len(hours), sum(values) / len(values)
    start = mean_v + per_h * (hours[0] - mean_h)
    rise = per_h * (hours[-1] - hours[0])
    growth = rise / start if start > 0 else (math.inf if rise > 0 else 0.0)
    return Line(start, per_h, growth)


def warmup_intervals(count: int) -> int:
    """Intervals left out of the trend: the first 10 %, at least one."""
    return max(1, int(count * WARMUP_FRACTION))


@dataclass(frozen=True)
class Trend:
    """RSS (MB) and descriptors over the samples after the warm-up; throughput and p99
    latency alongside (shown, not judged)."""

    warmup: int
    points: int
    window_h: float
    rss_mb: Line
    fds: Line
    ok_rps: Line
    p99_ms: Line
    max_growth: float

    @property
    def verdict(self) -> str:
        if self.points < 2:
            return TOO_SHORT
        rising = max(self.rss_mb.growth, self.fds.growth) > self.max_growth
        return GROWING if rising else FLAT

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def trend(samples: Sequence[SoakSample], max_growth: float = MAX_GROWTH) -> Trend:
    """The trend of `samples` after the warm-up intervals."""
    warmup = warmup_intervals(len(samples))
    window = samples[warmup:]
    hours = [s.t_s / 3600.0 for s in window]
    timed = [(s.t_s / 3600.0, s.p99_ms) for s in window if s.p99_ms is not None]
    return Trend(
        warmup=warmup,
        points=len(window),
        window_h=hours[-1] - hours[0] if hours else 0.0,
        rss_mb=fit(hours, [s.rss_mb for s in window]),
        fds=fit(hours, [float(s.fds) for s in window]),
        ok_rps=fit(hours, [s.ok_rps for s in window]),
        p99_ms=fit([h for h, _ in timed], [p for _, p in timed]),
        max_growth=max_growth,
    )


def check(t: Trend, samples: Sequence[SoakSample]) -> list[SLOResult]:
    """RSS and descriptors flat (loadtest.slo's conventions: too short a run fails), and
    the server alive with all its stubs in every interval."""
    target = f"<= {t.max_growth:.0%} over {span(t.window_h)}"
    results = []
    for name, line, unit in (("RSS trend", t.rss_mb, "MB"), ("fd trend", t.fds, "fds")):
        if t.verdict == TOO_SHORT:
            actual = f"{t.points} interval(s) after {t.warmup} of warm-up: no trend"
        else:
            actual = f"{line.growth:+.1%} ({line.per_h:+.2f} {unit}/h from {line.start:.0f})"
        passed = t.verdict != TOO_SHORT and line.growth <= t.max_growth
        results.append(SLOResult(name, target, actual, passed))
    first = samples[0].stubs if samples else 0
    fewest = min((s.stubs for s in samples), default=0)
    alive = bool(samples) and all(s.processes > 0 for s in samples)
    actual = f"{fewest} stubs at the fewest" + ("" if alive else ", the server gone")
    passed = alive and fewest >= first
    results.append(SLOResult("server and stubs", f">= {first} stubs, alive", actual, passed))
    return results


# ----------------------------------------------------------------- reports


COLUMNS = ("t", "RSS MB", "fds", "procs", "stubs", "OK req/s", "p99 ms", "refused",
           "timeouts", "failed", "not sent", "pending")  # fmt: skip


def table_header() -> str:
    return "| " + " | ".join(COLUMNS) + " |\n|" + " ---: |" * len(COLUMNS)


def _shown(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def table_row(s: SoakSample) -> str:
    cells = (f"{s.t_s:,.0f} s", _shown(s.rss_mb, 1), s.fds, s.processes, s.stubs,
             _shown(s.ok_rps, 1), _shown(s.p99_ms, 1), s.refused, s.timeouts, s.failed,
             s.not_sent, _shown(s.pending, 0))  # fmt: skip
    return "| " + " | ".join(map(str, cells)) + " |"


def span(hours: float) -> str:
    """A window's length as read: 45 s, 26 min, 1.5 h."""
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.0f} min" if hours < 2 else f"{hours:.1f} h"


def trend_table(t: Trend) -> str:
    """The fitted lines, one row each, and the verdict."""
    rows = [
        ("RSS", t.rss_mb, " MB"),
        ("open fds", t.fds, ""),
        ("OK req/s", t.ok_rps, ""),
        ("p99 latency", t.p99_ms, " ms"),
    ]
    lines = [
        f"Trend over {t.points} intervals ({span(t.window_h)}) after {t.warmup} of warm-up:",
        "",
        "| series | start | slope | over the window |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, line, unit in rows:
        growth = f"{line.growth:+.1%}" if math.isfinite(line.growth) else "from 0"
        lines.append(
            f"| {name} | {line.start:,.1f}{unit} | {line.per_h:+,.2f}{unit}/h | {growth} |"
        )
    lines.append(
        f"\nverdict: {t.verdict} (threshold: RSS and open fds may each rise by "
        f"{t.max_growth:.0%} of their start over the window)"
    )
    return "\n".join(lines)


def write_csv(path: Path, samples: Sequence[SoakSample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[field.name for field in fields(SoakSample)])
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
