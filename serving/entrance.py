"""The entrance: nginx in front of tritonserver, refusing inference requests beyond a
number in flight before Triton parses them.

Under open-loop overload every refusal Triton gives costs the server an HTTP parse, an
ensemble step and (for the tokenizer's admission bucket) a Python-backend round trip;
at 5x capacity on 2 cores goodput fell to 63-73 % of capacity that way. nginx refuses
for a few microseconds of C instead, and the admitted requests keep the cores: 94 % of
capacity or more in every round (RELIABILITY.md, "The entrance").

It limits requests in flight, not a rate: a server at capacity with N requests in
flight answers them within N / capacity seconds, whatever the capacity is that minute,
so no rate has to be measured and kept up to date (nginx `limit_conn`; over HTTP/2
each stream counts). Only inference is limited (HTTP `POST .../infer`, gRPC
`ModelInfer`); health, metadata, statistics and metrics always pass, so probes never
fail because the server is busy. A refusal is HTTP 503 with Triton's JSON error body,
or gRPC UNAVAILABLE, its message starting with `berth_core.admission.ENTRANCE_REFUSAL`,
which berth-client retries (and throttles on) like Triton's own refusals.

    with TritonServer(repo) as server, Entrance(EntranceSettings.around(server, 48)) as e:
        e.http_url, e.grpc_url, e.metrics_url   # where clients connect

`python -m serving --entrance-max-in-flight N` runs the same, Triton on loopback only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from berth_core.admission import ENTRANCE_REFUSAL
from berth_core.errors import ServingError
from serving.server import free_ports, reachable

INSTALL_HINT = "install nginx (Debian/Ubuntu: apt-get install nginx)"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
TEMP_DIRS = ("proxy", "fastcgi", "uwsgi", "scgi")  # unused but created by nginx


class EntranceError(ServingError):
    """nginx is missing, refused its configuration or did not start."""


@dataclass(frozen=True)
class EntranceSettings:
    """Where clients connect (`host`, the ports) and the server behind it. Without a
    `metrics_port` the entrance leaves metrics alone (Prometheus scrapes Triton)."""

    max_in_flight: int
    upstream_http: str  # HOST:PORT of Triton's endpoints
    upstream_grpc: str
    upstream_metrics: str | None = None
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise EntranceError(
                f"the entrance needs max_in_flight >= 1 request, got {self.max_in_flight}"
            )

    @classmethod
    def around(cls, server, max_in_flight: int, **listen) -> EntranceSettings:
        """In front of a started `TritonServer`; `listen`: host and ports (default: free
        ports on loopback)."""
        ports = iter(free_ports(3, listen.get("host", "127.0.0.1")))
        for key in ("http_port", "grpc_port", "metrics_port"):
            listen[key] = listen.get(key) or next(ports)
        return cls(
            max_in_flight,
            server.http_url,
            server.grpc_url,
            server.metrics_url,
            **listen,
        )

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(p for p in (self.http_port, self.grpc_port, self.metrics_port) if p)

    def refusal(self) -> str:
        return (
            f"{ENTRANCE_REFUSAL}: {self.max_in_flight} requests already in flight, the "
            "limit of this server (at capacity); retry with backoff"
        )


def render(settings: EntranceSettings, *, prefix: Path, error_log: str | None = None) -> str:
    """nginx.conf for `settings`: temporary files and pid under `prefix`, the log there
    too unless `error_log` names another (`stderr` in a container)."""
    s = settings
    refusal = s.refusal()
    temp_paths = "".join(f"  {name}_temp_path {prefix / name};\n" for name in TEMP_DIRS)
    return f"""\
