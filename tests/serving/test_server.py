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

from serving.server import (
    TritonServer,
    build_backend_dir,
    server_env,
    triton_home,
    triton_libs,
)
from tests.serving.test_onnxruntime_backend import tiny_onnx  # noqa: F401  (fixture)

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
        ROOT / "serving/onnxruntime_backend/model.py"
    ).read_bytes()


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


@pytest.fixture
def tiny_repository(tiny_onnx):  # noqa: F811
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
    ):
        assert flag in out
