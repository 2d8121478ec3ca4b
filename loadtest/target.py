"""Where a `python -m loadtest` run sends its load: `--host`, or a tritonserver it starts
on `--model-repository` and stops afterwards.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from loadtest.config import LoadtestConfig


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
