"""The side-by-side report (synthetic figures), the CPU meter and the reference service."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import types
import urllib.request
from http.server import ThreadingHTTPServer

import psutil
import pytest

from loadtest.compare import Row, markdown
from loadtest.cpu import CpuMeter
from loadtest.reference_service import make_handler


def test_markdown_table_and_ratios():
    rows = [
        Row("(1) PyTorch service", 60.0, "req/s", 900, 1500, 1000, 0, 1.9, 0.1),
        Row("(2) int8 ONNX alone, onnxruntime, batch 1, tokenization included", 700, "texts/s"),
        Row("(2) int8 ONNX alone, onnxruntime, batch 32, tokenization included", 1200, "texts/s"),
        Row("(2′) same, batch 32, texts sorted by length", 1500, "texts/s"),
        Row("(3) Triton ensemble", 900.0, "req/s", 40, 95, 27000, 0, 1.6, 0.3),
    ]
    args = argparse.Namespace(
        model="sentiment", scenario="snippets", users=64, duration=30.0, rounds=1
    )
    text = markdown(rows, args, "python -m loadtest.compare ...", [])
    assert "| (3) Triton ensemble | 900 req/s | 40 | 95 | 27,000 | 0 | 1.60 | 0.30 |" in text
    assert "(3)/(1): **15.0×**" in text
    # the ceiling is the best *random-order* batch, not the sorted one
    assert "(3)/(2): **0.75×** the model-only ceiling (batch 32)" in text


# A grandchild that, once told "go", spins until it has used SPIN_CPU_S of CPU, says
# "done" and then blocks on stdin; its parent only waits for it.
SPIN_CPU_S = 0.3
SPIN = f"""
import sys, time
print("ready", flush=True)
sys.stdin.readline()
start = time.process_time()
while time.process_time() - start < {SPIN_CPU_S}:
    pass
print("done", flush=True)
sys.stdin.read()
"""
PARENT = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {SPIN!r}])"
IDLE = "import sys\nprint('ready', flush=True)\nsys.stdin.read()"


def test_cpu_meter_charges_a_trees_work_to_its_name_and_none_to_an_idle_one():
    """The busy tree's CPU is its grandchild's (the root only waits), so counting it
    means the meter walks the tree; the idle process, blocked on a read throughout, is
    charged (almost) nothing. CPU seconds, not wall time: no speed is asserted."""
    kw = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    busy = subprocess.Popen([sys.executable, "-c", PARENT], **kw)
    idle = subprocess.Popen([sys.executable, "-c", IDLE], **kw)
    try:
        assert busy.stdout.readline() == "ready\n" and idle.stdout.readline() == "ready\n"
        meter = CpuMeter(interval=0.05)
        meter.watch("busy", busy.pid)
        meter.watch("idle", idle.pid)
        with meter:
            busy.stdin.write("go\n")
            busy.stdin.flush()
            assert busy.stdout.readline() == "done\n"  # spun SPIN_CPU_S of CPU, still alive
    finally:
        for proc in (busy, idle):
            proc.stdin.close()
            proc.wait(30)
    # /proc counts CPU in clock ticks (10 ms): allow a couple of ticks either way
    assert meter.cpu_seconds("busy") >= SPIN_CPU_S - 0.02, meter.cpu_seconds("busy")
    assert meter.cpu_seconds("idle") < 0.02, meter.cpu_seconds("idle")
    assert meter.cores("busy") > meter.cores("idle")


def fake_psutil(cpu: dict[int, tuple[float, float]], trees: dict[int, list[int]]):
    """psutil for CpuMeter over tables the caller changes between samples: pid ->
    (user, system) CPU seconds, root -> its descendants; a pid not in `cpu` has exited."""

    class Process:
        def __init__(self, pid: int) -> None:
            if pid not in cpu:
                raise psutil.NoSuchProcess(pid)
            self.pid = pid

        def children(self, recursive: bool = False) -> list[Process]:
            return [Process(p) for p in trees.get(self.pid, []) if p in cpu]

        def cpu_times(self):
            if self.pid not in cpu:
                raise psutil.NoSuchProcess(self.pid)
            return types.SimpleNamespace(user=cpu[self.pid][0], system=cpu[self.pid][1])

    return types.SimpleNamespace(Process=Process, Error=psutil.Error)


def test_cpu_meter_arithmetic_on_known_readings(monkeypatch):
    """cpu_seconds: per process of the tree, last reading minus the reading at start
    (0 for a process first seen after start, or watched after start); an exited
    process keeps its last reading; cores = cpu_seconds / the meter's wall time."""
    import loadtest.cpu

    now = [100.0]
    cpu = {10: (5.0, 1.0), 11: (2.0, 0.0)}
    monkeypatch.setattr(loadtest.cpu, "psutil", fake_psutil(cpu, {10: [11, 12]}))
    monkeypatch.setattr(loadtest.cpu, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    meter = CpuMeter(interval=3600)  # no background samples: only start, watch and stop
    meter.watch("server", 10)
    meter.watch("gone", 30)  # never existed
    meter.start()
    del cpu[11]  # exited
    cpu.update({10: (7.0, 1.5), 12: (0.25, 0.25), 20: (1.0, 0.0)})  # 12: a new child
    meter.watch("late", 20)  # watched after start: all of its CPU counts
    cpu[20] = (1.5, 0.25)
    now[0] = 104.0
    meter.stop()
    assert meter.cpu_seconds("server") == pytest.approx(2.5 + 0.0 + 0.5)
    assert meter.cores("server") == pytest.approx(3.0 / 4.0)
    assert meter.cpu_seconds("late") == pytest.approx(1.75)
    assert meter.cores("late") == pytest.approx(1.75 / 4.0)
    assert meter.cpu_seconds("gone") == 0.0 and meter.cores("gone") == 0.0
    assert meter.cpu_seconds("never watched") == 0.0


def test_reference_service_contract():
    class Fake:
        def predict(self, text):
            return [{"label": "positive", "confidence": 0.9, "text_len": len(text)}]

    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Fake()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        request = urllib.request.Request(
            f"{url}/predict", data=json.dumps({"text": "abc"}).encode()
        )
        with urllib.request.urlopen(request) as response:
            assert json.loads(response.read())["text_len"] == 3
        bad = urllib.request.Request(f"{url}/predict", data=b'{"text": 3}')
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bad)
        assert info.value.code == 400
    finally:
        server.shutdown()


