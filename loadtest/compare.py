"""`python -m loadtest.compare`: the side-by-side benchmark, on one machine.

    python -m loadtest.compare --checkpoint runs/sentiment/model \
        --model-repository model_repository --model sentiment --duration 30s --users 64

(1) service: the reference PyTorch predictor (training.predict.Predictor) behind a plain
    Python HTTP service (loadtest/reference_service.py), one text per request, loaded
    by Locust;
(2) ceiling: the int8 ONNX model alone in onnxruntime, tokenization included, at batch
    1, 8, 16, 32, 64 (the model-only ceiling in texts/s, no server, no network);
(3) triton: the Triton ensemble end to end (pip tritonserver), loaded by Locust;
(4) teacher: with --teacher-model, a second ensemble in the same repository (a distilled
    student's teacher, `python -m export --name sentiment_teacher …`) under the same load,
    so that what distillation buys is read in one run.

(3) and (4) share one server. Each ensemble gets a discarded run (--warmup) before it
is measured; with --rounds N they are measured N times in turns and the ratio (3)/(4)
is the median of the rounds' ratios: on a shared 2-core VM, consecutive 5-second runs
of one ensemble have differed by a third.

Same texts (Rotten Tomatoes review snippets unless --texts), same machine. Prints a
markdown table (throughput, p50/p99, failures, CPU used by the server and the load
generator, in cores) and the ratios (3)/(1) and (3)/(2), and writes it to --output.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from berth_args import ConfigParser, option
from berth_core.checkpoint import BerthConfig
from berth_core.errors import InputError, run_command
from berth_core.names import CONFIG_FILE, MODEL_FILE, classifier_model_name
from loadtest import triton_stats
from loadtest.closed_loop import ROOT, LocustRun, stop_process
from loadtest.config import CLIENTS, parse_duration, protocol_problem
from loadtest.cpu import CpuMeter
from loadtest.data import SCENARIOS, load_texts
from loadtest.slo import failures_table, read_locust_failures
from serving.server import TritonServer, free_port

BATCH_SIZES = (1, 8, 16, 32, 64)


@dataclass
class Row:
    what: str
    throughput: float  # req/s or texts/s
    unit: str = "req/s"
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int | None = None
    failures: int | None = None
    server_cores: float | None = None
    loadgen_cores: float | None = None

    @classmethod
    def from_locust(cls, what: str, stats, meter: CpuMeter) -> Row:
        """A Locust run's figures, with the CPU the server and load generator used."""
        return cls(
            what,
            stats.rps,
            "req/s",
            stats.p50_ms,
            stats.p99_ms,
            stats.requests,
            stats.failures,
            meter.cores("server"),
            meter.cores("load generator"),
        )

    def cells(self) -> list[str]:
        def fmt(value, spec):
            return "–" if value is None else format(value, spec)

        return [
            self.what,
            f"{self.throughput:,.0f} {self.unit}",
            fmt(self.p50_ms, "g"),
            fmt(self.p99_ms, "g"),
            fmt(self.requests, ","),
            fmt(self.failures, ","),
            fmt(self.server_cores, ".2f"),
            fmt(self.loadgen_cores, ".2f"),
        ]


HEADER = [
    "setup",
    "throughput",
    "p50 ms",
    "p99 ms",
    "requests",
    "failures",
    "server CPU (cores)",
    "load gen CPU (cores)",
]


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the reference service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


def locust_env(args: CompareConfig, model: str | None = None) -> dict[str, str]:
    env = {
        "BERTH_MODEL": model or args.model,
        "BERTH_PROTOCOL": args.protocol,
        "BERTH_SCENARIO": args.scenario,
        "BERTH_TIMEOUT": "60",
    }
    if args.texts:
        env["BERTH_TEXTS"] = str(Path(args.texts).resolve())
    return env


def bench_service(args: CompareConfig) -> Row:
    """(1): the PyTorch reference predictor behind a stdlib ThreadingHTTPServer."""
    port = free_port()
    cmd = [sys.executable, "-m", "loadtest.reference_service", "--checkpoint",
           str(args.checkpoint), "--port", str(port)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    service = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 300, service)
        meter = CpuMeter()
        meter.watch("server", service.pid)
        run = LocustRun(
            host=f"127.0.0.1:{port}",
            user_class="ReferenceServiceUser",
            users=args.service_users or args.users,
            duration_s=args.duration,
            report_dir=args.report_dir,
            prefix="service",
            env=locust_env(args),
            quiet=True,
        )
        with meter:
            stats = run.run(meter)
    finally:
        stop_process(service, grace_s=30)
    return Row.from_locust(
        "(1) PyTorch reference predictor, stdlib HTTP service, 1 text/request", stats, meter
    )


