"""serving.server / `python -m serving`: backend directory, environment, lifecycle."""

from __future__ import annotations

import compileall
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import serving.server as server_module
from serving.liveness import LiveStub, ProcessInfo
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
from tests.triton_text import text_input

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


def _text_infer(server: TritonServer, model: str) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        return client.infer(model, [text_input(httpclient, ["good"])]).as_numpy("PROBABILITIES")
    finally:
        client.close()


@pytest.mark.server
def test_a_load_repairs_a_dead_stub_only_with_an_equivalent_config(tmp_path):
    """Why `serving.model_control.equivalent_config`: after its stub died, a Python-backend
    model loaded again as it is served (a plain load, or with the served config) keeps
    its dead instance; the same config with the host policy named ("cpu", what "" means)
    gets a new instance, in the same server process."""
    from serving import liveness
    from serving.model_control import ModelControl, equivalent_config
    from tests.client.stub_models import write_stub_model

    # byte-compiled as export publishes it: the stub writing __pycache__ would make
    # the first plain load a reload of changed files
    compileall.compile_dir(write_stub_model(tmp_path, "stand_in", ["a", "b"]), quiet=2)
    explicit = {"model_control_mode": "explicit", "extra_args": ["--load-model=*"]}
    with TritonServer(tmp_path, **explicit) as server:
        control = ModelControl(server.http_url)
        served = control.config("stand_in")
        stubs = _kill_stubs(server)
        for config in (None, served):
            control.load("stand_in", config)
            assert liveness.dead_stubs(server.process.pid) == stubs  # still there, still dead
            with pytest.raises(InferenceServerException, match=r"not healthy"):
                _text_infer(server, "stand_in")
        control.load("stand_in", equivalent_config(served))
        assert server.model_stubs("stand_in") and not server.model_stubs("stand_in") & set(stubs)
        assert _text_infer(server, "stand_in").shape == (1, 2)
        assert control.config("stand_in")["instance_group"][0]["host_policy"] == "cpu"


@pytest.mark.server
def test_watchdog_reloads_the_model_whose_stub_died(tiny_repository):
    """The watchdog's default: Triton in explicit mode; the dead stub's model reloaded
    in the same server process, the dead stub not handled twice."""
    with TritonServer(tiny_repository, watchdog=True) as server:
        first, stubs = server.process.pid, server.model_stubs("m")
        assert stubs
        time.sleep(1.5)  # a live server is left alone
        assert (server.restarts, server.reloads) == (0, 0)
        _kill_stubs(server)
        deadline = time.monotonic() + 120
        while server.reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (server.reloads, server.restarts) == (1, 0), server.log_tail
        assert server.process.pid == first and not server.model_stubs("m") & stubs
        assert _tiny_infer(server) == [[6.0]]
        time.sleep(1.5)
        assert (server.reloads, server.restarts) == (1, 0)
    assert processes_using(tiny_repository) == []


@pytest.mark.server
def test_watchdog_restarts_the_server_where_triton_cannot_reload(tiny_repository):
    """Mode none (or poll) takes no model load: the watchdog restarts the server."""
    with TritonServer(tiny_repository, watchdog=True, model_control_mode="none") as server:
        ports = (server.http_url, server.grpc_url, server.metrics_url)
        first = server.process.pid
        assert not server.can_reload
        _kill_stubs(server)
        deadline = time.monotonic() + 120
        while server.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (server.restarts, server.reloads) == (1, 0), server.log_tail
        assert server.running() and server.process.pid != first
        assert (server.http_url, server.grpc_url, server.metrics_url) == ports
        assert _tiny_infer(server) == [[6.0]]
        assert not group_alive(first)
    assert processes_using(tiny_repository) == []


