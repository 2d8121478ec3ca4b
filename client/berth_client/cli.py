"""`berth-client`: classify texts, or check a server's health, from the shell.

    berth-client predict --url localhost:8000 --model sentiment "a gripping film" "dull"
    echo "a gripping film" | berth-client predict --model sentiment -
    berth-client health --url localhost:8000 --model sentiment
    berth-client predict --model sentiment --sample-texts texts.jsonl - < reviews.txt

`predict` prints one JSON object per text (JSON lines): {"text", "label", ...}.
`health` prints one JSON object and exits 0 only when the server is live and ready
and the model is ready (1 otherwise). `--sample-texts FILE` (opt-in) appends a random
share of the texts sent to FILE, texts only, for `python -m training distill
--unlabelled-file` (berth_core.traffic_sample).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from berth_client.client import PROTOCOLS, Classifier
from berth_client.errors import BerthError
from berth_core.errors import EXIT_FAILED, EXIT_INPUT, EXIT_OK
from berth_core.throttle import DEFAULT_K
from berth_core.traffic_sample import DEFAULT_MAX_TEXTS, DEFAULT_RATE


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help="server host:port (default localhost:8000 for http, localhost:8001 for grpc)",
    )
    parser.add_argument("--model", default="sentiment", help="the served ensemble's name")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http", help="default: http")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call (default 30)")
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retries on transient failures (server down/overloaded; default 3)",
    )
    parser.add_argument(
        "--throttle",
        type=float,
        default=DEFAULT_K,
        metavar="K",
        help="client-side throttling: once the server refuses most calls as overloaded, "
        f"send about K times what it accepts, refuse the rest locally (default {DEFAULT_K:g}; "
        "0: off)",
    )


def _add_sample_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("text sample (opt-in)")
    group.add_argument(
        "--sample-texts",
        metavar="FILE",
        default=None,
        help="append a random share of the texts sent to this JSON Lines file (*.jsonl, "
        "created 0600): texts only, each once, for `python -m training distill "
        "--unlabelled-file`",
    )
    group.add_argument(
        "--sample-rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"the share of texts sampled (default {DEFAULT_RATE})",
    )
    group.add_argument(
        "--sample-max-texts",
        type=int,
        default=DEFAULT_MAX_TEXTS,
        help=f"stop writing at this many texts in the file (default {DEFAULT_MAX_TEXTS})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="berth-client", description="Classify texts with a berth model served by Triton."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    predict = sub.add_parser(
        "predict",
        help="classify texts; prints JSON lines",
        description="Classify texts; prints one JSON object per text.",
    )
    _add_connection_args(predict)
    predict.add_argument(
        "texts",
        nargs="+",
        help="texts to classify; '-' reads one text per line from standard input",
    )
    _add_sample_args(predict)
    health = sub.add_parser(
        "health",
        help="server live/ready and model ready; non-zero exit when not ready",
    )
    _add_connection_args(health)
    return parser


def _texts(args: argparse.Namespace) -> list[str]:
    texts: list[str] = []
    for text in args.texts:
        if text == "-":
            texts.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            texts.append(text)
    return texts


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Classifier(
            args.url,
            model=args.model,
            protocol=args.protocol,
            timeout=args.timeout,
            retries=args.retries,
            throttle=args.throttle,
            sample_file=getattr(args, "sample_texts", None),
            sample_rate=getattr(args, "sample_rate", DEFAULT_RATE),
            sample_max_texts=getattr(args, "sample_max_texts", DEFAULT_MAX_TEXTS),
        ) as classifier:
            if args.command == "health":
                status = classifier.health()
                print(json.dumps(status))
                ok = status["live"] and status["ready"] and status["model_ready"]
                return EXIT_OK if ok else EXIT_FAILED
            texts = _texts(args)
            for text, record in zip(texts, classifier.predict(texts), strict=True):
                print(json.dumps({"text": text, **record}, ensure_ascii=False))
            return EXIT_OK
    except BerthError as exc:  # berth's exit-code table: bad input 2, the server 1
        print(f"berth-client: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"berth-client: {exc}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
