"""Run the real `tritonserver` without Docker, on a CPU machine.

The `nvidia-pytriton` wheel ships the Triton 2.51.0 (24.10) server binary, its shared
libraries, the Python backend and the Python-backend stubs. This module starts that
binary directly (PyTriton's own Python API is not used) with a backend directory it
builds itself:

    <backend-dir>/python/        libtriton_python.so, triton_python_backend_utils.py and
                                 the stub for this interpreter's Python version
    <backend-dir>/onnxruntime/   model.py: berth's Python onnxruntime runner
                                 (serving/onnx_runner/model.py), a stand-in for the
                                 native backend under its name, used by every model
                                 whose config says `backend: "onnxruntime"`, and the
                                 berth_core and conformance packages it imports

Two layouts of one published repository:

- the pip layout (default): each model's `configs/pip.pbtxt` (`--model-config-name=pip`),
  where the runner batches ragged requests and aggregates windows in the classifier;
- the container layout (`container_configs=True`, `python -m serving
  --container-configs`): the default `config.pbtxt` files, exactly what the stock NVIDIA
  container serves, with the runner strict (`BERTH_RUNNER_STRICT=1`): it refuses at load
  time what the native onnxruntime backend refuses (serving/conformance).

Python API (tests, the client and the load test use it)::

    from serving.server import TritonServer

    with TritonServer(Path("model_repository")) as server:   # free ports, loopback
        print(server.http_url, server.grpc_url, server.metrics_url)
        ...                                                   # "127.0.0.1:PORT"

Leaving the block (or `stop()`) terminates the server and all its children (Python
backend stub processes included): the server runs in its own process group.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

import berth_core
from berth_core.errors import ServingError
from berth_core.names import PIP_CONFIG_NAME, STRICT_RUNNER_ENV
from berth_core.traffic_sample import SampleConfig
from serving.liveness import dead_stubs, known_stub_processes, live_stubs, stub_processes
from serving.model_control import (
    HEADER,
    ModelControl,
    ModelControlError,
    equivalent_config,
)
from serving.served_models import served_view

log = logging.getLogger(__name__)

BERTH_BACKEND_SOURCE = Path(__file__).resolve().parent / "onnx_runner" / "model.py"
CONFORMANCE_SOURCE = Path(__file__).resolve().parent / "conformance"


class TritonServerError(ServingError):
    """The server could not be started or did not become ready."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError(
            f"package {name!r} is not installed; `pip install nvidia-pytriton==0.7.0` "
            "(see requirements.txt)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def triton_home() -> Path:
    """`pytriton/tritonserver` inside the installed `nvidia-pytriton` wheel."""
    return _package_dir("pytriton") / "tritonserver"


def triton_binary() -> Path:
    return triton_home() / "bin" / "tritonserver"


def triton_libs() -> Path:
    """The wheel's bundled shared libraries (`nvidia_pytriton.libs`)."""
    return _package_dir("pytriton").parent / "nvidia_pytriton.libs"


