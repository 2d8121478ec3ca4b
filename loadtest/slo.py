"""Service-level objectives checked against a Locust run's aggregated statistics."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stats:
    """The aggregated figures of one run (Locust's final stats, all endpoints together).

    `rps` counts the requests answered OK: a refusal by a full queue takes a fraction of
    an answer's time, so counting failures would reward an overloaded server."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    avg_ms: float = 0.0
    max_ms: float = 0.0

    @property
    def failure_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def percentile(response_times: dict[float, int], count: int, fraction: float) -> float:
    """Locust's own percentile over its rounded response-time histogram."""
    wanted = int(count * fraction)
    processed = 0
    for value in sorted(response_times, reverse=True):
        processed += response_times[value]
        if count - processed <= wanted:
            return float(value)
    return 0.0


def stats_from_entries(entries: list[dict]) -> Stats:
    """Aggregate Locust's final per-endpoint stats (`locust --json-file`)."""
    requests = sum(int(e["num_requests"]) for e in entries)
    failures = sum(int(e["num_failures"]) for e in entries)
    histogram: dict[float, int] = {}
    for e in entries:
        for value, n in e.get("response_times", {}).items():
            histogram[float(value)] = histogram.get(float(value), 0) + int(n)
    starts = [e["start_time"] for e in entries if e.get("start_time")]
    lasts = [e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")]
    span = (max(lasts) - min(starts)) if starts and lasts else 0.0
    total_ms = sum(float(e.get("total_response_time", 0)) for e in entries)
    return Stats(
        requests=requests,
        failures=failures,
        rps=(requests - failures) / max(span, 1.0) if requests else 0.0,
        p50_ms=percentile(histogram, requests, 0.50) if requests else float("nan"),
        p99_ms=percentile(histogram, requests, 0.99) if requests else float("nan"),
        avg_ms=total_ms / requests if requests else 0.0,
        max_ms=max((float(e.get("max_response_time") or 0) for e in entries), default=0.0),
    )


def read_locust_json(path: str | Path) -> Stats:
    """Parse the final stats Locust writes with `--json-file` (complete, unlike the CSV,
    which is flushed periodically and can miss the last second of a run)."""
    return stats_from_entries(json.loads(Path(path).read_text()))


def read_locust_failures(path: str | Path) -> list[tuple[str, int]]:
    """(error message, occurrences), most frequent first, from the failures file the
    locustfile writes when Locust quits (BERTH_FAILURES_FILE); [] when there is none.
    The report names why requests failed, not only how many."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = [(row["error"], int(row["occurrences"])) for row in json.loads(path.read_text())]
    return sorted(rows, key=lambda row: -row[1])


def failures_table(failures: list[tuple[str, int]]) -> str:
    """Markdown: one row per failure message, with its count."""
    lines = ["| occurrences | message |", "| ---: | --- |"]
    for message, count in failures:
        cell = " ".join(message.split()).replace("|", "\\|")[:300]
        lines.append(f"| {count} | {cell} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class SLO:
    """None = not checked."""

    min_rps: float | None = None
    max_p99_ms: float | None = None
    max_failure_rate: float | None = None


@dataclass(frozen=True)
class SLOResult:
    name: str
    target: str
    actual: str
    passed: bool

    @property
    def message(self) -> str:
        verdict = "met" if self.passed else "MISSED"
        return f"SLO {self.name} {verdict}: {self.actual} (target {self.target})"


def check(stats: Stats, slo: SLO) -> list[SLOResult]:
    """One result per checked SLO; a run without a single request fails them all."""
    results = []
    none = stats.requests == 0
    if slo.min_rps is not None:
        results.append(
            SLOResult(
                "throughput",
                f">= {slo.min_rps:g} req/s",
                f"{stats.rps:.1f} req/s",
                not none and stats.rps >= slo.min_rps,
            )
        )
    if slo.max_p99_ms is not None:
        results.append(
            SLOResult(
                "p99 latency",
                f"<= {slo.max_p99_ms:g} ms",
                f"{stats.p99_ms:g} ms" if not none else "no requests",
                not none and stats.p99_ms <= slo.max_p99_ms,
            )
        )
    if slo.max_failure_rate is not None:
        results.append(
            SLOResult(
                "failure rate",
                f"<= {slo.max_failure_rate:.2%}",
                f"{stats.failure_rate:.2%} ({stats.failures} of {stats.requests})",
                not none and stats.failure_rate <= slo.max_failure_rate,
            )
        )
    return results


def print_missed(results: list[SLOResult]) -> None:
    """Each missed SLO's message on stderr, after the report: the reason for exit 1."""
    for r in results:
        if not r.passed:
            print(r.message, file=sys.stderr)


def exit_code(results: list[SLOResult]) -> int:
    return 0 if all(r.passed for r in results) else 1


def summary_table(stats: Stats, results: list[SLOResult]) -> str:
    """A markdown table: the run's figures, then one row per SLO."""
    lines = [
        "| metric | value | target | verdict |",
        "| --- | ---: | ---: | --- |",
        f"| requests | {stats.requests} | | |",
        f"| failures | {stats.failures} | | |",
        f"| p50 latency | {stats.p50_ms:g} ms | | |",
        f"| mean latency | {stats.avg_ms:.1f} ms | | |",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.actual} | {r.target} | {'ok' if r.passed else 'MISSED'} |")
    if not any(r.name == "throughput" for r in results):
        lines.append(f"| throughput | {stats.rps:.1f} req/s | | |")
    if not any(r.name == "p99 latency" for r in results):
        lines.append(f"| p99 latency | {stats.p99_ms:g} ms | | |")
    return "\n".join(lines)