def onnx_model_path(repository: Path, model: str, variant: str) -> Path:
    model_dir = repository / classifier_model_name(model, variant)
    versions = (
        sorted(
            (int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir()),
            reverse=True,
        )
        if model_dir.is_dir()
        else []
    )
    for version in versions:
        path = model_dir / str(version) / MODEL_FILE
        if path.is_file():
            return path
    raise InputError(f"no {model_dir}/<version>/model.onnx: publish with python -m export")


def served_disabled_optimizers(repository: Path, model: str, variant: str) -> list[str]:
    """The onnxruntime optimizers the served classifier skips (its config parameter and
    its version's session.json, read as the backend reads them), so the model-only
    ceiling runs the graph as the server does."""
    from google.protobuf.json_format import MessageToDict

    from export.triton_config import parse
    from serving.onnx_runner.model import disabled_optimizers

    config = parse((repository / classifier_model_name(model, variant) / CONFIG_FILE).read_text())
    version = onnx_model_path(repository, model, variant).parent
    return disabled_optimizers(MessageToDict(config, preserving_proto_field_name=True), version)


def bench_ceiling(args: CompareConfig, texts: list[str]) -> list[Row]:
    """(2): the int8 ONNX model alone, tokenization included, batch sweep."""
    from export.evaluate import OnnxClassifier

    path = onnx_model_path(args.model_repository, args.model, args.variant)
    runner = OnnxClassifier(
        path,
        args.checkpoint,
        berth=BerthConfig.load(args.checkpoint),
        threads=args.ceiling_threads,
        disabled_optimizers=served_disabled_optimizers(
            args.model_repository, args.model, args.variant
        ),
    )
    me = os.getpid()
    rows = []
    per_batch = max(2.0, args.ceiling_seconds)

    def measure(batch: int, pool: list[str]) -> tuple[float, float]:
        runner.logits_and_probabilities(pool[:batch], batch_size=batch)  # warm-up
        meter = CpuMeter()
        meter.watch("server", me)
        done = 0
        started = time.perf_counter()
        with meter:
            while time.perf_counter() - started < per_batch:
                chunk = [pool[(done + k) % len(pool)] for k in range(batch)]
                runner.logits_and_probabilities(chunk, batch_size=batch)
                done += batch
        return done / (time.perf_counter() - started), meter.cores("server")

    for batch in BATCH_SIZES:
        rate, cores = measure(batch, texts)
        what = f"(2) {args.variant} ONNX alone, onnxruntime, batch {batch}, tokenization included"
        rows.append(Row(what, rate, "texts/s", server_cores=cores))
    # The same at the best batch size with texts sorted by length: batches carry almost
    # no padding. Not a serving set-up (requests arrive in random order): it shows what
    # padding costs, i.e. what length-aware batching in the server could win.
    best_batch = BATCH_SIZES[max(range(len(rows)), key=lambda i: rows[i].throughput)]
    rate, cores = measure(best_batch, sorted(texts, key=len))
    what = f"(2′) same, batch {best_batch}, texts sorted by length (almost no padding)"
    rows.append(Row(what, rate, "texts/s", server_cores=cores))
    return rows


def ensemble_run(
    args: CompareConfig, host: str, model: str, prefix: str, seconds: float
) -> LocustRun:
    """Locust, as --client and --users say, against one ensemble of the server at `host`."""
    return LocustRun(
        host=host,
        user_class=CLIENTS[args.client][0],
        users=args.users,
        duration_s=seconds,
        processes=args.processes,
        report_dir=args.report_dir,
        prefix=prefix,
        env=locust_env(args, model),
        quiet=True,
    )


@dataclass
class Ensembles:
    """What (3) and (4) measured: a row per ensemble and round, the failures by message
    per tag, and the server's own statistics over the measured runs."""

    rows: list[Row] = field(default_factory=list)
    failures: dict[str, Counter] = field(default_factory=dict)
    stats: dict[str, dict] = field(default_factory=dict)


