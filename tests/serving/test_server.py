"""serving.server / `python -m serving`: backend directory, environment, lifecycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

import serving.server as server_module
from serving.server import (
    TritonServer,
    TritonServerError,
    build_backend_dir,
    check_stub_numpy,
    free_ports,
    server_env,
    triton_home,
    triton_libs,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
name: "tiny"
backend: "onnxruntime"
max_batch_size: 8
input [{name: "input_ids" data_type: TYPE_INT64 dims: [-1]},
       {name: "attention_mask" data_type: TYPE_INT64 dims: [-1]}]
output [{name: "logits" data_type: TYPE_FP32 dims: [1]},
        {name: "probabilities" data_type: TYPE_FP32 dims: [1]}]
dynamic_batching {}
"""


def test_backend_directory(tmp_path):
    target = build_backend_dir(tmp_path)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (target / "python/libtriton_python.so").is_file()
    stub = target / "python/triton_python_backend_stub"
    assert stub.is_file() and os.access(stub, os.X_OK)
    expected = triton_home() / "python_backend_stubs" / version / "triton_python_backend_stub"
    assert stub.read_bytes() == expected.read_bytes()
    assert (target / "onnxruntime/model.py").read_bytes() == (
        ROOT / "serving/onnx_runner/model.py"
    ).read_bytes()
    for module in ("names.py", "encoding.py", "errors.py"):
        assert (target / "onnxruntime/berth_core" / module).read_bytes() == (
            ROOT / "core/berth_core" / module
        ).read_bytes()


def _fake_numpy(site: Path, version: str) -> str:
    info = site / f"numpy-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: numpy\nVersion: {version}\n")
    return str(site)


def test_numpy_2_in_the_stub_environment_is_refused_before_the_start(tmp_path):
    check_stub_numpy([_fake_numpy(tmp_path / "ok", "1.26.4")])
    check_stub_numpy([str(tmp_path / "empty")])  # no numpy found: nothing to judge
    with pytest.raises(TritonServerError, match=r"numpy 2\.1\.0 .*numpy>=1\.26,<2"):
        check_stub_numpy([_fake_numpy(tmp_path / "new", "2.1.0")])
    check_stub_numpy()  # this environment, as requirements.txt pins it


