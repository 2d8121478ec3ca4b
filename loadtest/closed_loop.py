"""The closed loop of `python -m loadtest`: a headless Locust run (loadtest/locustfile.py)
against the target, its CPU and Triton's statistics, its report and its SLO gate.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from berth_core import errors
from berth_core.errors import BerthError, ServingError
from loadtest import triton_stats
from loadtest.config import CLIENTS, LoadtestConfig
from loadtest.cpu import CpuMeter
from loadtest.slo import (
    Stats,
    check,
    exit_code,
    failures_table,
    print_missed,
    read_locust_failures,
    read_locust_json,
    summary_table,
)
from loadtest.target import maybe_server

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
ROOT = LOCUSTFILE.parent.parent


@dataclass
class LocustRun:
    """One headless Locust run; `run()` returns its aggregated stats."""

    host: str
    user_class: str
    users: int = 64
    duration_s: float = 60.0
    spawn_rate: float | None = None
    processes: int | None = None
    report_dir: Path = Path("reports/loadtest")
    prefix: str = "locust"
    env: dict[str, str] = field(default_factory=dict)
    quiet: bool = False

    @property
    def csv_prefix(self) -> Path:
        return self.report_dir / self.prefix

    @property
    def json_path(self) -> Path:
        return self.report_dir / f"{self.prefix}_final.json"

    @property
    def html_path(self) -> Path:
        return self.report_dir / f"{self.prefix}.html"

    @property
    def failures_path(self) -> Path:
        return self.report_dir / f"{self.prefix}_failures.json"

    def command(self) -> list[str]:
        host = self.host if "://" in self.host else f"http://{self.host}"
        argv = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--users", str(self.users),
            "--spawn-rate", str(self.spawn_rate or self.users),
            "--run-time", f"{max(1, round(self.duration_s))}s",
            "--host", host,
            "--csv", str(self.csv_prefix),
            "--html", str(self.html_path),
            "--json-file", str(self.json_path.with_suffix("")),
            "--only-summary",
            "--stop-timeout", "5",
            "--loglevel", "WARNING",
        ]  # fmt: skip
        if self.processes:
            argv += ["--processes", str(self.processes)]
        return [*argv, self.user_class]

    def run(self, meter: CpuMeter | None = None) -> Stats:
        """Run Locust to completion; with `meter`, its process tree is watched as
        "load generator"."""
        self.report_dir.mkdir(parents=True, exist_ok=True)
        # A report dir used before keeps the last run's files: a Locust that dies before
        # writing its own must not pass off those as this run's.
        for stale in (self.json_path, self.failures_path):
            stale.unlink(missing_ok=True)
        env = {**os.environ, **self.env, "BERTH_FAILURES_FILE": str(self.failures_path)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        stdout = subprocess.DEVNULL if self.quiet else None
        proc = subprocess.Popen(self.command(), env=env, cwd=ROOT, stdout=stdout)
        if meter is not None:
            meter.watch("load generator", proc.pid)
        try:
            # Locust stops itself at --run-time; a wedged run is cut off a minute later.
            proc.wait(timeout=self.duration_s + 60)
        except subprocess.TimeoutExpired:
            print("loadtest: locust did not stop in time; terminating it", file=sys.stderr)
        finally:
            stop_process(proc, grace_s=15)
        # Locust exits 1 when any request failed; only a missing report is our error.
        if not self.json_path.is_file():
            raise RuntimeError(f"locust exited with {proc.returncode} and wrote no stats")
        return read_locust_json(self.json_path)


def stop_process(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM `proc` if it still runs; SIGKILL it if it outlives `grace_s` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_env(cfg: LoadtestConfig) -> dict[str, str]:
    env = {
        "BERTH_MODEL": cfg.model,
        "BERTH_PROTOCOL": cfg.protocol,
        "BERTH_SCENARIO": cfg.scenario,
        "BERTH_TIMEOUT": str(cfg.timeout),
    }
    if cfg.texts:
        env["BERTH_TEXTS"] = str(Path(cfg.texts).resolve())
    if cfg.pace_rps:
        env["BERTH_USER_RPS"] = str(cfg.pace_rps / cfg.users)
    if cfg.repeat_zipf:
        env["BERTH_ZIPF"] = str(cfg.repeat_zipf)
    return env


def locust_run(cfg: LoadtestConfig, host: str) -> LocustRun:
    processes = cfg.processes
    if processes is not None and processes < 0:
        processes = os.cpu_count() or 1
    return LocustRun(
        host=host,
        user_class=CLIENTS[cfg.client][0],
        users=cfg.users,
        duration_s=cfg.duration,
        spawn_rate=cfg.spawn_rate,
        processes=processes,
        report_dir=cfg.report_dir,
        env=run_env(cfg),
    )


class LocustError(ServingError):
    """Locust ran but wrote no stats."""


@dataclass
class Outcome:
    """A finished run: Locust's stats, the CPU it took, Triton's own statistics."""

    run: LocustRun
    stats: Stats
    meter: CpuMeter
    triton: dict[str, dict]
    wall_s: float
    server_pid: int | None


def measure(cfg: LoadtestConfig) -> Outcome:
    """Run Locust against the target, watching CPU and Triton's per-model statistics
    (HTTP port only: they show where the time went). LocustError: Locust wrote no stats."""
    with maybe_server(cfg) as target:
        run = locust_run(cfg, target.host)
        print(f"$ {' '.join(run.command())}", flush=True)
        before = triton_stats.snapshot(target.stats_url) if target.stats_url else {}
        started = time.monotonic()
        meter = CpuMeter()
        if target.server_pid:
            meter.watch("server", target.server_pid)
        try:
            with meter:
                stats = run.run(meter)
        except RuntimeError as exc:
            raise LocustError(str(exc)) from exc
        after = triton_stats.snapshot(target.stats_url) if before else {}
    triton = triton_stats.delta(before, after) if after else {}
    return Outcome(run, stats, meter, triton, time.monotonic() - started, target.server_pid)


def report(cfg: LoadtestConfig, outcome: Outcome, results: list) -> None:
    print(
        f"\n{cfg.model} [{cfg.scenario}] via {cfg.client}/{cfg.protocol}, "
        f"{cfg.users} users, {outcome.wall_s:.0f} s wall\n"
    )
    print(summary_table(outcome.stats, results))
    cpu = f"| load generator CPU | {outcome.meter.cores('load generator'):.2f} cores | | |"
    if outcome.server_pid:
        cpu += f"\n| server CPU | {outcome.meter.cores('server'):.2f} cores | | |"
    print(cpu)
    failures = read_locust_failures(outcome.run.failures_path)
    if failures:
        print("\nFailures by message:\n")
        print(failures_table(failures))
    if outcome.triton:
        print("\nInside Triton during the run (/v2/models/stats):\n")
        print(triton_stats.table(outcome.triton))
    run = outcome.run
    print(f"\nreports: {run.html_path}, {run.csv_prefix}_stats.csv, {run.json_path}")
    print_missed(results)


def main_closed_loop(cfg: LoadtestConfig) -> int:
    """The default mode: the Locust run, its report, its SLO gate."""
    try:
        outcome = measure(cfg)
    except BerthError as exc:
        return errors.report(exc, "loadtest")
    results = check(outcome.stats, cfg.slo)
    report(cfg, outcome, results)
    return 0 if cfg.no_slo else exit_code(results)