def test_teacher_row_and_ratio():
    rows = [
        Row("(3) Triton ensemble sentiment", 1000.0, "req/s", 40, 95, 60000, 0, 1.6, 0.3),
        Row("(4) Triton ensemble sentiment_teacher", 500.0, "req/s", 80, 190, 30000, 0, 1.7, 0.2),
    ]
    args = argparse.Namespace(
        model="sentiment", scenario="snippets", users=64, duration=60.0, rounds=1
    )
    assert "(3)/(4): **2.00×** the teacher ensemble's throughput" in markdown(rows, args, "", [])


@pytest.mark.server
@pytest.mark.slow
def test_student_and_teacher_ensembles_in_one_run(tmp_path):
    """--teacher-model loads a second ensemble of the same repository under the same
    Locust settings: one server, each ensemble warmed, then measured in alternated
    rounds, and the ratio is the median of the rounds'."""
    from loadtest.compare import main
    from tests.client.stub_models import write_stub_repository

    repository = write_stub_repository(tmp_path / "repository")
    output, reports = tmp_path / "compare.md", tmp_path / "reports"
    code = main(["--checkpoint", "unused", "--model-repository", str(repository),
                 "--model", "sentiment", "--teacher-model", "tags", "--only", "triton",
                 "--only", "teacher", "--users", "2", "--duration", "2s", "--warmup", "1s",
                 "--rounds", "2", "--report-dir", str(reports),
                 "--output", str(output)])  # fmt: skip
    assert code == 0
    text = output.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| (")]
    assert [row.split(",")[0] for row in rows] == [
        "| (3) Triton ensemble sentiment",
        "| (3) Triton ensemble sentiment",
        "| (4) Triton ensemble tags",
        "| (4) Triton ensemble tags",
    ]
    assert ", round 1 of 2 |" in rows[0] and ", round 2 of 2 |" in rows[3]
    assert "(median of 2 alternated rounds: " in text
    for model in ("sentiment", "tags"):  # the warm-up ran, and is not among the rows
        assert (reports / f"warmup-{model}_final.json").is_file()
    stats = json.loads((reports / "triton_model_stats.json").read_text())
    # both ensembles' traffic, the warm-up's excluded: the rows' requests, no more
    requests = sum(int(row.split("|")[5].replace(",", "")) for row in rows)
    assert stats["sentiment"]["requests"] + stats["tags"]["requests"] == requests


def test_ratio_is_the_median_of_the_rounds():
    rows = [
        Row("(3) Triton ensemble s, round 1 of 3", 600.0),
        Row("(3) Triton ensemble s, round 2 of 3", 500.0),
        Row("(3) Triton ensemble s, round 3 of 3", 450.0),
        Row("(4) Triton ensemble t, round 1 of 3", 400.0),
        Row("(4) Triton ensemble t, round 2 of 3", 250.0),
        Row("(4) Triton ensemble t, round 3 of 3", 300.0),
    ]
    args = argparse.Namespace(model="s", scenario="snippets", users=8, duration=10.0, rounds=3)
    text = markdown(rows, args, "", [])
    assert (
        "(3)/(4): **1.50×** the teacher ensemble's throughput (median of 3 alternated "
        "rounds: 1.50×, 2.00×, 1.50×)" in text
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--client", "fast", "--protocol", "grpc"], "--client fast speaks http only"),
        (["--rounds", "0"], "--rounds 0: use at least 1"),
    ],
)
def test_bad_flags_are_usage_errors_before_anything_runs(tmp_path, capsys, flags, message):
    from loadtest.compare import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", "unused", "--report-dir", str(tmp_path / "reports"), *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