def bench_ensembles(args: CompareConfig, ensembles: list[tuple[str, str]]) -> Ensembles:
    """(3), and (4) with a teacher: ensembles of one tritonserver under the same Locust
    load. Each gets a discarded run first, so that no measured run includes its first
    requests; then each is measured `--rounds` times in turns, the order reversed every
    other round (A B, B A, …) so that a drift in the machine's speed hits both alike."""
    out = Ensembles(failures={tag: Counter() for tag, _ in ensembles})
    measured: list[tuple[str, int, Row]] = []
    with TritonServer(args.model_repository) as server:
        host = server.grpc_url if args.protocol == "grpc" else server.http_url
        for _, model in ensembles if args.warmup > 0 else []:
            ensemble_run(args, host, model, f"warmup-{model}", args.warmup).run()
        before = triton_stats.snapshot(server.http_url)
        for round_ in range(args.rounds):
            for tag, model in ensembles if round_ % 2 == 0 else ensembles[::-1]:
                row, failures = measure_ensemble(args, server, host, tag, model, round_)
                measured.append((tag, round_, row))
                out.failures[tag].update(dict(failures))
        out.stats = triton_stats.delta(before, triton_stats.snapshot(server.http_url))
    out.rows = [row for *_, row in sorted(measured, key=lambda m: m[:2])]  # (3) first
    return out


def measure_ensemble(
    args: CompareConfig, server: TritonServer, host: str, tag: str, model: str, round_: int
) -> tuple[Row, list[tuple[str, int]]]:
    """One measured Locust run against `model`: its row and its failures by message."""
    label = f", round {round_ + 1} of {args.rounds}" if args.rounds > 1 else ""
    print(f"{tag} Triton ensemble {model}{label} ...", flush=True)
    suffix = f"-round{round_ + 1}" if args.rounds > 1 else ""
    run = ensemble_run(args, host, model, f"triton-{model}{suffix}", args.duration)
    meter = CpuMeter()
    meter.watch("server", server.process.pid)
    with meter:
        stats = run.run(meter)
    path = "prebuilt bodies" if args.client == "fast" else "berth_client"
    what = f"{tag} Triton ensemble {model}, {args.protocol}, {path}, 1 text/request{label}"
    row = Row.from_locust(what, stats, meter)
    print("   ", row.cells(), flush=True)
    return row, read_locust_failures(run.failures_path)


def teacher_ratios(rows: list[Row]) -> list[float]:
    """(3)/(4) per round: the rows of each round paired in order."""
    students = [r for r in rows if r.what.startswith("(3)")]
    teachers = [r for r in rows if r.what.startswith("(4)")]
    return [
        s.throughput / t.throughput
        for s, t in zip(students, teachers, strict=False)
        if t.throughput > 0
    ]


def markdown(rows: list[Row], args: CompareConfig, command: str, extra: list[str]) -> str:
    lines = [
        f"### Side-by-side: {args.model}, {args.scenario} texts, {args.users} users, "
        f"{args.duration:.0f} s a run" + (f", {args.rounds} rounds" if args.rounds > 1 else ""),
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Locust on the same machine.",
        f"Command: `{command}`",
        "",
        "| " + " | ".join(HEADER) + " |",
        "| --- | " + " | ".join("---:" for _ in HEADER[1:]) + " |",
    ]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    service = next((r for r in rows if r.what.startswith("(1)")), None)
    triton = next((r for r in rows if r.what.startswith("(3)")), None)
    ceiling = max(
        (r for r in rows if r.what.startswith("(2)")), key=lambda r: r.throughput, default=None
    )
    lines.append("")
    if triton and service and service.throughput > 0:
        lines.append(
            f"- (3)/(1): **{triton.throughput / service.throughput:.1f}×** the "
            "PyTorch service's throughput"
        )
    if triton and ceiling and ceiling.throughput > 0:
        lines.append(
            f"- (3)/(2): **{triton.throughput / ceiling.throughput:.2f}×** the "
            f"model-only ceiling ({ceiling.what.split(',')[2].strip()})"
        )
    ratios = teacher_ratios(rows)
    if len(ratios) == 1:
        lines.append(f"- (3)/(4): **{ratios[0]:.2f}×** the teacher ensemble's throughput")
    elif ratios:
        each = ", ".join(f"{r:.2f}×" for r in ratios)
        lines.append(
            f"- (3)/(4): **{statistics.median(ratios):.2f}×** the teacher ensemble's "
            f"throughput (median of {len(ratios)} alternated rounds: {each})"
        )
    lines += extra
    return "\n".join(lines) + "\n"


