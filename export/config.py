"""What `python -m export` accepts: its flags, parsed and checked into an ExportConfig.

The variant flags read the registry (export/variants.py); the serving flags fill the
ServingSettings the Triton configs are rendered from (export/triton_config.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from berth_args import ConfigParser, arg, groups, option
from berth_core.checkpoint import BerthConfig
from berth_core.encoding import AGGREGATIONS
from export.errors import ExportInputError
from export.triton_config import ServingSettings
from export.variants import REFERENCE, VARIANTS, default_variants, variant, variants_help

# The ServingSettings fields export's command line sets, and how (the rest keep
# ServingSettings' defaults).
SERVING_FLAGS: dict[str, dict] = {
    "max_batch_size": arg("max_batch_size of every model", "serving"),
    "bucket": arg(
        "tokenizer pads to a multiple of this many tokens: each request (pip configs, "
        "ragged) or each batch (the default and GPU configs, --no-ragged)",
        "serving",
    ),
    "ragged": arg(
        "pip configs (configs/pip.pbtxt, python -m serving) without ragged batching: "
        "the tokenizer pads each batch to one length and the classifier batches only "
        "equal shapes (the default and GPU configs never use ragged inputs)",
        "serving",
        flag="--no-ragged",
    ),
    "container_ragged": arg(
        "the default (stock-container) configs batch requests of any length: each CPU "
        "classifier also gets model_flat.onnx (flat token ids re-padded inside the "
        "graph, fed with Triton's BATCH_ITEM_SHAPE batch input), the only ragged form "
        "the native onnxruntime backend takes (default: padded batches of equal shapes)",
        "serving",
    ),
    "ragged_run_cost_tokens": arg(
        "ragged batching: one onnxruntime run costs as much as this many tokens, when "
        "berth's runner cuts a length-sorted batch into padded sub-batches",
        "serving",
    ),
    "response_cache": arg(
        "Triton's response cache on the ensemble: a repeated request is answered from the "
        "cache (the server needs one: python -m serving --cache-size, or tritonserver "
        "--cache-config local,size=BYTES)",
        "serving",
    ),
    "tokenizer_instances": arg("tokenizer model instances (CPU)", "serving"),
    "classifier_instances": arg("classifier instances per variant (CPU)", "serving"),
    "intra_op_threads": arg("onnxruntime intra_op_thread_count per classifier instance", "serving"),
    "inter_op_threads": arg("onnxruntime inter_op_thread_count", "serving"),
    "tokenizer_queue_delay_us": arg("tokenizer dynamic batching max queue delay (µs)", "serving"),
    "classifier_queue_delay_us": arg("classifier dynamic batching max queue delay (µs)", "serving"),
    "trt_cache_dir": arg("TensorRT engine cache directory in the GPU configs", "serving"),
    "max_queue_size": arg(
        "overload protection: requests each model's dynamic batcher queues before it "
        "rejects new ones as unavailable (0 = unbounded)",
        "serving",
    ),
    "queue_timeout_us": arg(
        "overload protection: a request queued longer than this (µs) is rejected "
        "(0 = no limit; clients may ask for less)",
        "serving",
    ),
    "max_text_bytes": arg(
        "the tokenizer refuses texts longer than this many UTF-8 bytes (HTTP 400), "
        "before tokenizing them",
        "serving",
    ),
    "admission_rate": arg(
        "overload protection in the tokenizer: it refuses requests beyond this "
        "many a second (HTTP 503 / UNAVAILABLE, retried by berth-client) before "
        "tokenizing them; set it near the capacity python -m loadtest measures on the "
        "serving machine (0 = off)",
        "serving",
    ),
    "admission_burst": arg(
        "with --admission-rate: requests admitted at once after a quiet spell (0 = a "
        "tenth of a second's worth)",
        "serving",
    ),
}


@groups(
    {
        "checkpoint": "input",
        "name": "output",
        "variants": "variants",
        "eval_file": "gates",
        "threads": "measure",
        "max_windows": "windows",
    }
)
@dataclass
class ExportConfig:
    """Everything `python -m export` accepts; each field is one flag (the serving
    settings: the SERVING_FLAGS of ServingSettings), checked when it is made."""

    checkpoint: Path = option(
        Path("runs/sentiment/model"), "berth checkpoint directory (runs/<run>/model)"
    )
    name: str = option(
        "sentiment",
        "model name: the ensemble is <name>, its members <name>_tokenizer and "
        "<name>_onnx_<variant>",
    )
    model_repository: Path = option(
        Path("model_repository"), "Triton model repository to publish into"
    )
    output_dir: Path | None = option(
        None,
        "where ONNX files and export_report.{json,md} go; empty = <checkpoint>/../export",
    )
    no_publish: bool = option(False, "export, check and report only; leave the repository alone")
    keep_versions: int = option(
        2, "version directories kept per model after publishing (0 = keep all)"
    )
    variants: str = option(default_variants(), variants_help())
    default_variant: str = option(
        "int8", "variant the ensemble's config.pbtxt (CPU) uses: one that serves on CPU"
    )
    gpu_variant: str = option("fp16", "variant the ensemble's configs/gpu.pbtxt uses")
    opset: int = option(17, "ONNX opset (17 or newer)")
    optimize: str = option(
        "auto",
        "onnxruntime.transformers fusions: auto (measure, keep if >=5%% faster), on, off",
    )
    eval_file: Path | None = option(
        None, "held-out JSONL split; empty = <checkpoint>/../splits/test.jsonl"
    )
    max_eval_samples: int = option(2000, "score variants on at most this many rows (0 = all)")
    max_accuracy_drop: float = option(
        1.0,
        "refuse a variant losing more than this many points "
        "(accuracy; multi-label: micro F1) against fp32",
    )
    parity_samples: int = option(256, "held-out texts for the PyTorch-vs-ONNX parity check")
    parity_tolerance: float = option(
        1e-3,
        "max |Δlogit| allowed for fp32 (argmax must be identical)",
    )
    skip_refused: bool = option(
        False,
        "publish the variants that passed instead of refusing the whole "
        "export (the default and GPU variants must pass)",
    )
    threads: int = option(0, "onnxruntime intra-op threads for scoring and latency (0 = all cores)")
    latency_runs: int = option(30, "timed runs per latency figure")
    serving: ServingSettings = option(factory=ServingSettings, fields=SERVING_FLAGS)
    max_windows: int | None = option(
        None,
        "serve long texts as up to this many windows of max_length tokens (1 = one "
        "window, truncated); empty = as the checkpoint's berth.json says",
    )
    window_stride: int | None = option(
        None,
        "content tokens between window starts; empty = berth.json's, or 3/4 of "
        "max_length when berth.json has none",
    )
    aggregation: str | None = option(
        None,
        f"window logits → text logits: {', '.join(AGGREGATIONS)}; empty = berth.json's",
    )

    def __post_init__(self) -> None:
        try:
            self._check()
        except ExportInputError:
            raise
        except ValueError as exc:
            raise ExportInputError(str(exc)) from exc

    def _check(self) -> None:
        self.checkpoint = Path(self.checkpoint)
        self.model_repository = Path(self.model_repository)
        if self.output_dir is not None:
            self.output_dir = Path(self.output_dir)
        if self.eval_file is not None:
            self.eval_file = Path(self.eval_file)
        self._check_variants()
        if self.opset < 17:
            raise ValueError("--opset must be 17 or newer")
        if self.optimize not in ("auto", "on", "off"):
            raise ValueError("--optimize must be auto, on or off")
        if self.aggregation is not None and self.aggregation not in AGGREGATIONS:
            raise ValueError(f"--aggregation {self.aggregation!r}: one of {AGGREGATIONS}")
        if self.max_windows is not None and self.max_windows < 1:
            raise ValueError(f"--max-windows {self.max_windows}: use 1 or more")

    def _check_variants(self) -> None:
        names = self.variant_list
        if not names:
            raise ValueError(f"--variants: none; choose from {', '.join(VARIANTS)}")
        try:
            declared = [variant(name) for name in names]
        except ExportInputError as exc:
            raise ValueError(f"--variants {self.variants}: {exc}") from None
        if REFERENCE not in names:
            raise ValueError(
                f"--variants must include {REFERENCE}: the reference every variant is "
                "scored against"
            )
        for flag, value in (
            ("--default-variant", self.default_variant),
            ("--gpu-variant", self.gpu_variant),
        ):
            if value not in names:
                raise ValueError(f"{flag} {value!r} is not among --variants {self.variants}")
        cpu = [v.name for v in declared if v.cpu]
        if self.default_variant not in cpu:
            raise ValueError(
                f"--default-variant {self.default_variant!r} cannot serve on CPU; one of {cpu}"
            )

    @property
    def variant_list(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]

    @property
    def resolved_output_dir(self) -> Path:
        return self.output_dir or self.checkpoint.resolve().parent / "export"

    @property
    def resolved_eval_file(self) -> Path:
        return self.eval_file or self.checkpoint.resolve().parent / "splits" / "test.jsonl"

    def serving_berth(self, berth: BerthConfig) -> BerthConfig:
        """The checkpoint's berth.json with the window settings given here: what the
        gates check and the ensemble serves."""
        changes: dict[str, object] = {}
        if self.max_windows is not None:
            changes["max_windows"] = self.max_windows
            if self.max_windows <= 1:
                changes["window_stride"] = 0
            elif not (self.window_stride or berth.window_stride):
                changes["window_stride"] = max(1, berth.max_length * 3 // 4)
        if self.window_stride is not None:
            changes["window_stride"] = self.window_stride
        if self.aggregation is not None:
            changes["aggregation"] = self.aggregation
        return dataclasses.replace(berth, **changes) if changes else berth

    def record(self) -> dict:
        """The configuration as the report records it: one flat dict, paths as strings."""
        flat = dataclasses.asdict(self)
        flat.update(flat.pop("serving"))
        return {k: str(v) if isinstance(v, Path) else v for k, v in flat.items()}


def build_parser() -> ConfigParser:
    return ConfigParser(
        ExportConfig,
        prog="python -m export",
        description=f"Export a berth checkpoint to ONNX ({'/'.join(VARIANTS)}), check parity "
        "and accuracy, write export_report.{json,md} and publish the Triton ensemble.",
    )


def parse_args(argv: Sequence[str] | None = None) -> ExportConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return parser.config_from(args)
    except ExportInputError:
        raise
    except ValueError as exc:  # ServingSettings' own checks of the flag values
        raise ExportInputError(str(exc)) from exc


__all__ = [
    "SERVING_FLAGS",
    "ExportConfig",
    "ExportInputError",
    "build_parser",
    "parse_args",
]
