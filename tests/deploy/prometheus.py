"""A real Prometheus server (Debian's `prometheus` package) for the tests: loopback,
a free port, its own storage directory, stopped with the test."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from serving.server import free_port
from tests.deploy.manifests import tool


class Prometheus:
    """`query()` runs PromQL through the HTTP API on 127.0.0.1:`port`."""

    def __init__(self, port: int, process: subprocess.Popen, log: Path) -> None:
        self.port = port
        self.process = process
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: object) -> object:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant vector: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        data = self.api("query", query=expr, time=at)
        assert data["resultType"] == "vector", data
        return data["result"]

    def values(self, expr: str, at: float | None = None) -> dict[str, float]:
        """{model or pod label: value} of an instant query."""
        out = {}
        for series in self.query(expr, at):
            labels = series["metric"]
            key = labels.get("model") or labels.get("pod") or ""
            assert key not in out, f"{expr}: two series for {key}"
            out[key] = float(series["value"][1])
        return out

    def wait_until(self, expr: str, timeout: float = 60.0) -> list[dict]:
        """Poll until `expr` returns a series."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"no series for {expr} after {timeout:.0f} s\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def prometheus(config: dict, workdir: Path, timeout: float = 60.0) -> Iterator[Prometheus]:
    """Start `prometheus` on `config` (a prometheus.yml as a dict) in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(port, process, log)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(server.url):
            assert process.poll() is None, f"prometheus exited:\n{server.log_tail()}"
            assert time.monotonic() < deadline, f"prometheus not ready:\n{server.log_tail()}"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