def test_the_watchdog_runs_triton_in_explicit_mode_with_its_api_restricted(tmp_path):
    """`python -m serving` (watchdog on, mode none): explicit mode, every model loaded at
    start, the model-repository API only with the watchdog's key; a mode the caller
    chose is kept, and the watchdog then restarts instead of reloading."""
    from serving.__main__ import parse_args, start_server

    server = start_server(parse_args(["--model-repository", str(tmp_path)]))
    cmd = server.command(tmp_path / "backends")
    key = server._control_key
    assert len(key) == 32 and server.can_reload
    for arg in (
        "--model-control-mode=explicit",
        "--load-model=*",
        f"--http-restricted-api=model-repository:berth-model-control={key}",
        f"--grpc-restricted-protocol=model-repository:berth-model-control={key}",
    ):
        assert arg in cmd
    for kwargs in ({"model_control_mode": "none"}, {"model_control_mode": "poll"}, {}):
        other = TritonServer(tmp_path, watchdog=bool(kwargs), **kwargs)
        assert not other.can_reload
        assert not [a for a in other.command(tmp_path) if "explicit" in a or "restricted" in a]
    poll = parse_args(["--model-repository", str(tmp_path), "--model-control-mode", "poll"])
    assert "--model-control-mode=poll" in start_server(poll).command(tmp_path)


@pytest.mark.parametrize(
    ("group", "policy"),
    [
        ({"kind": "KIND_CPU", "host_policy": ""}, "cpu"),
        ({"kind": "KIND_CPU", "host_policy": "cpu"}, ""),
        ({"kind": "KIND_MODEL"}, "model"),
        ({"kind": "KIND_GPU", "gpus": [1, 2], "host_policy": ""}, "gpu_1"),
    ],
)
def test_equivalent_config_swaps_the_host_policy_for_the_name_triton_gives_it(group, policy):
    from serving.model_control import equivalent_config

    config = {"name": "m", "instance_group": [dict(group, name="m_0", count=2)]}
    new = equivalent_config(config)
    assert new["instance_group"] == [dict(group, name="m_0", count=2, host_policy=policy)]
    assert config["instance_group"][0] == dict(group, name="m_0", count=2)  # a copy


def test_equivalent_config_refuses_what_it_cannot_renew():
    from serving.model_control import ModelControlError, equivalent_config

    for config in (
        {"name": "e", "platform": "ensemble"},
        {"instance_group": [{"host_policy": "numa0"}]},
    ):
        with pytest.raises(ModelControlError):
            equivalent_config(config)


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


def test_known_stub_processes_reads_only_the_stubs_it_is_given(tmp_path):
    from serving.liveness import known_stub_processes

    for pid, stat in {
        101: "101 (triton_python_b) Z 100 100 100",  # dead stub of 100
        102: "102 (triton_python_b) S 100 100 100",  # live stub of 100
        103: "103 (triton_python_b) S 200 200 200",  # PID reused by another server's stub
        104: "104 (python) S 100 100 100",  # PID reused by a process that is no stub
        105: "105 (triton_python_b) S 100 100 100",  # a stub not asked about
    }.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat)
    found = known_stub_processes(100, [101, 102, 103, 104, 106], proc=tmp_path)  # 106: reaped
    assert [(p.pid, p.state) for p in found] == [(101, "Z"), (102, "S")]


def test_live_stubs_names_each_stubs_model_from_its_command_line(tmp_path):
    from serving.liveness import LiveStub, live_stubs

    def stub_args(model: str, instance: str) -> str:
        return "\0".join([
            "/b/python/triton_python_backend_stub", f"/repo/{model}/1/model.py", "shm", "1048576",
            "1048576", "100", "/b/python", "336", instance, "DEFAULT", "",
        ])  # fmt: skip

    for pid, stat, cmdline in (
        (
            101,
            "101 (triton_python_b) S 100 100 100",
            stub_args("news_tokenizer", "news_tokenizer_0_0"),
        ),
        (102, "102 (triton_python_b) Z 100 100 100", ""),  # dead: no command line
        (103, "103 (triton_python_b) S 200 200 200", stub_args("other", "other_0_0")),
        (104, "104 (python) S 100 100 100", "python\0x.py"),
    ):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat)
        (tmp_path / str(pid) / "cmdline").write_text(cmdline)
    assert live_stubs(100, proc=tmp_path) == {101: LiveStub("news_tokenizer", "news_tokenizer_0_0")}


