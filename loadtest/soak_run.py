"""`python -m loadtest --soak 30m`: the open loop for a long run at a rate given or
probed (a short closed loop), sampled every interval (loadtest.soak), its report
(soak.json, soak.csv) and its gate.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from berth_core import errors
from berth_core.errors import BerthError, ServingError
from loadtest import open_loop, soak
from loadtest.closed_loop import LocustError, locust_run
from loadtest.config import LoadtestConfig
from loadtest.open_loop import OpenLoopSettings, OpenLoopSummary
from loadtest.open_loop_run import open_loop_requests, open_loop_settings
from loadtest.slo import exit_code, print_missed
from loadtest.soak import DEFAULT_LOAD
from loadtest.target import maybe_server


def probe_capacity(cfg: LoadtestConfig, host: str) -> float:
    """OK answers a second of a closed loop of --users over --duration (Locust, the
    fast client: the soak's request bodies). LocustError: it wrote no stats;
    ServingError: nothing was answered."""
    probe = dataclasses.replace(cfg, client="fast")
    run = dataclasses.replace(locust_run(probe, host), prefix="soak_probe", quiet=True)
    print(f"capacity probe: {cfg.users} closed-loop users for {cfg.duration:g} s", flush=True)
    try:
        stats = run.run()
    except RuntimeError as exc:
        raise LocustError(str(exc)) from exc
    capacity = stats.rps
    failed = f"{stats.failures} failed of {stats.requests}"
    print(f"capacity probe: {capacity:.1f} req/s OK (p99 {stats.p99_ms:g} ms, {failed})")
    if not capacity > 0:
        raise ServingError("the capacity probe got no answer; give --arrival-rate")
    return capacity


def soak_rate(cfg: LoadtestConfig, host: str) -> tuple[float, str]:
    """The soak's arrival rate and where it came from: --arrival-rate, or --soak-load of
    the capacity `probe_capacity` measures."""
    if cfg.arrival_rate is not None:
        return cfg.arrival_rate, "--arrival-rate"
    load = DEFAULT_LOAD if cfg.soak_load is None else cfg.soak_load
    capacity = probe_capacity(cfg, host)
    source = (
        f"{load:.0%} of {capacity:.1f} req/s, the OK answers a second of {cfg.users} "
        f"closed-loop users over {cfg.duration:g} s"
    )
    return load * capacity, source


@dataclass
class SoakOutcome:
    """A finished soak: the whole run's figures, one sample an interval, their trend."""

    settings: OpenLoopSettings
    summary: OpenLoopSummary
    samples: list[soak.SoakSample]
    trend: soak.Trend
    rate_source: str
    server_pid: int
    pid_source: str
    wall_s: float


def show_row(sample: soak.SoakSample) -> None:
    print(soak.table_row(sample), flush=True)


def measure_soak(cfg: LoadtestConfig) -> SoakOutcome:
    """Find the server's process, the rate (probing capacity if need be), then the open
    loop for --soak with a Sampler printing one row an interval."""
    bodies, pick = open_loop_requests(cfg)
    with maybe_server(cfg) as target:
        pid, pid_source = soak.server_process(target.server_pid, cfg.server_pid, target.host)
        rate, rate_source = soak_rate(cfg, target.host)
        settings = open_loop_settings(cfg, target.host, rate, float(cfg.soak or 0))
        print(
            f"soak: {rate:.1f} req/s ({rate_source}) to {settings.url} for "
            f"{settings.duration_s:g} s; sampling pid {pid} ({pid_source}) and its "
            f"descendants every {cfg.soak_interval:g} s\n\n{soak.table_header()}",
            flush=True,
        )

        def sampler(tally: open_loop.Tally) -> soak.Sampler:
            return soak.Sampler(tally, pid, cfg.soak_interval, target.metrics_url, show_row)

        started = time.monotonic()
        tally, samples = soak.run_soak(settings, bodies, pick, sampler)
        wall_s = time.monotonic() - started
    summary = open_loop.summarize(tally, settings.duration_s, cfg.p99_ms, settings.arrivals)
    trend = soak.trend(samples, cfg.soak_max_growth)
    return SoakOutcome(settings, summary, samples, trend, rate_source, pid, pid_source, wall_s)


def soak_report(cfg: LoadtestConfig, outcome: SoakOutcome, results: list) -> Path:
    """Print the run's table and the trend; write soak.json and soak.csv; → the JSON."""
    print(f"\n{cfg.model} [{cfg.scenario}] soak, {outcome.wall_s:.0f} s wall\n")
    print(open_loop.summary_table(outcome.summary, results, outcome.settings.max_in_flight))
    print(f"\n{soak.trend_table(outcome.trend)}")
    path = Path(cfg.report_dir) / "soak.json"
    soak.write_csv(path.with_suffix(".csv"), outcome.samples)
    record = {
        "settings": outcome.settings.__dict__,
        "rate_source": outcome.rate_source,
        "model": cfg.model,
        "scenario": cfg.scenario,
        "interval_s": cfg.soak_interval,
        "server_pid": outcome.server_pid,
        "server_pid_source": outcome.pid_source,
        "samples": [dataclasses.asdict(s) for s in outcome.samples],
        "trend": outcome.trend.as_dict(),
        "summary": outcome.summary.as_dict(),
        "slo": [r.__dict__ for r in results],
        "wall_s": outcome.wall_s,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nreports: {path}, {path.with_suffix('.csv')}")
    print_missed(results)
    return path


def main_soak(cfg: LoadtestConfig) -> int:
    """`--soak`: the sampled open loop, its report, its gate (the trend, the server's
    stubs, and the open loop's own SLOs)."""
    try:
        outcome = measure_soak(cfg)
    except BerthError as exc:
        return errors.report(exc, "loadtest")
    results = [
        *soak.check(outcome.trend, outcome.samples),
        *open_loop.check(outcome.summary, cfg.min_goodput, cfg.target_rps, cfg.max_failure_rate),
    ]
    soak_report(cfg, outcome, results)
    return 0 if cfg.no_slo else exit_code(results)
