"""`python -m serving`: run `tritonserver` (pip binary) on a model repository until Ctrl-C.

    python -m serving --model-repository model_repository
    python -m serving --model-repository model_repository --http-port 8000 --grpc-port 8001 \
        --metrics-port 8002 --host 127.0.0.1
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.server import TritonServer, TritonServerError


@dataclass
class ServeConfig:
    model_repository: Path = Path("model_repository")
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_config_name: str | None = None
    log_verbose: int = 0
    startup_timeout: float = 300.0
    model_control_mode: str = "none"
    repository_poll_secs: int = 5
    watchdog: bool = True
    load_unused_variants: bool = False


def parse_args(argv: Sequence[str] | None = None) -> ServeConfig:
    d = ServeConfig()
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="Run the pip `tritonserver` (nvidia-pytriton) on a berth model "
        "repository, with the Python backend and berth's Python-based onnxruntime backend.",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=d.model_repository,
        help=f"the Triton model repository to serve (default: {d.model_repository})",
    )
    parser.add_argument(
        "--host",
        default=d.host,
        help="address HTTP, gRPC and metrics bind to; 0.0.0.0 exposes the server to the "
        f"network (default: {d.host}, loopback only)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=d.http_port,
        help=f"HTTP/REST port, 0 = pick a free one (default: {d.http_port})",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=d.grpc_port,
        help=f"gRPC port, 0 = pick a free one (default: {d.grpc_port})",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=d.metrics_port,
        help=f"Prometheus metrics port, 0 = pick a free one (default: {d.metrics_port})",
    )
    parser.add_argument(
        "--model-config-name",
        default=d.model_config_name,
        help="custom model configuration: each model's configs/<NAME>.pbtxt instead of "
        "config.pbtxt (e.g. `gpu`; needs a GPU build of Triton; default: config.pbtxt)",
    )
    parser.add_argument(
        "--log-verbose",
        type=int,
        default=d.log_verbose,
        help=f"tritonserver --log-verbose level (default: {d.log_verbose})",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=d.startup_timeout,
        help=f"seconds to wait for /v2/health/ready (default: {d.startup_timeout:g})",
    )
    parser.add_argument(
        "--model-control-mode",
        choices=("none", "poll"),
        default=d.model_control_mode,
        help="`poll`: watch the repository and load newly published versions while serving "
        "(zero failed requests during the switch); `none`: load it once at start-up "
        f"(default: {d.model_control_mode})",
    )
    parser.add_argument(
        "--repository-poll-secs",
        type=int,
        default=d.repository_poll_secs,
        help="with --model-control-mode poll: seconds between repository scans "
        f"(default: {d.repository_poll_secs})",
    )
    parser.add_argument(
        "--watchdog",
        action=argparse.BooleanOptionalAction,
        default=d.watchdog,
        help="restart the server on its ports when a Python-backend stub process died "
        "(Triton 24.10 leaves that model failing every request while /v2/health/ready "
        "says 200; serving/liveness.py) (default: on)",
    )
    parser.add_argument(
        "--load-unused-variants",
        action="store_true",
        help="also load the classifier variants no ensemble uses (by default only what the "
        "ensembles serve is loaded: less memory, faster start and watchdog restart; poll "
        "mode always loads the whole repository)",
    )
    args = parser.parse_args(argv)
    if args.repository_poll_secs < 1:
        parser.error("--repository-poll-secs must be >= 1")
    return ServeConfig(**vars(args))


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    server = TritonServer(
        cfg.model_repository,
        host=cfg.host,
        http_port=cfg.http_port or None,
        grpc_port=cfg.grpc_port or None,
        metrics_port=cfg.metrics_port or None,
        model_config_name=cfg.model_config_name,
        log_verbose=cfg.log_verbose,
        startup_timeout=cfg.startup_timeout,
        stdout=sys.stdout,
        model_control_mode=cfg.model_control_mode,
        repository_poll_secs=(
            cfg.repository_poll_secs if cfg.model_control_mode == "poll" else None
        ),
        watchdog=cfg.watchdog,
        load_unused_variants=cfg.load_unused_variants,
    )
    logging.basicConfig(level=logging.INFO, format="berth %(levelname)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except TritonServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(
            f"\ntritonserver ready — HTTP http://{server.http_url}  gRPC {server.grpc_url}  "
            f"metrics http://{server.metrics_url}/metrics  (repository {cfg.model_repository}); "
            "Ctrl-C stops it",
            flush=True,
        )
        while not stop.is_set():
            if not server.running():
                print("error: tritonserver exited", file=sys.stderr)
                return 1
            stop.wait(0.5)
        print("stopping tritonserver…", flush=True)
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