class _Recorded:
    """What StubWatchdog sees of a TritonServer: its process, reloads and restarts."""

    can_reload, startup_timeout = True, 1.0

    def __init__(self, reload_error: Exception | None = None) -> None:
        self.process, self.calls, self.reload_error = mock.Mock(pid=7), [], reload_error

    def reload_models(self, models: list[str]) -> dict:
        self.calls.append(("reload", models))
        if self.reload_error:
            raise self.reload_error
        return {m: {99} for m in models}

    def restart(self) -> None:
        self.calls.append(("restart",))


def test_watchdog_decides_reload_or_restart_per_dead_stub(monkeypatch):
    """A stub seen dead twice: its model reloaded; its zombie, if Triton keeps it, not
    handled again; a stub never seen alive (model unknown) or a failed reload: a
    restart."""
    from serving.liveness import LiveStub
    from serving.model_control import ModelControlError

    live = {11: LiveStub("tok", "tok_0_0"), 12: LiveStub("clf", "clf_0_0")}
    dead: list[int] = []
    monkeypatch.setattr(server_module, "stub_processes", lambda pid: [])  # read by the fakes
    monkeypatch.setattr(
        server_module,
        "live_stubs",
        lambda pid, stubs=None: {p: live[p] for p in live if p not in dead},
    )
    monkeypatch.setattr(server_module, "dead_stubs", lambda pid, stubs=None: list(dead))
    server = _Recorded()
    dog = server_module.StubWatchdog(server, rescan=0)  # every check reads all of /proc
    assert dog._confirmed_dead(7) == []  # records the live stubs' models
    dead.append(11)
    assert (dog._confirmed_dead(7), dog._confirmed_dead(7)) == ([], [11])
    dog._recover(7, [11])
    assert server.calls == [("reload", ["tok"])]
    assert (dog._confirmed_dead(7), dog._confirmed_dead(7)) == ([], [])  # kept zombie
    dead.append(13)  # never seen alive
    assert (dog._confirmed_dead(7), dog._confirmed_dead(7)) == ([], [13])
    dog._recover(7, [13])
    assert server.calls[-1] == ("restart",)
    failing = _Recorded(ModelControlError("load of 'clf': HTTP 400"))
    dog = server_module.StubWatchdog(failing, rescan=0)
    dog._confirmed_dead(7)
    dog._recover(7, [12])
    assert failing.calls == [("reload", ["clf"]), ("restart",)]


def test_watchdog_reads_all_of_proc_only_every_rescan_seconds(monkeypatch):
    """Between full scans a check reads only the stubs already seen, so it can run
    every 0.1 s; a repair forces a full scan (its new stubs must be recorded)."""
    scans, known = [], []
    stub = ProcessInfo(pid=11, ppid=7, comm="triton_python_b", state="S")
    monkeypatch.setattr(server_module, "stub_processes", lambda pid: scans.append(pid) or [stub])
    monkeypatch.setattr(
        server_module, "known_stub_processes", lambda pid, pids: known.append(set(pids)) or [stub]
    )
    monkeypatch.setattr(
        server_module, "live_stubs", lambda pid, stubs=None: {11: LiveStub("tok", "tok_0_0")}
    )
    dog = server_module.StubWatchdog(_Recorded(), rescan=60.0)
    for _ in range(3):
        assert dog._confirmed_dead(7) == []
    assert (scans, known) == ([7], [{11}, {11}])
    dog._scanned = -math.inf  # what _run does after a repair
    dog._confirmed_dead(7)
    assert scans == [7, 7]


def test_a_stub_first_seen_dead_is_confirmed_between_full_scans(monkeypatch):
    """A stub killed before any check saw it alive (its model unknown: the watchdog will
    restart) is seen by a full scan only; the checks after it must follow it too."""
    zombie = ProcessInfo(pid=12, ppid=7, comm="triton_python_b", state="Z")
    monkeypatch.setattr(server_module, "stub_processes", lambda pid: [zombie])
    monkeypatch.setattr(
        server_module,
        "known_stub_processes",
        lambda pid, pids: [zombie] if 12 in set(pids) else [],
    )
    monkeypatch.setattr(server_module, "live_stubs", lambda pid, stubs=None: {})
    dog = server_module.StubWatchdog(_Recorded(), rescan=60.0)
    assert (dog._confirmed_dead(7), dog._confirmed_dead(7)) == ([], [12])
