"""`python -m serving`: run `tritonserver` (pip binary) on a model repository until Ctrl-C.

    python -m serving --model-repository model_repository
    python -m serving --model-repository model_repository --http-port 8000 --grpc-port 8001 \
        --metrics-port 8002 --host 127.0.0.1
    python -m serving --container-configs --model-repository model_repository
    python -m serving --sample-texts samples/texts.jsonl --sample-rate 0.05
    python -m serving --entrance-max-in-flight 48

By default each model's configs/pip.pbtxt is served (berth's Python onnxruntime runner
batches ragged requests); --container-configs serves the default config.pbtxt files as
the stock NVIDIA container does, the runner refusing what the native backend refuses.
--sample-texts (opt-in) keeps a random share of the served texts, texts only, for the
next student (`python -m training distill --unlabelled-file`; berth_core.traffic_sample).
--entrance-max-in-flight puts nginx in front, refusing what exceeds N requests in
flight before Triton spends CPU on it (serving/entrance.py).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from berth_args import build_parser, option
from berth_core import traffic_sample
from berth_core.errors import InputError, ServingError, report
from serving.entrance import Entrance, EntranceSettings, nginx_binary
from serving.server import TritonServer


@dataclass
class ServeConfig:
    """Everything `python -m serving` accepts; each field is one flag."""

    model_repository: Path = option(
        Path("model_repository"), "the Triton model repository to serve"
    )
    host: str = option(
        "127.0.0.1",
        "address HTTP, gRPC and metrics bind to (the default: loopback only); 0.0.0.0 "
        "exposes the server to the network",
    )
    http_port: int = option(8000, "HTTP/REST port, 0 = pick a free one")
    grpc_port: int = option(8001, "gRPC port, 0 = pick a free one")
    metrics_port: int = option(8002, "Prometheus metrics port, 0 = pick a free one")
    model_config_name: str | None = option(
        None,
        "custom model configuration: each model's configs/<NAME>.pbtxt instead of "
        "config.pbtxt (e.g. `gpu`; needs a GPU build of Triton; default: `pip`, or "
        "config.pbtxt with --container-configs)",
    )
    container_configs: bool = option(
        False,
        "serve as the stock NVIDIA container would: the default config.pbtxt files, and "
        "berth's onnxruntime runner refusing at load what the native backend refuses "
        "(check a repository before shipping it)",
    )
    cache_size: int = option(
        0,
        "bytes of Triton's response cache (0: none), for ensembles exported with "
        "--response-cache; the container: tritonserver --cache-config local,size=BYTES",
    )
    log_verbose: int = option(0, "tritonserver --log-verbose level")
    startup_timeout: float = option(300.0, "seconds to wait for /v2/health/ready")
    model_control_mode: str = option(
        "none",
        "`poll`: watch the repository and load newly published versions while serving "
        "(zero failed requests during the switch; a dead stub then costs a server "
        "restart); `none`: load it once at start-up",
        choices=("none", "poll"),
    )
    repository_poll_secs: int = option(
        5, "with --model-control-mode poll: seconds between repository scans"
    )
    watchdog: bool = option(
        True,
        "repair a dead Python-backend stub process (Triton 24.10 leaves that model "
        "failing every request while /v2/health/ready says 200; serving/liveness.py): "
        "reload that model while the others keep serving (Triton in explicit mode, every "
        "model loaded at start, its model-repository API refused to clients: load, "
        "unload and index), or restart the server on its ports if the reload fails",
    )
    load_unused_variants: bool = option(
        False,
        "also load the classifier variants no ensemble uses (by default only what the "
        "ensembles serve is loaded: less memory, faster start and watchdog restart; poll "
        "mode always loads the whole repository)",
    )
    entrance_max_in_flight: int = option(
        0,
        "put nginx in front (serving/entrance.py): at most N inference requests in flight, "
        "the excess refused at once (HTTP 503 / gRPC UNAVAILABLE, retried by berth-client) "
        "before Triton spends CPU on it; Triton then listens on loopback only and nginx on "
        "--host and the three ports. Keep N below the models' queue depth (export "
        "--max-queue-size, 64); 48 on 2 cores (0: no entrance; needs nginx installed)",
        metavar="N",
    )
    sample_texts: Path | None = option(
        None,
        "opt-in: append a random share of the texts the tokenizer receives to this JSON "
        "Lines file (*.jsonl, created 0600), the transfer text for `python -m training "
        "distill --unlabelled-file`; texts only (no labels, times, addresses or request "
        "ids), each text once; the container: docker run -e BERTH_SAMPLE_TEXTS=PATH",
        "text sample",
        metavar="FILE",
    )
    sample_rate: float = option(
        traffic_sample.DEFAULT_RATE,
        "with --sample-texts: the share of texts sampled (BERTH_SAMPLE_RATE)",
        "text sample",
    )
    sample_max_texts: int = option(
        traffic_sample.DEFAULT_MAX_TEXTS,
        "with --sample-texts: stop writing at this many texts in the file, never rotated "
        f"(BERTH_SAMPLE_MAX_TEXTS; also at BERTH_SAMPLE_MAX_BYTES, default "
        f"{traffic_sample.DEFAULT_MAX_BYTES // 2**20} MiB)",
        "text sample",
    )


DESCRIPTION = (
    "Run the pip `tritonserver` (nvidia-pytriton) on a berth model repository, with the "
    "Python backend and berth's Python onnxruntime runner (a stand-in for the native "
    "onnxruntime backend, registered under its name)."
)


def parse_args(argv: Sequence[str] | None = None) -> ServeConfig:
    parser = build_parser(ServeConfig, "python -m serving", DESCRIPTION)
    cfg = parser.parse_config(argv)
    if cfg.repository_poll_secs < 1:
        parser.error("--repository-poll-secs must be >= 1")
    if cfg.cache_size < 0:
        parser.error("--cache-size must be >= 0 bytes")
    if cfg.entrance_max_in_flight < 0:
        parser.error("--entrance-max-in-flight must be >= 0 (0: no entrance)")
    try:
        sample_config(cfg)
    except InputError as exc:
        parser.error(str(exc))
    return cfg


def sample_config(cfg: ServeConfig) -> traffic_sample.SampleConfig | None:
    """The tokenizer's text sample `cfg` asks for (None: off), its path checked."""
    if cfg.sample_texts is None:
        return None
    sample = traffic_sample.SampleConfig(
        str(cfg.sample_texts), cfg.sample_rate, cfg.sample_max_texts
    )
    sample.check_path()
    old = tokenizers_without_sampling(cfg.model_repository)
    if old:
        raise InputError(
            f"--sample-texts: {', '.join(old)} in {cfg.model_repository} was published "
            "before berth could sample texts and would write nothing; publish it again "
            "(python -m export)"
        )
    return sample


