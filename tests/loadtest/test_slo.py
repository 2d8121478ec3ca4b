"""SLO checks on synthetic stats, the Locust JSON parser and the CLI's exit codes."""

from __future__ import annotations

import argparse
import json

import pytest

from loadtest import run as run_mod
from loadtest.closed_loop import LocustRun
from loadtest.config import parse_duration
from loadtest.slo import (
    SLO,
    Stats,
    check,
    exit_code,
    failures_table,
    percentile,
    read_locust_failures,
    read_locust_json,
    stats_from_entries,
    summary_table,
)

GOOD = Stats(requests=60_000, failures=0, rps=1000.0, p50_ms=40, p99_ms=95, avg_ms=45)
TARGET = SLO(min_rps=1000, max_p99_ms=100, max_failure_rate=0)


def verdicts(stats, slo=TARGET):
    return {r.name: r.passed for r in check(stats, slo)}


def test_all_met():
    results = check(GOOD, TARGET)
    assert [r.name for r in results] == ["throughput", "p99 latency", "failure rate"]
    assert all(r.passed for r in results) and exit_code(results) == 0


@pytest.mark.parametrize(
    "changes, missed",
    [
        ({"rps": 999.9}, "throughput"),
        ({"p99_ms": 110}, "p99 latency"),
        ({"failures": 1}, "failure rate"),
    ],
)
def test_each_slo_fails_alone(changes, missed):
    stats = Stats(**{**GOOD.__dict__, **changes})
    v = verdicts(stats)
    assert [name for name, ok in v.items() if not ok] == [missed]
    results = check(stats, TARGET)
    assert exit_code(results) == 1
    message = next(r for r in results if not r.passed).message
    assert missed in message and "MISSED" in message


def test_failure_rate_tolerance_and_unchecked_slos():
    stats = Stats(**{**GOOD.__dict__, "failures": 60})  # 0.1 %
    assert verdicts(stats, SLO(max_failure_rate=0.001)) == {"failure rate": True}
    assert verdicts(stats, SLO(max_failure_rate=0.0009)) == {"failure rate": False}
    assert check(stats, SLO()) == []


def test_a_run_without_requests_fails():
    empty = Stats(requests=0, failures=0, rps=0.0, p50_ms=0, p99_ms=0)
    assert not any(verdicts(empty).values())


def test_boundaries_are_inclusive():
    stats = Stats(requests=10, failures=0, rps=1000.0, p50_ms=1, p99_ms=100.0)
    assert all(verdicts(stats).values())


def test_summary_table_names_the_figures():
    stats = Stats(**{**GOOD.__dict__, "p99_ms": 130})
    table = summary_table(stats, check(stats, TARGET))
    assert "| p99 latency | 130 ms | <= 100 ms | MISSED |" in table
    assert "| throughput | 1000.0 req/s | >= 1000 req/s | ok |" in table


@pytest.mark.parametrize("text, seconds", [("60s", 60), ("2m", 120), ("1m30s", 90), ("15", 15)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage():
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("soon")


def test_cli_exit_codes_follow_the_slos(monkeypatch, tmp_path, capsys):
    """The CLI end to end with the Locust run replaced by fixed stats."""
    outcome = {"stats": GOOD}
    monkeypatch.setattr(LocustRun, "run", lambda self, meter=None: outcome["stats"])
    argv = [
        "--host",
        "127.0.0.1:1",
        "--duration",
        "1s",
        "--report-dir",
        str(tmp_path),
        "--target-rps",
        "1000",
        "--p99-ms",
        "100",
        "--max-failure-rate",
        "0",
    ]
    assert run_mod.main(argv) == 0
    outcome["stats"] = Stats(**{**GOOD.__dict__, "rps": 512.3})
    assert run_mod.main(argv) == 1
    err = capsys.readouterr().err
    assert "SLO throughput MISSED: 512.3 req/s (target >= 1000 req/s)" in err
    assert run_mod.main([*argv, "--no-slo"]) == 0


def test_cli_rejects_grpc_on_the_fast_path():
    with pytest.raises(SystemExit) as info:
        run_mod.main(["--client", "fast", "--protocol", "grpc"])
    assert info.value.code == 2


def test_locust_command(tmp_path):
    run = LocustRun(
        host="127.0.0.1:8000",
        user_class="FastTritonUser",
        users=8,
        duration_s=5,
        processes=2,
        report_dir=tmp_path,
    )
    cmd = run.command()
    assert cmd[-1] == "FastTritonUser"
    assert cmd[cmd.index("--host") + 1] == "http://127.0.0.1:8000"
    assert cmd[cmd.index("--processes") + 1] == "2"
    assert cmd[cmd.index("--run-time") + 1] == "5s"


def test_stats_from_locust_json_entries(tmp_path):
    entries = [
        {"name": "a", "num_requests": 90, "num_failures": 1, "start_time": 100.0,
         "last_request_timestamp": 110.0, "total_response_time": 900.0,
         "max_response_time": 120.0, "response_times": {"5": 50, "10": 39, "120": 1}},
        {"name": "b", "num_requests": 10, "num_failures": 0, "start_time": 100.5,
         "last_request_timestamp": 109.0, "total_response_time": 100.0,
         "max_response_time": 30.0, "response_times": {"10": 9, "30": 1}},
    ]  # fmt: skip
    stats = stats_from_entries(entries)
    assert (stats.requests, stats.failures) == (100, 1)
    assert stats.rps == pytest.approx(9.9)  # 99 of 100 requests answered OK over 10 s
    assert stats.p50_ms == 10 and stats.p99_ms == 120 and stats.max_ms == 120
    assert stats.avg_ms == pytest.approx(10.0)
    path = tmp_path / "final.json"
    path.write_text(json.dumps(entries))
    assert read_locust_json(path) == stats
    assert percentile({}, 0, 0.99) == 0.0
    assert stats_from_entries([]).requests == 0


def test_failures_are_read_by_message_most_frequent_first(tmp_path):
    path = tmp_path / "locust_failures.json"
    path.write_text(json.dumps([
        {"error": 'HTTP 503: {"error":"Request timeout expired"}', "occurrences": 2},
        {"error": "ConnectionRefusedError(111)", "occurrences": 5},
    ]))  # fmt: skip
    assert read_locust_failures(path) == [
        ("ConnectionRefusedError(111)", 5),
        ('HTTP 503: {"error":"Request timeout expired"}', 2),
    ]
    assert read_locust_failures(tmp_path / "missing.json") == []


def test_failures_table_keeps_each_message_on_one_row():
    table = failures_table([("HTTP 500: a | b\nc", 3)])
    assert table.splitlines()[-1] == "| 3 | HTTP 500: a \\| b c |"
