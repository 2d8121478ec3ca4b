"""The soak (`python -m loadtest --soak 30m`): its trend arithmetic on synthetic series,
the process-tree sampler on a real process tree, a short soak against the slow fake
Triton of test_open_loop.py, and its command line.

Timing bounds are loose: the box running the tests may be busy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from berth_core.errors import InputError, ServingError
from loadtest import soak
from loadtest.closed_loop import LocustRun
from loadtest.config import parse_args
from loadtest.open_loop import Tally
from loadtest.run import main
from loadtest.slo import Stats
from loadtest.soak import (
    FLAT,
    GROWING,
    TOO_SHORT,
    Mark,
    SoakSample,
    TreeSample,
    check,
    find_listener,
    fit,
    interval_sample,
    parse_pending,
    sample_tree,
    server_process,
    slope,
    trend,
    warmup_intervals,
)
from loadtest.soak_run import soak_rate
from serving.liveness import STUB_COMM
from tests.loadtest.test_open_loop import fake_triton, slow  # noqa: F401 (a fixture)

# ----------------------------------------------------------------- the trend, synthetic


def series(rss: list[float], fds: list[float] | None = None, stubs: int = 2, step_s: float = 60.0):
    """One SoakSample a `step_s`, from the first interval's end, of these RSS (MB) and
    descriptor values; 100 OK req/s, p99 50 ms."""
    fds = fds or [100.0] * len(rss)
    return [
        SoakSample(
            t_s=(i + 1) * step_s,
            rss_mb=r,
            fds=int(f),
            processes=stubs + 1,
            stubs=stubs,
            ok_rps=100.0,
            p99_ms=50.0,
            refused=0,
            timeouts=0,
            failed=0,
            not_sent=0,
            pending=None,
        )
        for i, (r, f) in enumerate(zip(rss, fds, strict=True))
    ]


def test_slope_is_least_squares():
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert slope([0, 1, 2, 3], [5, 5, 5, 5]) == 0.0
    assert slope([0, 1, 2], [0, 2, 1]) == pytest.approx(0.5)  # noise: the fitted line
    assert slope([3.0], [1.0]) == 0.0 and slope([], []) == 0.0
    assert slope([1, 1], [0, 9]) == 0.0  # no spread in x: no slope


def test_fit_gives_the_start_the_slope_and_the_rise_over_the_window():
    line = fit([1.0, 2.0, 3.0], [110.0, 120.0, 130.0])
    assert line.start == pytest.approx(110.0) and line.per_h == pytest.approx(10.0)
    assert line.growth == pytest.approx(20.0 / 110.0)
    assert fit([0.0, 1.0], [0.0, 0.0]).growth == 0.0
    assert fit([0.0, 1.0], [0.0, 3.0]).growth == float("inf")  # from nothing: growing
    assert fit([], []).growth == 0.0


def test_warmup_is_a_tenth_of_the_intervals_at_least_one():
    assert [warmup_intervals(n) for n in (1, 3, 9, 10, 19, 20, 30, 120)] == [
        1, 1, 1, 1, 1, 2, 3, 12,
    ]  # fmt: skip


def test_a_flat_run_after_its_warm_up_is_flat():
    # 30 minutes: RSS climbs in the first 3 (arenas filling), then holds with noise
    rss = [600.0, 850.0, 950.0] + [1000.0 + (5.0 if i % 2 else -5.0) for i in range(27)]
    t = trend(series(rss))
    assert (t.warmup, t.points) == (3, 27)
    assert t.window_h == pytest.approx(26 / 60)
    assert abs(t.rss_mb.per_h) < 5 and t.rss_mb.start == pytest.approx(1000.0, abs=5)
    assert t.fds.per_h == 0.0 and t.verdict == FLAT
    assert all(r.passed for r in check(t, series(rss)))
    # with its warm-up counted, the same run would read as growing
    hours = [s.t_s / 3600 for s in series(rss)]
    assert fit(hours, rss).growth > 0.05


def test_rss_growing_beyond_the_threshold_is_growing():
    # +200 MB/h from 1000 MB: +8.7 % over the 26 minutes after the warm-up
    rss = [1000.0 + 200.0 * (i + 1) / 60 for i in range(30)]
    t = trend(series(rss))
    assert t.rss_mb.per_h == pytest.approx(200.0)
    assert t.rss_mb.growth == pytest.approx(200.0 * 26 / 60 / (1000.0 + 200.0 * 4 / 60))
    assert t.verdict == GROWING
    rss_result, fd_result, stubs_result = check(t, series(rss))
    assert not rss_result.passed and "+200.00 MB/h" in rss_result.actual
    assert fd_result.passed and stubs_result.passed
    assert trend(series(rss), max_growth=0.10).verdict == FLAT  # the threshold decides


def test_descriptors_leaking_are_growing():
    fds = [100.0 + 2 * ((i + 1) // 5) for i in range(30)]  # 2 more every 5 minutes
    t = trend(series([1000.0] * 30, fds))
    assert t.fds.per_h == pytest.approx(24.0, rel=0.1) and t.rss_mb.growth == 0.0
    assert t.verdict == GROWING
    assert [r.passed for r in check(t, series([1000.0] * 30, fds))] == [True, False, True]


def test_too_short_a_run_has_no_trend_and_fails():
    samples = series([1000.0, 1000.0])
    t = trend(samples)
    assert (t.warmup, t.points, t.verdict) == (1, 1, TOO_SHORT)
    rss_result, fd_result, _ = check(t, samples)
    assert not rss_result.passed and not fd_result.passed and "no trend" in rss_result.actual
    assert trend([]).verdict == TOO_SHORT


def test_a_lost_stub_or_server_fails_whatever_the_trend():
    samples = series([1000.0] * 10)
    samples[6] = replace(samples[6], stubs=1)
    *_, stubs = check(trend(samples), samples)
    assert not stubs.passed and "1 stubs at the fewest" in stubs.actual
    gone = series([1000.0] * 10)
    gone[-1] = replace(gone[-1], processes=0, stubs=0, rss_mb=0.0, fds=0)
    *_, server = check(trend(gone), gone)
    assert not server.passed and "the server gone" in server.actual


def test_an_interval_takes_what_the_tally_gained_in_it():
    tally = Tally(refused=1, failed=2)
    tally.latencies = [0.5] * 10
    before = Mark.of(tally, at=100.0)
    tally.latencies += [i / 1000 for i in range(1, 101)]  # 100 answers, 1..100 ms
    tally.refused, tally.queue_timeouts, tally.client_timeouts = 4, 2, 1
    tally.admission_refused = 3
    tally.failed, tally.not_sent = 3, 5
    now = Mark.of(tally, at=102.0)
    tree = TreeSample(rss_bytes=300 * 2**20, fds=42, processes=3, stubs=2)
    s = interval_sample(tally, before, now, start=40.0, tree=tree, pending=7.0)
    assert (s.t_s, s.rss_mb, s.fds, s.processes, s.stubs) == (62.0, 300.0, 42, 3, 2)
    assert s.ok_rps == pytest.approx(50.0) and s.p99_ms == pytest.approx(99.0)
    assert (s.refused, s.timeouts, s.failed, s.not_sent, s.pending) == (8, 1, 1, 5, 7.0)
    quiet = interval_sample(tally, now, replace(now, at=103.0), 40.0, tree, None)
    assert quiet.ok_rps == 0.0 and quiet.p99_ms is None


def test_the_sampler_takes_the_last_interval_cut_short_by_the_end_of_the_run():
    tally = Tally()
    with soak.Sampler(tally, os.getpid(), interval_s=0.4) as sampler:
        time.sleep(0.25)  # more than half an interval: sampled at stop
    assert len(sampler.samples) == 1 and sampler.samples[0].t_s >= 0.2
    assert sampler.samples[0].processes >= 1 and sampler.samples[0].ok_rps == 0.0
    with soak.Sampler(tally, os.getpid(), interval_s=60.0) as quick:
        pass  # less than half: nothing
    assert quick.samples == []


def test_pending_requests_are_summed_over_models():
    text = (
        "# HELP nv_inference_pending_request_count Instantaneous number of pending\n"
        "# TYPE nv_inference_pending_request_count gauge\n"
        'nv_inference_pending_request_count{model="sentiment",version="1"} 3\n'
        'nv_inference_pending_request_count{model="sentiment_tokenizer",version="1"} 2\n'
        'nv_inference_pending_request_count_other{model="x"} 100\n'
        'nv_inference_request_success{model="sentiment",version="1"} 9000\n'
    )
    assert parse_pending(text) == 5.0
    assert parse_pending("nv_gpu_utilization 0.5\n") is None


# ----------------------------------------------------------------- real processes


@pytest.fixture
def process_tree(tmp_path) -> Iterator[psutil.Process]:
    """A sleeping python whose children are a sleeping python and a "stub" (a python
    started through a link named as Triton's Python-backend stub). Ended by pid."""
    stub = tmp_path / "triton_python_backend_stub"
    stub.symlink_to(sys.executable)
    sleep = "import time; time.sleep(60)"
    code = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {sleep!r}]); "
        f"subprocess.Popen([{str(stub)!r}, '-c', {sleep!r}]); time.sleep(60)"
    )
    root = subprocess.Popen([sys.executable, "-c", code])
    tree = psutil.Process(root.pid)
    try:
        deadline = time.monotonic() + 20
        while len(tree.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(tree.children()) == 2, "the tree's children did not start"
        yield tree
    finally:
        for child in tree.children(recursive=True):
            child.kill()
        root.kill()
        root.wait()


def settled(pid: int, timeout_s: float = 20.0) -> TreeSample:
    """The tree's sample once its children have started (the stub is named as its link
    once it has exec'd) and two samples 0.2 s apart agree."""
    deadline = time.monotonic() + timeout_s
    last = sample_tree(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = sample_tree(pid)
        if now.stubs == 1 and (now.fds, now.processes) == (last.fds, last.processes):
            return now
        last = now
    raise AssertionError(f"the tree did not settle: {last}")


def test_the_tree_sampler_sums_a_real_tree_children_and_stubs_included(process_tree):
    root_alone = process_tree.memory_info().rss
    whole = settled(process_tree.pid)
    assert whole.processes == 3 and whole.stubs == 1
    assert whole.rss_bytes > root_alone > 0
    assert whole.fds >= 3 * 3  # each has stdin, stdout and stderr at least
    assert whole.fds == sum(p.num_fds() for p in [process_tree, *process_tree.children()])

    stub = next(p for p in process_tree.children() if p.name().startswith(STUB_COMM))
    stub.kill()  # unreaped by its parent: a zombie, no longer counted
    psutil.wait_procs([stub], timeout=0.5)
    deadline = time.monotonic() + 10
    while sample_tree(process_tree.pid).processes > 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (sample_tree(process_tree.pid).processes, sample_tree(process_tree.pid).stubs) == (2, 0)


def test_the_tree_sampler_of_a_gone_process_is_zero():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert sample_tree(proc.pid) == TreeSample(0, 0, 0, 0)


def test_the_server_is_the_started_one_the_given_one_or_the_listener(fake_triton):  # noqa: F811
    server = fake_triton(slow(0.0))
    port = server.server_address[1]
    me = psutil.Process().name()
    assert find_listener(port, name=me) == os.getpid()
    assert find_listener(port) is None  # no tritonserver listens there
    assert server_process(123, None, server.host) == (123, "started for the run")
    assert server_process(None, os.getpid(), server.host) == (os.getpid(), "--server-pid")
    with pytest.raises(InputError, match="no tritonserver process of this user listens"):
        server_process(None, None, server.host)
    with pytest.raises(InputError, match="names no port"):
        server_process(None, None, "http://example.org")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(InputError, match=f"--server-pid {gone.pid}: no such process"):
        server_process(None, gone.pid, server.host)


# ----------------------------------------------------------------- a short soak


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'nv_inference_pending_request_count{model="sentiment",version="1"} 4\n'
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_short_soak_samples_every_interval(
    fake_triton,  # noqa: F811
    metrics_server,
    process_tree,
    tmp_path,
    capsys,
):
    server = fake_triton(slow(0.3))
    texts = tmp_path / "texts.txt"
    texts.write_text("a gripping, funny film\na dull mess\n")
    report_dir = tmp_path / "report"
    code = main(["--host", server.host, "--soak", "4s", "--soak-interval", "1s",
                 "--arrival-rate", "20", "--server-pid", str(process_tree.pid),
                 "--metrics-url", metrics_server, "--texts", str(texts), "--p99-ms", "1000",
                 "--min-goodput", "0.9", "--report-dir", str(report_dir)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out

    report = json.loads((report_dir / "soak.json").read_text())
    samples = report["samples"]
    assert len(samples) >= 3, out
    assert report["server_pid"] == process_tree.pid
    assert report["server_pid_source"] == "--server-pid"
    assert report["rate_source"] == "--arrival-rate"
    for sample in samples:
        assert sample["rss_mb"] > 0 and sample["fds"] >= 9 and sample["processes"] == 3
        assert sample["pending"] == 4.0 and sample["failed"] == 0 and sample["refused"] == 0
    # the first interval's answers start after 300 ms; then 20 a second
    for sample in samples[1:]:
        assert 12 <= sample["ok_rps"] <= 28, samples
        assert 300 <= sample["p99_ms"] < 1000
    assert [s["t_s"] for s in samples] == pytest.approx(
        [float(i + 1) for i in range(len(samples))], abs=0.5
    )
    trend = report["trend"]
    assert trend["warmup"] == 1 and trend["points"] == len(samples) - 1
    assert trend["verdict"] == FLAT and trend["rss_mb"]["growth"] < 0.05
    assert report["summary"]["scheduled"] == 80 and report["summary"]["ok"] == 80
    assert {r["name"] for r in report["slo"]} >= {"RSS trend", "fd trend", "goodput"}

    csv_lines = (report_dir / "soak.csv").read_text().splitlines()
    assert csv_lines[0].startswith("t_s,rss_mb,fds,") and len(csv_lines) == len(samples) + 1
    assert "| t | RSS MB | fds |" in out and "verdict: flat" in out
    assert out.count("| 1 s |") + out.count("| 2 s |") >= 2


def test_a_soak_without_a_server_here_is_a_usage_error(tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("a film\n")
    code = main(["--host", "127.0.0.1:9", "--soak", "3s", "--soak-interval", "1s",
                 "--arrival-rate", "5", "--texts", str(texts),
                 "--report-dir", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "no tritonserver process of this user listens on port 9" in capsys.readouterr().err


# ----------------------------------------------------------------- the rate


def test_without_a_rate_the_soak_offers_a_share_of_the_probed_capacity(monkeypatch, tmp_path):
    runs = []

    def fake_run(self, meter=None) -> Stats:
        runs.append(self)
        return Stats(requests=6000, failures=600, rps=90.0, p50_ms=20, p99_ms=80)

    monkeypatch.setattr(LocustRun, "run", fake_run)
    cfg = parse_args(["--soak", "30m", "--users", "32", "--duration", "30s",
                      "--report-dir", str(tmp_path)])  # fmt: skip
    rate, source = soak_rate(cfg, "127.0.0.1:8000")
    assert rate == pytest.approx(0.7 * 90.0)  # 90 OK answers a second
    assert source.startswith("70% of 90.0 req/s") and "32 closed-loop users" in source
    (probe,) = runs
    assert probe.user_class == "FastTritonUser" and probe.users == 32
    assert probe.duration_s == 30.0 and probe.prefix == "soak_probe"

    half = parse_args(["--soak", "30m", "--soak-load", "0.5"])
    assert soak_rate(half, "h:1")[0] == pytest.approx(45.0)
    given = parse_args(["--soak", "30m", "--arrival-rate", "250"])
    assert soak_rate(given, "h:1") == (250.0, "--arrival-rate")
    assert len(runs) == 2  # no probe with --arrival-rate

    monkeypatch.setattr(LocustRun, "run", lambda self, meter=None: Stats(0, 0, 0, 0, 0))
    with pytest.raises(ServingError, match="no answer"):
        soak_rate(half, "h:1")


# ----------------------------------------------------------------- the command line


def test_cli_parses_the_soak_flags():
    cfg = parse_args(["--soak", "30m", "--soak-interval", "30s", "--soak-load", "0.6",
                      "--soak-max-growth", "0.1", "--server-pid", "4321",
                      "--metrics-url", "127.0.0.1:8002"])  # fmt: skip
    assert (cfg.soak, cfg.soak_interval, cfg.soak_load) == (1800.0, 30.0, 0.6)
    assert (cfg.soak_max_growth, cfg.server_pid, cfg.metrics_url) == (0.1, 4321, "127.0.0.1:8002")
    plain = parse_args(["--soak", "1h"])
    assert (plain.soak, plain.soak_interval, plain.soak_load) == (3600.0, 60.0, None)
    assert plain.soak_max_growth == soak.MAX_GROWTH and plain.arrival_rate is None
    assert parse_args([]).soak is None
    with_goodput = parse_args(["--soak", "3m", "--min-goodput", "0.99"])
    assert with_goodput.min_goodput == 0.99


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--soak"], "expected one argument"),
        (["--soak", "soon"], "not a duration"),
        (["--soak", "0"], "must be > 0"),
        (["--soak", "30m", "--soak-interval", "0"], "must be > 0"),
        (["--soak", "30s", "--soak-interval", "60s"], "at least 3 --soak-interval intervals"),
        (["--soak", "60s", "--soak-interval", "60s"], "at least 3 --soak-interval intervals"),
        (["--soak", "2m"], "(120 s) must span at least 3"),
        (["--soak", "30m", "--arrival-rate", "10", "--soak-load", "0.5"], "--soak-load scales"),
        (["--soak", "30m", "--soak-load", "1.5"], "--soak-load is a fraction"),
        (["--soak", "30m", "--soak-load", "0"], "--soak-load is a fraction"),
        (["--soak", "30m", "--soak-max-growth=-0.1"], "--soak-max-growth must be >= 0"),
        (["--soak", "30m", "--protocol", "grpc"], "HTTP only"),
        (["--soak", "30m", "--pace-rps", "5"], "--pace-rps paces the closed loop"),
        (
            ["--soak", "30m", "--model-repository", "repo", "--server-pid", "1"],
            "--server-pid is for --host",
        ),
        (["--soak-load", "0.5"], "--soak-load needs --soak"),
        (["--server-pid", "1"], "--server-pid needs --soak"),
        (["--arrival-rate", "10", "--metrics-url", "h:8002"], "--metrics-url needs --soak"),
    ],
)
def test_cli_refuses_bad_soak_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------- a real tritonserver


@pytest.mark.server
@pytest.mark.slow
def test_soak_finds_a_tritonserver_by_its_port_and_its_stubs(stub_server, tmp_path, capsys):
    """`--host` only: the tritonserver listening on that port is sampled, its
    Python-backend stubs counted, its pending requests read from the metrics port."""
    texts = tmp_path / "texts.txt"
    texts.write_text("a gripping, funny film\na dull mess\n")
    code = main(["--host", stub_server.http_url, "--soak", "3s", "--soak-interval", "1s",
                 "--arrival-rate", "20", "--metrics-url", stub_server.metrics_url,
                 "--texts", str(texts), "--no-slo",
                 "--report-dir", str(tmp_path / "report")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "report" / "soak.json").read_text())
    assert report["server_pid"] == stub_server.process.pid
    assert report["server_pid_source"].startswith("the tritonserver listening on port")
    assert len(report["samples"]) == 3
    for sample in report["samples"]:
        assert sample["stubs"] >= 2 and sample["processes"] == sample["stubs"] + 1
        assert sample["rss_mb"] > 50 and sample["fds"] > 10
        assert sample["pending"] is not None and sample["failed"] == 0
    assert report["summary"]["ok"] == report["summary"]["scheduled"] == 60
    assert Path(tmp_path / "report" / "soak.csv").is_file()