def tokenizers_without_sampling(repository: Path) -> list[str]:
    """The tokenizers whose served (latest) version lacks the sampler: export copies
    model.py and berth_core into each version, so an older one never samples."""
    old = []
    for model in sorted(Path(repository).glob("*_tokenizer")):
        versions = [d for d in model.iterdir() if d.is_dir() and d.name.isdigit()]
        latest = max(versions, key=lambda d: int(d.name), default=None)
        if latest and not (latest / "berth_core" / "traffic_sample.py").is_file():
            old.append(f"{model.name}/{latest.name}")
    return old


def start_server(cfg: ServeConfig) -> TritonServer:
    """The server `cfg` describes (not started yet): on loopback and free ports behind an
    entrance, which then takes --host and the ports."""
    behind = cfg.entrance_max_in_flight > 0
    return TritonServer(
        cfg.model_repository,
        host="127.0.0.1" if behind else cfg.host,
        http_port=None if behind else cfg.http_port or None,
        grpc_port=None if behind else cfg.grpc_port or None,
        metrics_port=None if behind else cfg.metrics_port or None,
        model_config_name=cfg.model_config_name,
        container_configs=cfg.container_configs,
        cache_size=cfg.cache_size,
        log_verbose=cfg.log_verbose,
        startup_timeout=cfg.startup_timeout,
        stdout=sys.stdout,
        # None: Triton's mode none, or explicit for the watchdog's reloads (TritonServer)
        model_control_mode=None if cfg.model_control_mode == "none" else cfg.model_control_mode,
        repository_poll_secs=(
            cfg.repository_poll_secs if cfg.model_control_mode == "poll" else None
        ),
        watchdog=cfg.watchdog,
        load_unused_variants=cfg.load_unused_variants,
        sample=sample_config(cfg),
    )


def start_entrance(cfg: ServeConfig, server: TritonServer) -> Entrance | None:
    """nginx in front of the started `server` when `cfg` asks for it (started)."""
    if not cfg.entrance_max_in_flight:
        return None
    settings = EntranceSettings.around(
        server,
        cfg.entrance_max_in_flight,
        host=cfg.host,
        http_port=cfg.http_port or None,
        grpc_port=cfg.grpc_port or None,
        metrics_port=cfg.metrics_port or None,
    )
    return Entrance(settings).start()


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    server = start_server(cfg)
    logging.basicConfig(level=logging.INFO, format="berth %(levelname)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    entrance = None
    try:
        if cfg.entrance_max_in_flight:
            nginx_binary()  # missing: say so before the server's minute of start-up
        server.start()
        entrance = start_entrance(cfg, server)
        front = entrance or server
        print(
            f"\ntritonserver ready — HTTP http://{front.http_url}  gRPC {front.grpc_url}  "
            f"metrics http://{front.metrics_url}/metrics  (repository {cfg.model_repository})"
            + (f"; nginx in front, {cfg.entrance_max_in_flight} in flight" if entrance else "")
            + "; Ctrl-C stops it",
            flush=True,
        )
        while not stop.is_set():
            for name, process in (("tritonserver", server), ("nginx", entrance)):
                if process is not None and not process.running():
                    print(f"error: {name} exited", file=sys.stderr)
                    return 1
            stop.wait(0.5)
        print("stopping tritonserver…", flush=True)
        return 0
    except ServingError as exc:
        return report(exc)
    finally:
        if entrance is not None:
            entrance.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