PARTS = ("service", "ceiling", "triton", "teacher")


@dataclass
class CompareConfig:
    """Everything `python -m loadtest.compare` accepts; each field is one flag."""

    checkpoint: Path = option(help="runs/<run>/model")
    model_repository: Path = option(Path("model_repository"))
    model: str = option("sentiment")
    teacher_model: str | None = option(
        None, "(4): a second ensemble in the repository (a student's teacher) under the same load"
    )
    variant: str = option("int8", "ONNX variant for (2)")
    duration: float = option(30.0, "per Locust run", type=parse_duration)
    warmup: float = option(
        5.0,
        "(3) and (4): a discarded Locust run of this length against each ensemble before "
        "it is measured (0: none)",
        type=parse_duration,
    )
    rounds: int = option(
        1,
        "(3) and (4): measure each ensemble this many times, in turns (A B, B A, …); the "
        "ratio (3)/(4) is the median of the rounds'",
    )
    users: int = option(64)
    service_users: int | None = option(None, "users for (1) (default: --users)")
    processes: int | None = option(None, "Locust processes for (3)")
    protocol: str = option("http", choices=("http", "grpc"))
    client: str = option(
        "fast",
        "load path for (3): prebuilt bodies (fast) or berth_client (see python -m loadtest)",
        choices=sorted(CLIENTS),
    )
    scenario: str = option("snippets", choices=SCENARIOS)
    texts: Path | None = option(None)
    ceiling_seconds: float = option(5.0, "seconds per batch size in (2)")
    ceiling_threads: int = option(0, "onnxruntime intra-op threads in (2) (0: one per core)")
    only: list[str] | None = option(
        None, "run only these parts (repeatable)", choices=PARTS, action="append"
    )
    report_dir: Path = option(Path("reports/compare"))
    output: Path = option(Path("reports/compare.md"))


def build_parser() -> ConfigParser:
    return ConfigParser(
        CompareConfig, prog="python -m loadtest.compare", description=__doc__.splitlines()[0]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_config(argv)
    if problem := protocol_problem(args.client, args.protocol):
        parser.error(problem)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: use at least 1")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python -m loadtest.compare " + shlex.join(argv)
    return run_command(lambda: compare(args, command), "loadtest.compare")


def compare(args: CompareConfig, command: str) -> None:
    """Each part in turn, then the table (printed and written to --output)."""
    args.report_dir.mkdir(parents=True, exist_ok=True)
    parts = args.only or list(PARTS)
    rows: list[Row] = []
    extra: list[str] = []
    if "service" in parts:
        print("(1) PyTorch reference service ...", flush=True)
        rows.append(bench_service(args))
        print("   ", rows[-1].cells(), flush=True)
    if "ceiling" in parts:
        print("(2) ONNX alone ...", flush=True)
        texts = load_texts(args.texts, args.scenario, limit=4096)
        for row in bench_ceiling(args, texts):
            rows.append(row)
            print("   ", row.cells(), flush=True)
    ensembles = [("(3)", args.model)] if "triton" in parts else []
    if args.teacher_model and "teacher" in parts:
        ensembles.append(("(4)", args.teacher_model))
    if ensembles:
        measured = bench_ensembles(args, ensembles)
        rows += measured.rows
        stats = args.report_dir / "triton_model_stats.json"
        stats.write_text(json.dumps(measured.stats, indent=1))
        what = "the measured runs" if args.rounds > 1 or len(ensembles) > 1 else "(3)"
        extra += ["", f"Inside Triton during {what} (`/v2/models/stats`):", ""]
        extra.append(triton_stats.table(measured.stats))
        for tag, failures in measured.failures.items():
            if failures:
                extra += ["", f"Failures during {tag}:", "", failures_table(failures.most_common())]
    text = markdown(rows, args, command, extra)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print()
    print(text)
    print(f"written to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
