"""`make demo`: the whole flow on the offline defaults, one stage CLI after another.

train (MiniLM-L6 on Rotten Tomatoes) → export (ONNX fp32/fp16/int8, gated) → publish the
`sentiment` ensemble → serve it with the pip `tritonserver` → classify a few held-out
reviews through berth-client → a short Locust run. Each stage is the documented command,
so this file is also the README's walkthrough in executable form.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def stage(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(argv)}", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True)
    print(f"--- {title}: {time.monotonic() - started:.0f} s", flush=True)


def held_out_texts(run_dir: Path, count: int) -> list[str]:
    rows = (run_dir / "splits" / "test.jsonl").read_text().splitlines()[:count]
    return [json.loads(row)["text"] for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/sentiment")
    parser.add_argument("--model-repository", default="model_repository")
    parser.add_argument("--name", default="sentiment")
    parser.add_argument("--load-duration", default="20s", help="the closing Locust run")
    parser.add_argument("--load-users", type=int, default=64)
    parser.add_argument(
        "--skip-training", action="store_true", help="reuse the checkpoint in --run-dir"
    )
    args = parser.parse_args(argv)
    run_dir = ROOT / args.run_dir
    checkpoint = run_dir / "model"

    if not (args.skip_training and checkpoint.is_dir()):
        stage(
            "train",
            [
                "-m",
                "training",
                "--dataset",
                "rotten_tomatoes",
                "--output-dir",
                args.run_dir,
                "--overwrite",
            ],
        )
    stage(
        "export",
        [
            "-m",
            "export",
            "--checkpoint",
            str(checkpoint),
            "--name",
            args.name,
            "--model-repository",
            args.model_repository,
        ],
    )

    from berth_client import Classifier
    from serving.server import TritonServer

    print("\n=== serve", flush=True)
    with TritonServer(ROOT / args.model_repository) as server:
        print(f"tritonserver ready: HTTP {server.http_url}, gRPC {server.grpc_url}", flush=True)
        print("\n=== predict (held-out reviews, through the ensemble)", flush=True)
        with Classifier(url=server.http_url, model=args.name) as classifier:
            texts = held_out_texts(run_dir, 5)
            for text, result in zip(texts, classifier.predict(texts), strict=True):
                print(f"{result['label']:>9} {result['confidence']:.3f}  {text[:90]}")
            from export.long_texts import show_long_reviews

            show_long_reviews(classifier, checkpoint)
        stage(
            "load test (Locust, headless)",
            [
                "-m",
                "loadtest",
                "--host",
                server.http_url,
                "--model",
                args.name,
                "--users",
                str(args.load_users),
                "--duration",
                args.load_duration,
                "--texts",
                str(run_dir / "splits" / "test.jsonl"),
                "--report-dir",
                str(run_dir / "loadtest"),
                "--no-slo",
            ],
        )
    print("\n=== server stopped; demo finished", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
