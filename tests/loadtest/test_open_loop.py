"""The open-loop generator (`python -m loadtest --arrival-rate R`): it sends at its
schedule whatever the latency, counts refusals apart from failures, and computes goodput.

The server is a fake Triton in a thread (stdlib http.server, HTTP/1.1 keep-alive) that
answers the v2 infer path after a delay, with Triton's JSON response body or one of its
error bodies. Timing bounds are loose: the box running the tests may be busy.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from berth_core.admission import TokenBucket
from loadtest import open_loop
from loadtest.bodies import build_bodies
from loadtest.config import parse_args
from loadtest.open_loop import (
    ADMISSION_REFUSED,
    ENTRANCE_REFUSED,
    FAILED,
    OK,
    QUEUE_TIMED_OUT,
    REFUSED,
    OpenLoopSettings,
    Tally,
    arrival_offsets,
    classify,
    percentile,
    run_open_loop,
    summarize,
)
from loadtest.run import main
from serving.entrance import EntranceSettings

MODEL = "sentiment"
ANSWER = json.dumps(
    {
        "model_name": MODEL,
        "model_version": "1",
        "outputs": [
            {"name": "PROBABILITIES", "datatype": "FP32", "shape": [1, 2], "data": [0.1, 0.9]}
        ],
    }
).encode()
# Triton's HTTP refusals by a bounded queue (queue policy, timeout_action REJECT).
QUEUE_FULL = (503, b'{"error":"Exceeds maximum queue size"}')
QUEUE_TIMEOUT = (503, b'{"error":"Request timeout expired"}')
ADMISSION = (503, b'{"error":"in ensemble \'s\', over the admission rate (9 requests/s ..."}')
# nginx in front (serving/entrance.py), in the wording it is configured with
ENTRANCE = (
    503,
    json.dumps({"error": EntranceSettings(2, "127.0.0.1:1", "127.0.0.1:2").refusal()}).encode(),
)
BAD_REQUEST = (400, b'{"error":"unexpected inference input \'text\'"}')

# request number (0, 1, ...) → (seconds before answering, HTTP status, body)
Responder = Callable[[int], tuple[float, int, bytes]]


class FakeTriton(ThreadingHTTPServer):
    """Answers POST /v2/models/<model>/infer as `responder` says; records arrivals."""

    daemon_threads = True
    request_queue_size = 256  # the open loop opens many connections at once

    def __init__(self, responder: Responder) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.responder = responder
        self.arrivals: list[float] = []
        self.lock = threading.Lock()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def arrive(self) -> int:
        with self.lock:
            self.arrivals.append(time.monotonic())
            return len(self.arrivals) - 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeTriton

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != f"/v2/models/{MODEL}/infer":
            return self._reply(404, b'{"error":"Request for unknown model"}')
        delay, status, body = self.server.responder(self.server.arrive())
        time.sleep(delay)
        self._reply(status, body)

    def do_GET(self) -> None:  # /v2/models/stats: not served here
        self._reply(404, b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_triton() -> Iterator[Callable[[Responder], FakeTriton]]:
    servers: list[tuple[FakeTriton, threading.Thread]] = []

    def start(responder: Responder) -> FakeTriton:
        server = FakeTriton(responder)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def slow(delay_s: float) -> Responder:
    return lambda n: (delay_s, 200, ANSWER)


BODIES = build_bodies(["a gripping, funny film", "a dull mess"])


def run(server: FakeTriton, rate: float, duration_s: float, **settings) -> Tally:
    url = open_loop.infer_url(server.host, MODEL)
    cfg = OpenLoopSettings(url=url, rate=rate, duration_s=duration_s, **settings)
    return run_open_loop(cfg, BODIES, lambda: 0)


# ----------------------------------------------------------------- against a fake server


def test_sends_at_its_schedule_whatever_the_latency(fake_triton):
    server = fake_triton(slow(0.3))
    started = time.monotonic()
    tally = run(server, rate=50, duration_s=2.0)
    wall = time.monotonic() - started

    assert tally.scheduled == 100 and tally.sent == 100 and tally.not_sent == 0
    assert len(tally.latencies) == 100 and tally.failed == 0
    assert min(tally.latencies) >= 0.3  # every answer took the server's 300 ms
    # sends kept to the schedule: none was late by an answer's time
    assert max(tally.lags) < 0.3 and percentile(sorted(tally.lags), 0.99) < 0.2
    # the server saw them arrive spread over the 2 s, ~15 before the first answer was out
    arrivals = server.arrivals
    assert len(arrivals) == 100
    assert 1.6 < arrivals[-1] - arrivals[0] < 2.4
    assert sum(1 for t in arrivals if t - arrivals[0] < 0.28) >= 8
    # one schedule, then the last answers: not 100 answers of 300 ms one after another
    assert wall < 2.0 + 0.3 + 2.0

    assert summarize(tally, 2.0, latency_bound_ms=100).good == 0
    in_time = summarize(tally, 2.0, latency_bound_ms=1000)
    assert in_time.good >= 95 and in_time.goodput_fraction >= 0.95
    assert in_time.goodput_rps == pytest.approx(in_time.good / 2.0)


def test_refusals_and_timeouts_are_counted_apart_from_failures(fake_triton):
    outcomes = [
        (0.0, 200, ANSWER),
        (0.0, *QUEUE_FULL),
        (0.0, *QUEUE_TIMEOUT),
        (0.0, *BAD_REQUEST),
        (1.5, 200, ANSWER),  # beyond the client's 0.5 s timeout
    ]
    server = fake_triton(lambda n: outcomes[n % len(outcomes)])
    tally = run(server, rate=50, duration_s=1.0, timeout_s=0.5)

    assert tally.sent == len(server.arrivals) == 50
    assert len(tally.latencies) == 10
    assert tally.refused == 10 and tally.queue_timeouts == 10
    assert tally.client_timeouts == 10
    assert tally.failed == 10
    assert list(tally.failure_kinds) == ["HTTP 400: " + BAD_REQUEST[1].decode()]
    summary = summarize(tally, 1.0, latency_bound_ms=None)
    assert summary.failure_rate == pytest.approx(10 / 50)
    assert summary.good == 10 and summary.goodput_fraction == pytest.approx(0.2)


def test_a_full_generator_counts_requests_as_not_sent_and_keeps_the_schedule(fake_triton):
    server = fake_triton(slow(0.3))
    tally = run(server, rate=50, duration_s=1.0, max_in_flight=5)

    assert tally.scheduled == 50
    assert tally.sent == len(server.arrivals) == len(tally.latencies)
    assert tally.sent + tally.not_sent == 50
    # 5 in flight for 300 ms each: ~17 a second, the rest due while the cap held
    assert 5 <= tally.sent <= 30 and tally.not_sent >= 20
    assert tally.failed == 0 and max(tally.lags) < 0.3


def test_the_client_throttle_sends_about_k_times_what_the_server_accepts(fake_triton):
    """A server that admits 50 requests a second (its admission bucket) offered 400: with
    k = 2 the generator, as berth-client would, sends about 100 a second and refuses the
    rest itself; a server that accepts everything gets every request."""
    bucket = TokenBucket(rate=50, burst=5)
    server = fake_triton(lambda n: (0.0, 200, ANSWER) if bucket.admit() else (0.0, *ADMISSION))
    tally = run(server, rate=400, duration_s=2.0, client_throttle=2)
    assert tally.scheduled == 800
    assert tally.sent == len(server.arrivals) and tally.sent + tally.throttled == 800
    assert tally.admission_refused + len(tally.latencies) == tally.sent
    assert 60 <= len(tally.latencies) <= 115  # the bucket's 5 + 50 a second
    assert 120 <= tally.sent <= 400 and tally.throttled >= 400
    assert summarize(tally, 2.0, None).refused_client_throttle == tally.throttled

    accepting = fake_triton(slow(0.0))
    tally = run(accepting, rate=400, duration_s=1.0, client_throttle=2)
    assert tally.throttled == 0 and tally.sent == len(accepting.arrivals) == 400


def test_cli_open_loop_report_and_goodput_gate(fake_triton, tmp_path, capsys):
    server = fake_triton(slow(0.3))
    texts = tmp_path / "texts.txt"
    texts.write_text("a gripping, funny film\na dull mess\n")
    common = ["--host", server.host, "--arrival-rate", "20", "--duration", "1s",
              "--texts", str(texts), "--min-goodput", "0.9"]  # fmt: skip

    met = main([*common, "--p99-ms", "1000", "--report-dir", str(tmp_path / "met")])
    out = capsys.readouterr().out
    assert met == 0, out
    assert "| goodput (<= 1000 ms) |" in out and "| refused (queue full) | 0 |" in out
    report = json.loads((tmp_path / "met" / "open_loop.json").read_text())
    summary = report["summary"]
    assert summary["scheduled"] == 20 and summary["ok"] == 20 and summary["good"] >= 18
    assert summary["offered_rps"] == pytest.approx(20.0)
    assert summary["p50_ms"] >= 300 and summary["lag_max_ms"] < 300
    assert report["slo"][0]["name"] == "goodput" and report["slo"][0]["passed"]

    missed = main([*common, "--p99-ms", "100", "--report-dir", str(tmp_path / "missed")])
    assert missed == 1
    assert "SLO goodput MISSED: 0.0%" in capsys.readouterr().err
    summary = json.loads((tmp_path / "missed" / "open_loop.json").read_text())["summary"]
    assert summary["good"] == 0 and summary["ok"] == 20


def test_cli_without_texts_is_a_usage_error(tmp_path, capsys):
    code = main(["--arrival-rate", "10", "--texts", str(tmp_path / "none.txt"),
                 "--report-dir", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "no texts to send" in capsys.readouterr().err


# ----------------------------------------------------------------- arithmetic, no server


def test_percentile_is_nearest_rank():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0.25) == 1.0
    assert percentile(values, 0.50) == 2.0
    assert percentile(values, 0.51) == 3.0
    assert percentile(values, 0.99) == 4.0 and percentile(values, 1.0) == 4.0
    assert percentile([7.0], 0.5) == 7.0
    assert percentile([], 0.99) is None


def test_goodput_and_percentiles_of_a_known_tally():
    tally = Tally(scheduled=110, not_sent=10, refused=3, client_timeouts=2, failed=1)
    tally.latencies = [i / 100 for i in range(100, 0, -1)]  # 10 ms .. 1000 ms, unsorted
    tally.lags = [0.001] * 99 + [0.05]
    s = summarize(tally, duration_s=10.0, latency_bound_ms=500)

    assert (s.scheduled, s.sent, s.not_sent_cap, s.ok) == (110, 100, 10, 100)
    assert s.offered_rps == pytest.approx(11.0) and s.ok_rps == pytest.approx(10.0)
    assert s.good == 50  # 10 .. 500 ms: the bound is inclusive
    assert s.goodput_rps == pytest.approx(5.0)
    assert s.goodput_fraction == pytest.approx(50 / 110)
    assert (s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms) == (500.0, 900.0, 990.0, 1000.0)
    assert (s.lag_p99_ms, s.lag_max_ms) == (1.0, 50.0)
    assert s.failure_rate == pytest.approx(1 / 100)
    assert summarize(tally, 10.0, latency_bound_ms=None).good == 100
    as_json = json.loads(json.dumps(s.as_dict()))
    assert as_json["goodput_fraction"] == pytest.approx(50 / 110)


def test_an_empty_run_has_no_latencies_and_fails_every_gate():
    s = summarize(Tally(scheduled=5, not_sent=5), 1.0, latency_bound_ms=100)
    assert s.sent == 0 and s.p99_ms is None and s.lag_max_ms is None
    assert s.goodput_fraction == 0.0
    results = open_loop.check(s, min_goodput=0.0, min_rps=0.0, max_failure_rate=1.0)
    assert [r.passed for r in results] == [False, False, False]
    assert "—" in open_loop.summary_table(s, results, cap=1024)


def test_goodput_gate_and_failures_exclude_refusals():
    tally = Tally(scheduled=100, refused=40, queue_timeouts=5, client_timeouts=5)
    tally.latencies = [0.05] * 50
    tally.lags = [0.0] * 100
    s = summarize(tally, 1.0, latency_bound_ms=100)
    met = open_loop.check(s, min_goodput=0.5, max_failure_rate=0.0)
    assert [(r.name, r.passed) for r in met] == [("goodput", True), ("failure rate", True)]
    (missed,) = open_loop.check(s, min_goodput=0.51)
    assert not missed.passed and "50.0%" in missed.actual


@pytest.mark.parametrize(
    "status, body, kind",
    [
        (200, ANSWER, OK),
        (200, b'{"outputs": []}', FAILED),
        (*QUEUE_FULL, REFUSED),
        (*QUEUE_TIMEOUT, QUEUE_TIMED_OUT),
        (*ADMISSION, ADMISSION_REFUSED),
        (*ENTRANCE, ENTRANCE_REFUSED),
        (*BAD_REQUEST, FAILED),
        (500, b"Stub process 'sentiment_tokenizer_0_0' is not healthy", FAILED),
    ],
)
def test_classify(status, body, kind):
    assert classify(status, body) == kind


def test_uniform_arrivals_are_evenly_spaced():
    offsets = list(arrival_offsets(50, 2.0))
    assert len(offsets) == 100 and offsets[0] == 0.0 and offsets[-1] < 2.0
    assert {round(b - a, 9) for a, b in itertools.pairwise(offsets)} == {0.02}
    assert len(list(arrival_offsets(0.1, 30.0))) == 3  # 0 s, 10 s, 20 s
    assert len(list(arrival_offsets(3, 0.5))) == 2  # 0 s, 0.33 s


def test_poisson_arrivals_have_the_rate_and_exponential_gaps():
    offsets = list(arrival_offsets(200, 50.0, "poisson", seed=1))
    assert 9_500 < len(offsets) < 10_500  # 10,000 expected, sd 100
    assert all(0 <= t < 50.0 for t in offsets) and offsets == sorted(offsets)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert 0.9 < statistics.stdev(gaps) / statistics.mean(gaps) < 1.1  # exponential: CV 1
    assert list(arrival_offsets(200, 1.0, "poisson", seed=1)) == [t for t in offsets if t < 1]
    assert list(arrival_offsets(200, 1.0, "poisson", seed=2)) != offsets[:200]


def test_settings_refuse_what_cannot_run():
    from berth_core.errors import InputError

    for bad in ({"rate": 0}, {"rate": -1}, {"duration_s": 0}, {"max_in_flight": 0},
                {"arrivals": "bursty"}, {"client_throttle": 0.5}):  # fmt: skip
        kwargs = {"url": "http://x/v2/models/m/infer", "rate": 1, "duration_s": 1, **bad}
        with pytest.raises(InputError):
            OpenLoopSettings(**kwargs)


# ----------------------------------------------------------------- the command line


def test_cli_parses_the_open_loop_flags():
    cfg = parse_args(["--arrival-rate", "250", "--arrivals", "poisson", "--min-goodput",
                      "0.99", "--p99-ms", "100", "--max-in-flight", "64",
                      "--client-throttle", "2"])  # fmt: skip
    assert cfg.arrival_rate == 250.0 and cfg.arrivals == "poisson"
    assert cfg.client_throttle == 2.0 and parse_args([]).client_throttle == 0.0
    assert cfg.min_goodput == 0.99 and cfg.p99_ms == 100.0 and cfg.max_in_flight == 64
    closed = parse_args([])
    assert closed.arrival_rate is None and closed.arrivals == "uniform"
    assert closed.max_in_flight == 1024


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--arrival-rate", "0"], "--arrival-rate must be > 0"),
        (["--arrival-rate=-5"], "--arrival-rate must be > 0"),
        (["--arrival-rate", "fast"], "invalid float value"),
        (["--arrival-rate", "10", "--protocol", "grpc"], "HTTP only"),
        (["--arrival-rate", "10", "--pace-rps", "5"], "--pace-rps paces the closed loop"),
        (["--arrival-rate", "10", "--max-in-flight", "0"], "--max-in-flight must be >= 1"),
        (["--arrival-rate", "10", "--duration", "0"], "--duration must be > 0"),
        (["--arrival-rate", "10", "--min-goodput", "1.5"], "--min-goodput is a fraction"),
        (["--min-goodput", "0.9"], "--min-goodput needs --arrival-rate"),
        (["--arrival-rate", "10", "--arrivals", "bursty"], "invalid choice"),
        (["--arrival-rate", "10", "--client-throttle", "0.5"], "--client-throttle is 0 (off)"),
        (["--entrance-max-in-flight", "4"], "--entrance-max-in-flight needs --model-repository"),
        (["--model-repository", "r", "--entrance-max-in-flight=-1"], "must be >= 0"),
    ],
)
def test_cli_refuses_bad_open_loop_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------- a real tritonserver


@pytest.mark.server
@pytest.mark.slow
def test_open_loop_on_a_server_started_for_the_run(tmp_path, capsys):
    """`--model-repository` starts tritonserver for the open loop as for the closed one;
    its answers count as OK and its statistics join the report."""
    from tests.client.stub_models import write_stub_repository

    repository = write_stub_repository(tmp_path / "repository")
    texts = tmp_path / "texts.txt"
    texts.write_text("a gripping, funny film\na dull mess\n")
    code = main(["--model-repository", str(repository), "--arrival-rate", "20",
                 "--duration", "2s", "--texts", str(texts), "--p99-ms", "1000",
                 "--min-goodput", "0.9", "--report-dir", str(tmp_path / "report")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "report" / "open_loop.json").read_text())
    assert report["summary"]["ok"] == report["summary"]["scheduled"] == 40
    assert report["triton"]["sentiment"]["requests"] == 40
    assert "server" in report["cpu_cores"]


@pytest.mark.server
@pytest.mark.slow
def test_open_loop_behind_the_entrance(tmp_path, capsys):
    """`--entrance-max-in-flight` serves behind nginx: what it refuses is counted as the
    entrance's, never reaches Triton, and nginx's CPU joins the report."""
    from tests.client.stub_models import write_stub_repository

    repository = write_stub_repository(tmp_path / "repository")
    texts = tmp_path / "texts.txt"
    texts.write_text("a gripping, funny film\na dull mess\n")
    code = main(["--model-repository", str(repository), "--entrance-max-in-flight", "1",
                 "--arrival-rate", "2000", "--duration", "2s", "--texts", str(texts),
                 "--no-slo", "--report-dir", str(tmp_path / "report")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "report" / "open_loop.json").read_text())
    summary = report["summary"]
    assert summary["refused_entrance"] > 0 and summary["ok"] > 0
    assert summary["ok"] + summary["refused_entrance"] == summary["sent"] == 4000
    assert report["triton"]["sentiment"]["requests"] == summary["ok"]
    assert set(report["cpu_cores"]) == {"load generator", "server", "entrance"}
    assert "| refused (entrance) |" in out
