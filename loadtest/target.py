"""Where a `python -m loadtest` run sends its load: `--host`, or a tritonserver it starts
on `--model-repository` (behind nginx with `--entrance-max-in-flight`) and stops
afterwards.
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
    entrance_pid: int | None = None  # nginx in front, when this run started one


@contextlib.contextmanager
def maybe_server(cfg: LoadtestConfig):
    """The target: `--host`, or a tritonserver started on `--model-repository`."""
    if cfg.model_repository is None:
        stats_url = cfg.host if cfg.protocol == "http" else cfg.stats_url
        yield Target(cfg.host, stats_url, metrics_url=cfg.metrics_url)
        return
    from serving.server import TritonServer

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            TritonServer(cfg.model_repository, container_configs=cfg.container_configs)
        )
        print(f"tritonserver: HTTP {server.http_url}, gRPC {server.grpc_url}", flush=True)
        front, entrance_pid = server, None
        if cfg.entrance_max_in_flight:
            from serving.entrance import Entrance, EntranceSettings

            settings = EntranceSettings.around(server, cfg.entrance_max_in_flight)
            front = stack.enter_context(Entrance(settings))
            entrance_pid = front.process.pid
            print(f"entrance (nginx, {settings.max_in_flight} in flight): HTTP {front.http_url}")
        host = front.grpc_url if cfg.protocol == "grpc" else front.http_url
        yield Target(host, server.http_url, server.process.pid, server.metrics_url, entrance_pid)