def check_stub_numpy(paths: list[str] | None = None) -> None:
    """Refuse numpy 2 in the environment the Python-backend stub imports from (this
    environment's site-packages: the stub finds them through `PATH`, see `server_env`).

    The wheel's stubs (Triton 24.10) are built against numpy 1: under numpy 2 a stub
    crashes on its first string input (`deserialize_bytes_tensor`: "unpack_from requires
    a buffer of at least N bytes") or rejects outputs ("output tensor shape does not
    match size of output"); the server then answers every request with a 500. Failing
    before the start says why."""
    if paths is None:
        paths = list(dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib")))
    for dist in importlib.metadata.distributions(name="numpy", path=paths):
        version = dist.version
        if int(version.split(".")[0]) >= 2:
            raise TritonServerError(
                f"numpy {version} is installed in {sys.prefix}; the Python-backend stub of "
                "the pip tritonserver (Triton 24.10) needs numpy 1.x and breaks on string "
                "tensors under numpy 2: `pip install 'numpy>=1.26,<2'` in this environment "
                "(requirements.txt pins it)"
            )


def build_backend_dir(target: Path) -> Path:
    """Populate `target` with the Python backend (+ the matching stub) and berth's
    Python onnxruntime runner under the backend name `onnxruntime`. Returns `target`."""
    check_stub_numpy()
    home = triton_home()
    python_src = home / "backends" / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = home / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerError(f"no Python backend stub for Python {version} at {stub}")
    python_dst = target / "python"
    python_dst.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(python_src / name, python_dst / name)
    shutil.copy2(stub, python_dst / "triton_python_backend_stub")
    ort_dst = target / "onnxruntime"
    ort_dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BERTH_BACKEND_SOURCE, ort_dst / "model.py")
    berth_core.copy_to(ort_dst)  # model.py imports both
    shutil.copytree(
        CONFORMANCE_SOURCE,
        ort_dst / CONFORMANCE_SOURCE.name,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return target


def reachable(host: str) -> str:
    """Where a local client connects to a server bound to `host` (all addresses: loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports. All sockets stay bound until every port is picked:
    closing one before binding the next lets the kernel hand the same port out twice."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the server needs: the wheel's libraries on `LD_LIBRARY_PATH` and
    this virtual environment's `bin/` first on `PATH` (the stub finds the venv's packages
    through the `python` on `PATH`)."""
    env = dict(os.environ if base is None else base)
    libs = str(triton_libs())
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libs, env.get("LD_LIBRARY_PATH", "")) if p)
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in (venv_bin, env.get("PATH", "")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUTF8", "1")
    # Child processes of the stub must not re-read a half-written repository from cwd.
    env.setdefault("PYTHONUNBUFFERED", "1")
    # No __pycache__ inside published version directories: with --model-control-mode poll
    # Triton would see the repository change and reload every Python model once.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class TritonServer:
    """A `tritonserver` process serving `model_repository`; a context manager.

    Ports left as `None` are picked free on `host`. After `start()` (or entering the
    `with` block) the server is ready (`/v2/health/ready` answered 200) and
    `http_url`, `grpc_url`, `metrics_url` are "HOST:PORT" strings as tritonclient
    expects them. Each model's `configs/pip.pbtxt` is served where it has one (the pip
    layout); `container_configs=True` serves the default `config.pbtxt` files instead,
    as the stock container does, with berth's runner strict; `model_config_name="gpu"`
    selects each model's `configs/gpu.pbtxt`. `cache_size` (bytes, 0: none) gives Triton a
    response cache, used by models whose config enables it (`python -m export
    --response-cache`).
    `extra_args` go to the binary unchanged (e.g. `["--model-control-mode=explicit"]`).
    `exit_timeout` is Triton's `--exit-timeout-secs` (how long it waits for open client
    connections on shutdown); `stdout` (a text stream) receives the server's log lines.
    `model_control_mode="poll"` makes Triton watch the repository every
    `repository_poll_secs` seconds and load newly published versions while serving (the
    old version answers until the new one is ready: zero failed requests, see
    RELIABILITY.md); the default ("none") loads the repository once at start-up.
    `watchdog=True` repairs a dead Python-backend stub, which Triton 24.10 does not
    repair itself (`StubWatchdog`): it reloads that model, or restarts the server on the
    same ports where it cannot. With the watchdog and no `model_control_mode`, Triton
    runs in explicit mode with every model loaded at start (what mode none loads), its
    model-repository API (load, unload, index) restricted to the watchdog (`HEADER`
    with a random key). Classifier variants that no ensemble uses are not loaded unless
    `load_unused_variants=True` (`serving.served_models`; poll mode always loads the
    whole repository).
    `sample` turns on the tokenizer's opt-in text sample (`berth_core.traffic_sample`),
    its settings passed to the stub processes in their environment.
    `auto_complete_config=False` turns Triton's config auto-complete off (berth writes
    complete configs): each Python-backend model load is then 1 s shorter (`command`),
    but the first requests to a just-started server met the cold-start stall more often
    (RELIABILITY.md), so it stays on by default.
    """

    def __init__(
        self,
        model_repository: Path | str,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        model_config_name: str | None = None,
        container_configs: bool = False,
        cache_size: int = 0,
        log_verbose: int = 0,
        startup_timeout: float = 180.0,
        backend_directory: Path | str | None = None,
        extra_args: list[str] | None = None,
        exit_timeout: int = 5,
        stdout=None,
        model_control_mode: str | None = None,
        repository_poll_secs: int | None = None,
        watchdog: bool = False,
        watchdog_interval: float = 0.1,
        load_unused_variants: bool = False,
        sample: SampleConfig | None = None,
        auto_complete_config: bool = True,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        if not self.model_repository.is_dir():
            raise TritonServerError(f"model repository {self.model_repository} does not exist")
        self.host = host
        given = (http_port, grpc_port, metrics_port)
        picked = iter(p for p in free_ports(6, host) if p not in given)  # distinct, unused dropped
        self.http_port = http_port or next(picked)
        self.grpc_port = grpc_port or next(picked)
        self.metrics_port = metrics_port or next(picked)
        self.container_configs = container_configs
        if cache_size < 0:
            raise TritonServerError(f"cache_size must be >= 0 bytes, got {cache_size}")
        self.cache_size = cache_size
        # the pip layout unless the container's configs, or another one, were asked for
        self.model_config_name = model_config_name or (
            None if container_configs else PIP_CONFIG_NAME
        )
        self.log_verbose = log_verbose
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self.exit_timeout = exit_timeout
        if model_control_mode not in (None, "none", "poll", "explicit"):
            raise TritonServerError(
                f"model_control_mode must be none, poll or explicit, got {model_control_mode!r}"
            )
        if repository_poll_secs is not None and model_control_mode != "poll":
            raise TritonServerError("repository_poll_secs needs model_control_mode='poll'")
        self.model_control_mode = model_control_mode
        self.repository_poll_secs = repository_poll_secs
        self._backend_directory = Path(backend_directory) if backend_directory else None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._stdout = stdout
        self._log_tail: deque[str] = deque(maxlen=1000)
        self._reader: threading.Thread | None = None
        self._backend_dir: Path | None = None
        self._lock = threading.RLock()
        self.process: subprocess.Popen | None = None
        self._init_watchdog(watchdog, watchdog_interval)
        self.load_unused_variants = load_unused_variants
        self.sample = sample
        self.auto_complete_config = auto_complete_config
        self._view: tempfile.TemporaryDirectory | None = None

    def _init_watchdog(self, watchdog: bool, interval: float) -> None:
        self.watchdog = watchdog
        self.watchdog_interval = interval
        self._watchdog: StubWatchdog | None = None
        self.restarts = 0  # by restart(), i.e. by the watchdog
        self.reloads = 0  # models reloaded by reload_models(), i.e. by the watchdog
        self._control_key = secrets.token_hex(16)  # for the restricted model-control API

    # -- addresses -------------------------------------------------------------------
    def _url(self, port: int) -> str:
        return f"{reachable(self.host)}:{port}"

    @property
    def http_url(self) -> str:
        return self._url(self.http_port)

    @property
    def grpc_url(self) -> str:
        return self._url(self.grpc_port)

    @property
    def metrics_url(self) -> str:
        return self._url(self.metrics_port)

    @property
    def log_tail(self) -> str:
        """The last lines the server printed (for error messages)."""
        return "\n".join(self._log_tail)

    def command(self, backend_directory: Path) -> list[str]:
        cmd = [
            str(triton_binary()),
            f"--model-repository={self.served_repository}",
            f"--backend-directory={backend_directory}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--log-verbose={self.log_verbose}",
            "--allow-cpu-metrics=true",
            f"--exit-timeout-secs={self.exit_timeout}",
        ]
        if not self.auto_complete_config:
            # auto-complete starts one more stub per Python-backend model at every load
            # and then sleeps 1 s (python_backend stub_launcher.cc UpdateHealth)
            cmd.append("--disable-auto-complete-config")
        if self.model_config_name:
            cmd.append(f"--model-config-name={self.model_config_name}")
        if self.cache_size:  # the local response cache the wheel ships (caches/local)
            cmd += [
                f"--cache-config=local,size={self.cache_size}",
                f"--cache-directory={triton_home() / 'caches'}",
            ]
        if self.model_control_mode:
            cmd.append(f"--model-control-mode={self.model_control_mode}")
        elif self.watchdog:
            cmd += self._watchdog_control_args()
        if self.repository_poll_secs is not None:
            cmd.append(f"--repository-poll-secs={self.repository_poll_secs}")
        return cmd + self.extra_args

    @property
    def served_repository(self) -> Path:
        """What Triton is given: the repository, or its view without unused variants."""
        return Path(self._view.name) / "repository" if self._view else self.model_repository

    def _build_view(self) -> None:
        if self.load_unused_variants or self.model_control_mode not in (None, "none"):
            return
        self._view = tempfile.TemporaryDirectory(prefix="berth-served-")
        served_view(self.model_repository, self.served_repository, self.model_config_name)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> TritonServer:
        with self._lock:
            if self.process is not None:
                return self
            if self._backend_directory is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="berth-triton-backends-")
                self._backend_dir = build_backend_dir(Path(self._tmp.name))
            else:
                self._backend_dir = build_backend_dir(self._backend_directory)
            try:
                self._build_view()
                self._start_process()
            except BaseException:
                self._cleanup()
                raise
        if self.watchdog:
            self._watchdog = StubWatchdog(self, interval=self.watchdog_interval)
            self._watchdog.start()
        return self

    def _start_process(self) -> None:
        assert self._backend_dir is not None
        env = server_env()
        if self.container_configs:  # the runner refuses what the native backend refuses
            env[STRICT_RUNNER_ENV] = "1"
        if self.sample is not None:  # the tokenizer's stubs read it (traffic_sample)
            env.update(self.sample.environment())
        process = subprocess.Popen(
            self.command(self._backend_dir),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # own process group: stop() reaches the stubs too
        )
        self.process = process
        self._reader = threading.Thread(target=self._pump, args=(process,), daemon=True)
        self._reader.start()
        try:
            self.wait_ready(self.startup_timeout)
        except BaseException:
            self._stop_process()
            raise

    def _watchdog_control_args(self) -> list[str]:
        """Explicit mode loading every model at start, so that the watchdog can reload
        one; the API that loads (and could upload model files) only for the watchdog."""
        restricted = f"model-repository:{HEADER}={self._control_key}"
        return [
            "--model-control-mode=explicit",
            "--load-model=*",
            f"--http-restricted-api={restricted}",
            f"--grpc-restricted-protocol={restricted}",
        ]

    @property
    def can_reload(self) -> bool:
        """Triton accepts model loads: explicit mode, asked for or the watchdog's."""
        mode = self.model_control_mode
        return mode == "explicit" or (mode is None and self.watchdog)

    def model_control(self) -> ModelControl:
        return ModelControl(self.http_url, self._control_key, timeout=self.startup_timeout)

    def model_stubs(self, model: str) -> set[int]:
        """PIDs of the live Python-backend stubs serving `model`."""
        process = self.process
        if process is None:
            return set()
        return {pid for pid, stub in live_stubs(process.pid).items() if stub.model == model}

    def reload_models(self, models: list[str]) -> dict[str, set[int]]:
        """Give each of `models` new instances (new stub processes) in the running
        server (`serving.model_control`); returns each model's new stub PIDs. Raises
        ModelControlError when Triton refuses or no new stub came up."""
        with self._lock:
            if not self.can_reload:
                raise ModelControlError("the server is not in explicit model-control mode")
            control = self.model_control()
            fresh = {}
            for model in models:
                before = self.model_stubs(model)
                control.load(model, equivalent_config(control.config(model)))
                fresh[model] = self.model_stubs(model) - before
                if not fresh[model] or not control.ready(model):
                    raise ModelControlError(f"model {model!r} has no new stub after its reload")
                self.reloads += 1
            return fresh

    def restart(self) -> None:
        """Replace the server process by a new one on the same ports (what the watchdog
        does after a stub died; clients see connection errors until it is ready)."""
        with self._lock:
            self._stop_process(timeout=3.0)  # it is broken: do not wait out exit_timeout
            self._start_process()
            self.restarts += 1

    def running(self) -> bool:
        """The server process is alive (waits for a restart in progress to finish)."""
        with self._lock:
            return self.process is not None and self.process.poll() is None

    def _pump(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._log_tail.append(line.rstrip("\n"))
            if self._stdout is not None:
                self._stdout.write(line)
                self._stdout.flush()

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://{self.http_url}/v2/health/ready", timeout=2
            ) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                time.sleep(0.2)  # let the reader drain the last lines
                raise TritonServerError(
                    f"tritonserver exited with code {self.process.returncode} before it "
                    f"was ready:\n{self.log_tail}"
                )
            if self.is_ready():
                return
            time.sleep(0.25)
        raise TritonServerError(
            f"tritonserver was not ready after {timeout:.0f} s:\n{self.log_tail}"
        )

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after `timeout`."""
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        with self._lock:
            self._stop_process(timeout)
            self._cleanup()

    def _stop_process(self, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        # Stubs can outlive the server for a moment; the group is ours alone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(2)

    def _cleanup(self) -> None:
        for tmp in (self._tmp, self._view):
            if tmp is not None:
                tmp.cleanup()
        self._tmp = self._view = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"TritonServer({self.model_repository}, http={self.http_url}, "
            f"grpc={self.grpc_url}, metrics={self.metrics_url})"
        )


class StubWatchdog:
    """Repairs `server` when one of its Python-backend stubs has died.

    Triton 24.10 leaves such a model READY but failing every request (serving/liveness.py
    says why and how a dead stub is recognized). The stub must be seen dead on
    `confirmations` checks `interval` seconds apart (a stub Triton stops itself is a
    zombie only until Triton reaps it, at once). Every second counts: requests to the
    model fail meanwhile, and berth-client's default retries span about 4 s. So a check
    reads only the `stat` files of the stubs already seen (`known_stub_processes`, tens
    of microseconds), and all of /proc only every `rescan` seconds and right after a
    repair, which is when new stubs appear. Then the
    models whose stubs died are reloaded (`TritonServer.reload_models`; the other models
    keep serving, and so do these once their new stubs are up); the server is restarted
    on the same ports only where that cannot work: the server is not in explicit mode
    (e.g. poll mode), the dead stub's model is unknown (it died before a check saw it
    alive), or the reload failed.

    Which model a stub served is read from its command line while it lives (a zombie
    keeps none). Triton may keep a replaced dead stub as a zombie for good (seen after
    a reload of a model with two instances), so a zombie a reload handled is not
    counted again.
    """

    def __init__(
        self,
        server: TritonServer,
        interval: float = 0.1,
        confirmations: int = 2,
        rescan: float = 1.0,
    ):
        self.server = server
        self.interval = interval
        self.confirmations = confirmations
        self.rescan = rescan
        self._scanned = -math.inf  # when all of /proc was last read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="berth-stub-watchdog", daemon=True)
        self._server_pid = 0
        self._models: dict[int, str] = {}  # stub pid -> its model, recorded while it lived
        self._seen: dict[int, int] = {}  # dead stub pid -> consecutive checks
        self._handled: set[int] = set()  # dead stubs a reload replaced

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.server.startup_timeout + 30)

    def _run(self) -> None:
        while not self._stop.is_set():  # the first check at once: it records the stubs
            process = self.server.process
            dead = self._confirmed_dead(process.pid) if process is not None else []
            if dead and not self._stop.is_set():
                self._recover(process.pid, dead)
                self._scanned = -math.inf  # record the repaired server's stubs at once
                continue
            self._stop.wait(self.interval)

    def _confirmed_dead(self, server_pid: int) -> list[int]:
        """The stubs seen dead on `confirmations` checks in a row, not yet handled."""
        if server_pid != self._server_pid:  # a new server process: a clean slate
            self._server_pid, self._models, self._seen, self._handled = server_pid, {}, {}, set()
            self._scanned = -math.inf
        now = time.monotonic()
        if now - self._scanned >= self.rescan:
            self._scanned = now
            stubs = stub_processes(server_pid)  # one /proc scan for both
            self._models.update(
                (pid, s.model) for pid, s in live_stubs(server_pid, stubs=stubs).items()
            )
        else:
            # the stubs seen alive, and those first seen dead (whose model is unknown)
            known = (self._models.keys() | self._seen.keys()) - self._handled
            stubs = known_stub_processes(server_pid, known)
        dead = [pid for pid in dead_stubs(server_pid, stubs=stubs) if pid not in self._handled]
        self._seen = {pid: self._seen.get(pid, 0) + 1 for pid in dead}
        return sorted(pid for pid, n in self._seen.items() if n >= self.confirmations)

    def _recover(self, server_pid: int, dead: list[int]) -> None:
        models = sorted({self._models.get(pid, "") for pid in dead})
        self._seen = {}
        if "" in models or not self.server.can_reload:
            why = "not in explicit model-control mode" if "" not in models else "model unknown"
            self._restart(server_pid, dead, why)
            return
        log.warning(
            "tritonserver %d: Python-backend stub(s) %s of %s died; Triton does not restart "
            "them, reloading %s",
            server_pid,
            dead,
            ", ".join(models),
            "it" if len(models) == 1 else "them",
        )
        started = time.monotonic()
        try:
            fresh = self.server.reload_models(models)
        except (ServingError, OSError, ValueError) as exc:  # refused, or an odd answer
            log.error("reload failed after %.1f s: %s", time.monotonic() - started, exc)
            self._restart(server_pid, dead, "the reload failed")
            return
        # the reload replaced every instance: the model's other dead stubs too (killed
        # together, one check apart), which Triton may keep as zombies
        self._handled |= set(dead) | {
            pid for pid in dead_stubs(server_pid) if self._models.get(pid) in models
        }
        log.warning(
            "reloaded %s in %.1f s (new stubs %s); the other models kept serving",
            ", ".join(models),
            time.monotonic() - started,
            fresh,
        )

    def _restart(self, server_pid: int, dead: list[int], why: str) -> None:
        log.warning(
            "tritonserver %d: Python-backend stub(s) %s died (%s): restarting the server on "
            "the same ports",
            server_pid,
            dead,
            why,
        )
        started = time.monotonic()
        try:
            self.server.restart()
        except TritonServerError as exc:
            log.error("restart after a dead stub failed: %s", exc)
        else:
            log.warning(
                "tritonserver restarted in %.1f s (pid %d)",
                time.monotonic() - started,
                self.server.process.pid,
            )