def test_environment():
    env = server_env({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/x"})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.prefix) / "bin")
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [str(triton_libs()), "/x"]


def test_command_binds_loopback(tmp_path):
    server = TritonServer(
        tmp_path, http_port=18000, grpc_port=18001, metrics_port=18002, model_config_name="gpu"
    )
    cmd = server.command(tmp_path / "backends")
    for arg in (
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        "--http-port=18000",
        "--grpc-port=18001",
        "--metrics-port=18002",
        "--model-config-name=gpu",
    ):
        assert arg in cmd
    assert server.http_url == "127.0.0.1:18000" and server.grpc_url == "127.0.0.1:18001"


def test_picked_ports_are_distinct_and_avoid_given_ones(tmp_path, monkeypatch):
    ports = free_ports(200)
    assert len(set(ports)) == 200  # all bound at once: no port handed out twice
    # A port the caller chose but has not bound yet can be handed out again: skipped.
    handed = [18000, 40000, 40001, 40002, 40003, 40004]
    monkeypatch.setattr(server_module, "free_ports", lambda count, host: handed[:count])
    server = TritonServer(tmp_path, http_port=18000)
    assert (server.http_port, server.grpc_port, server.metrics_port) == (18000, 40000, 40001)


@pytest.fixture
def tiny_repository(tiny_onnx):
    (tiny_onnx / "config.pbtxt").write_text(CONFIG.replace('"tiny"', f'"{tiny_onnx.name}"'))
    return tiny_onnx.parent


def processes_using(path: Path) -> list[str]:
    """Live processes whose command line names `path` (server, stubs)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.server
def test_python_api_serves_and_stops_every_child(tiny_repository):
    with TritonServer(tiny_repository) as server:
        pgid = server.process.pid
        client = httpclient.InferenceServerClient(server.http_url)
        ids = np.array([[1, 2, 3]], dtype=np.int64)
        inputs = [
            httpclient.InferInput(n, ids.shape, "INT64") for n in ("input_ids", "attention_mask")
        ]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(np.ones_like(ids))
        assert client.infer("m", inputs).as_numpy("logits").tolist() == [[6.0]]
        client.close()
    assert not group_alive(pgid)
    assert processes_using(tiny_repository) == []


@pytest.mark.server
def test_cli_runs_until_sigterm(tiny_repository):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            "--model-repository",
            str(tiny_repository),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if "tritonserver ready" in line:
                assert "HTTP http://127.0.0.1:" in line
                break
            assert time.monotonic() < deadline
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
        time.sleep(0.5)
        assert not group_alive(proc.pid)
        assert processes_using(tiny_repository) == []  # server and its stubs are gone too
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_cli_help_lists_every_flag():
    out = subprocess.run(
        [sys.executable, "-m", "serving", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--model-repository",
        "--http-port",
        "--grpc-port",
        "--metrics-port",
        "--host",
        "--model-config-name",
        "--model-control-mode",
        "--no-watchdog",
    ):
        assert flag in out


def _tiny_infer(server: TritonServer) -> list:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        ids = np.array([[1, 2, 3]], dtype=np.int64)
        inputs = [
            httpclient.InferInput(n, ids.shape, "INT64") for n in ("input_ids", "attention_mask")
        ]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(np.ones_like(ids))
        return client.infer("m", inputs).as_numpy("logits").tolist()
    finally:
        client.close()


def _kill_stubs(server: TritonServer) -> list[int]:
    """SIGKILL the model's Python-backend stubs (one per instance)."""
    import psutil

    children = psutil.Process(server.process.pid).children()
    stubs = [p for p in children if p.name().startswith("triton_python_b")]
    assert stubs
    for stub in stubs:
        stub.kill()
    return sorted(p.pid for p in stubs)


@pytest.mark.server
def test_a_dead_stub_is_not_repaired_by_triton_and_liveness_says_so(tiny_repository):
    """Why the watchdog exists: after its stub is killed, Triton 24.10 keeps the model
    READY and /v2/health/ready at 200 while the model fails; serving.liveness sees the
    zombie stub and exits 1."""
    from serving import liveness

    with TritonServer(tiny_repository) as server:
        assert liveness.main(["--url", f"http://{server.http_url}"]) == 0
        stubs = _kill_stubs(server)
        time.sleep(1.0)
        with pytest.raises(Exception, match=r"not healthy|exited unexpectedly"):
            _tiny_infer(server)
        assert liveness.ready(f"http://{server.http_url}")  # Triton: still "ready"
        assert liveness.dead_stubs(server.process.pid) == stubs
        assert liveness.main(["--url", f"http://{server.http_url}"]) == 1


@pytest.mark.server
def test_watchdog_restarts_the_server_when_a_stub_died(tiny_repository):
    with TritonServer(tiny_repository, watchdog=True, watchdog_interval=0.5) as server:
        ports = (server.http_url, server.grpc_url, server.metrics_url)
        first = server.process.pid
        time.sleep(1.5)  # a live server is left alone
        assert server.restarts == 0
        _kill_stubs(server)
        deadline = time.monotonic() + 120
        while server.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.restarts == 1, server.log_tail
        assert server.running() and server.process.pid != first
        assert (server.http_url, server.grpc_url, server.metrics_url) == ports
        assert _tiny_infer(server) == [[6.0]]
        assert not group_alive(first)
    assert processes_using(tiny_repository) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("42 (triton_python_b) Z 7 42 42 0 -1", (42, 7, "triton_python_b", "Z")),
        ("9 (a) b (c)) S 1 9 9 0 -1", (9, 1, "a) b (c)", "S")),
    ],
)
def test_read_stat_parses_comm_with_spaces_and_parentheses(line, expected):
    from serving.liveness import read_stat

    info = read_stat(line)
    assert (info.pid, info.ppid, info.comm, info.state) == expected


def test_dead_stubs_are_zombie_stub_children_of_the_server(tmp_path):
    from serving.liveness import dead_stubs, servers

    for pid, stat in {
        100: "100 (tritonserver) S 1 100 100",
        101: "101 (triton_python_b) Z 100 100 100",  # dead stub of 100
        102: "102 (triton_python_b) S 100 100 100",  # live stub of 100
        103: "103 (triton_python_b) Z 200 200 200",  # dead stub of another server
        104: "104 (python) Z 100 100 100",  # a zombie that is no stub
    }.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat)
    (tmp_path / "self").mkdir()
    assert dead_stubs(100, proc=tmp_path) == [101]
    assert dead_stubs(200, proc=tmp_path) == [103]
    assert servers(proc=tmp_path) == [100]
