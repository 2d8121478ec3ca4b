"""A short headless Locust run against a real tritonserver: requests flow, nothing
fails, the reports are written and name each failure's message."""

from __future__ import annotations

import pytest

from loadtest.run import main
from loadtest.slo import read_locust_failures, read_locust_json

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.mark.parametrize(
    "client, protocol", [("fast", "http"), ("berth", "http"), ("berth", "grpc")]
)
def test_short_locust_run(stub_server, tmp_path, client, protocol, capsys):
    host = stub_server.grpc_url if protocol == "grpc" else stub_server.http_url
    code = main(["--host", host, "--model", "sentiment", "--protocol", protocol,
                 "--client", client, "--users", "4", "--duration", "3s",
                 "--target-rps", "5", "--p99-ms", "1000", "--max-failure-rate", "0",
                 "--report-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    stats = read_locust_json(tmp_path / "locust_final.json")
    assert stats.requests > 0 and stats.failures == 0
    assert (tmp_path / "locust.html").stat().st_size > 1000
    assert "| failure rate | 0.00% " in out


def test_missed_slo_exits_1(stub_server, tmp_path, capsys):
    code = main(["--host", stub_server.http_url, "--model", "sentiment", "--client", "fast",
                 "--users", "2", "--duration", "3s", "--target-rps", "1000000",
                 "--report-dir", str(tmp_path)])  # fmt: skip
    assert code == 1
    assert "SLO throughput MISSED" in capsys.readouterr().err


def test_unknown_model_counts_as_failures(stub_server, tmp_path, capsys):
    code = main(
        [
            "--host",
            stub_server.http_url,
            "--model",
            "nope",
            "--client",
            "fast",
            "--users",
            "2",
            "--duration",
            "2s",
            "--report-dir",
            str(tmp_path),
        ]
    )
    assert code == 1
    stats = read_locust_json(tmp_path / "locust_final.json")
    assert stats.failures == stats.requests > 0
    out, err = capsys.readouterr()
    assert "SLO failure rate MISSED" in err
    # The report says why: Triton's own refusal, with its count.
    assert f"| {stats.failures} | POST nope [snippets]: HTTP 404" in out
    assert "unknown model" in out


@pytest.mark.parametrize("client", ["fast", "berth"])
def test_no_server_counts_as_failures(client, tmp_path, capsys):
    """Nothing listens on the port: every request fails, and the report says why (a
    request without an answer has no status and no body to quote)."""
    from serving.server import free_port

    code = main(["--host", f"127.0.0.1:{free_port()}", "--model", "sentiment",
                 "--client", client, "--users", "2", "--duration", "2s",
                 "--report-dir", str(tmp_path)])  # fmt: skip
    assert code == 1
    stats = read_locust_json(tmp_path / "locust_final.json")
    assert stats.failures == stats.requests > 0
    failures = read_locust_failures(tmp_path / "locust_failures.json")
    assert sum(count for _, count in failures) == stats.failures
    assert all(" sentiment [" in message for message, _ in failures)
    assert any("Connection refused" in message for message, _ in failures)


def test_short_run_against_the_real_ensemble(ensemble, tmp_path, capsys):
    server, _ = ensemble
    code = main(["--host", server.http_url, "--model", "sentiment", "--client", "fast",
                 "--users", "4", "--duration", "3s", "--max-failure-rate", "0",
                 "--report-dir", str(tmp_path)])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    stats = read_locust_json(tmp_path / "locust_final.json")
    assert stats.requests > 0 and stats.failures == 0
    assert (tmp_path / "locust.html").is_file() and (tmp_path / "locust_stats.csv").is_file()
    assert read_locust_failures(tmp_path / "locust_failures.json") == []