# berth's entrance (serving/entrance.py): at most {s.max_in_flight} inference requests in flight.
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {error_log or prefix / "error.log"} warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_max_body_size 0;
  client_body_buffer_size 1m;
  client_body_temp_path {prefix / "body"};
{temp_paths}  keepalive_requests 1000000;
  # one counter for HTTP and gRPC together: the server's cores are shared
  map $host $entrance {{ default entrance; }}
  limit_conn_zone $entrance zone=in_flight:1m;
  limit_conn_status 503;
  limit_conn_log_level info;
  upstream triton_http {{ server {s.upstream_http}; keepalive {max(32, s.max_in_flight)}; }}
  upstream triton_grpc {{ server {s.upstream_grpc}; keepalive 32; }}
  server {{
    listen {s.host}:{s.http_port} backlog=4096;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    location ~ /infer$ {{
      limit_conn in_flight {s.max_in_flight};
      error_page 503 = @refused;
      proxy_pass http://triton_http;
    }}
    location / {{ proxy_pass http://triton_http; }}
    location @refused {{
      default_type application/json;
      return 503 '{{"error":"{refusal}"}}';
    }}
  }}
  server {{
    listen {s.host}:{s.grpc_port} http2 backlog=4096;
    location = {GRPC_INFER} {{
      limit_conn in_flight {s.max_in_flight};
      error_page 503 = @refused;
      grpc_pass grpc://triton_grpc;
    }}
    location / {{ grpc_pass grpc://triton_grpc; }}
    location @refused {{
      default_type application/grpc;
      add_header grpc-status 14 always;
      add_header grpc-message "{refusal}" always;
      return 204;
    }}
  }}
{_metrics_server(s)}}}
"""


def _metrics_server(s: EntranceSettings) -> str:
    if s.metrics_port is None:
        return ""
    return f"""\
  server {{
    listen {s.host}:{s.metrics_port};
    location / {{ proxy_pass http://{s.upstream_metrics}; }}
  }}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise EntranceError(f"the entrance runs nginx, which is not installed: {INSTALL_HINT}")
    return found


class Entrance:
    """nginx running `render(settings)` until `stop()`; a context manager. Started, it
    accepts connections on all its ports."""

    def __init__(self, settings: EntranceSettings, startup_timeout: float = 10.0) -> None:
        self.settings = settings
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    def _url(self, port: int) -> str:
        return f"{reachable(self.settings.host)}:{port}"

    @property
    def http_url(self) -> str:
        return self._url(self.settings.http_port)

    @property
    def grpc_url(self) -> str:
        return self._url(self.settings.grpc_port)

    @property
    def metrics_url(self) -> str:
        """Triton's own metrics endpoint where the entrance does not proxy them."""
        if self.settings.metrics_port is None:
            return str(self.settings.upstream_metrics)
        return self._url(self.settings.metrics_port)

    def start(self) -> Entrance:
        binary = nginx_binary()
        self._tmp = tempfile.TemporaryDirectory(prefix="berth-entrance-")
        prefix = Path(self._tmp.name)
        conf = prefix / "nginx.conf"
        _prepare(prefix)
        conf.write_text(render(self.settings, prefix=prefix))
        try:
            self._check(binary, conf)
            with open(prefix / "stderr.log", "wb") as stderr:  # a pipe nobody reads could fill
                self.process = subprocess.Popen(
                    [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,
                )
            self._wait_listening(prefix)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _check(binary: str, conf: Path) -> None:
        done = subprocess.run(
            [binary, "-t", "-q", "-p", str(conf.parent), "-c", str(conf)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise EntranceError(f"nginx refused the entrance's configuration: {done.stderr}")

    def _wait_listening(self, prefix: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout
        ports = self.settings.ports
        while not all(_accepts(self.settings.host, port) for port in ports):
            assert self.process is not None
            if self.process.poll() is not None:
                logs = [prefix / "stderr.log", prefix / "error.log"]
                said = "".join(p.read_text(errors="replace") for p in logs if p.exists())
                raise EntranceError(f"nginx exited ({self.process.returncode}): {said}")
            if time.monotonic() > deadline:
                raise EntranceError(f"nginx did not listen on {ports} in {self.startup_timeout} s")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Entrance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _prepare(prefix: Path) -> None:
    """Run as root, nginx's master hands its workers to an unprivileged user (and chowns
    the temporary-file directories to it): they must reach `prefix`."""
    if os.geteuid() == 0:
        prefix.chmod(0o711)


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((reachable(host), port)) == 0
