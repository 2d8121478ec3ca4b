"""The export stage: checkpoint → gated ONNX variants → a new version of the ensemble.

    python -m export --checkpoint runs/sentiment/model --name sentiment \
        --model-repository model_repository

Steps: export fp32 ONNX (logits + in-graph probabilities); optionally keep the
onnxruntime.transformers fusions (`--optimize auto` measures and keeps them only when
faster, and picks the int8 graph and session optimizers the CPU classifier runs
fastest); check parity with the PyTorch reference predictor (max |Δlogit| and argmax,
enforced); derive fp16 and int8; score every variant on the held-out split beside fp32
and refuse any that loses more than `--max-accuracy-drop` points; write
`export_report.{json,md}`; publish the Triton repository atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import berth_core
from berth_args import ConfigParser, arg, groups, option
from berth_core.checkpoint import BERTH_FILE, BerthConfig
from berth_core.encoding import AGGREGATIONS
from berth_core.errors import GateError, InputError
from berth_core.names import SESSION_FILE
from export import onnx_export
from export.evaluate import (
    OnnxClassifier,
    classification_scores,
    interleaved_median_ms,
    joined_texts,
    latency,
    load_eval,
    parity,
)
from export.repository import publish
from export.triton_config import (
    VARIANTS,
    ServingSettings,
    aggregate_model_name,
    classifier_model_name,
    render,
    repository_configs,
    tokenizer_model_name,
    window_parameters,
)
from training.metrics import agreement

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_MODEL_SOURCE = ROOT / "serving" / "tokenizer_model" / "model.py"
AGGREGATE_MODEL_SOURCE = ROOT / "serving" / "aggregate_model" / "model.py"


class ExportRefused(GateError):
    """A gate (parity, accuracy) refused the export; nothing was published."""


class ExportInputError(InputError):
    """What the user asked for cannot be exported: a bad flag value, a missing or
    unreadable checkpoint or held-out file. `python -m export` exits 2 on it."""


# The ServingSettings fields export's command line sets, and how (the rest keep
# ServingSettings' defaults).
SERVING_FLAGS: dict[str, dict] = {
    "max_batch_size": arg("max_batch_size of every model", "serving"),
    "bucket": arg(
        "tokenizer pads to a multiple of this many tokens: each request (CPU, ragged) "
        "or each batch (GPU, --no-ragged)",
        "serving",
    ),
    "ragged": arg(
        "CPU configs without ragged batching: the tokenizer pads each batch to one "
        "length and the classifier batches only equal shapes (GPU configs never use "
        "ragged inputs)",
        "serving",
        flag="--no-ragged",
    ),
    "ragged_run_cost_tokens": arg(
        "ragged batching: one onnxruntime run costs as much as this many tokens, when "
        "the backend cuts a length-sorted batch into padded sub-batches",
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
    variants: str = option("fp32,fp16,int8", "comma-separated variants to build: fp32,fp16,int8")
    default_variant: str = option("int8", "variant the ensemble's config.pbtxt (CPU) uses")
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
        unknown = [v for v in self.variant_list if v not in VARIANTS]
        if unknown or not self.variant_list:
            raise ValueError(f"--variants: {unknown or 'none'}; choose from {VARIANTS}")
        if "fp32" not in self.variant_list:
            raise ValueError(
                "--variants must include fp32: the reference every variant is scored against"
            )
        for flag, value in (
            ("--default-variant", self.default_variant),
            ("--gpu-variant", self.gpu_variant),
        ):
            if value not in self.variant_list:
                raise ValueError(f"{flag} {value!r} is not among --variants {self.variants}")

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
        description="Export a berth checkpoint to ONNX (fp32/fp16/int8), check parity and "
        "accuracy, write export_report.{json,md} and publish the Triton ensemble.",
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


# --------------------------------------------------------------------------- steps


def _say(message: str) -> None:
    print(f"[export] {message}", flush=True)


def _score_variant(
    variant: str,
    path: Path,
    cfg: ExportConfig,
    berth: BerthConfig,
    eval_texts: list[str],
    targets: np.ndarray,
    parity_texts: list[str],
    reference_logits: np.ndarray,
    disabled_optimizers: Sequence[str] = (),
    teacher: tuple[BerthConfig, np.ndarray] | None = None,
) -> dict:
    runner = OnnxClassifier(
        path,
        cfg.checkpoint,
        threads=cfg.threads,
        disabled_optimizers=disabled_optimizers,
        berth=berth,
    )
    started = time.monotonic()
    logits, _ = runner.logits_and_probabilities(parity_texts)
    parity_result = parity(reference_logits, logits, berth.multi_label)
    eval_logits, probs = runner.logits_and_probabilities(eval_texts)
    scores = classification_scores(probs, targets, berth)
    if teacher is not None:
        scores["teacher_agreement"] = agreement(eval_logits, teacher[1], berth, teacher[0])
    scoring_s = time.monotonic() - started
    lat = [latency(runner, eval_texts, bs, cfg.latency_runs) for bs in (1, 32)]
    return {
        "variant": variant,
        "file": str(path),
        "size_mb": path.stat().st_size / 1e6,
        "parity": parity_result,
        "scores": scores,
        "scoring_s": scoring_s,
        "latency": {f"batch_{entry['batch_size']}": entry for entry in lat},
    }


def _choose_fusion(
    cfg: ExportConfig,
    raw: Path,
    work: Path,
    eval_texts: list[str],
    berth: BerthConfig | None = None,
) -> dict:
    """Returns {"path": chosen fp32 file, "fused": bool, "fused_path", ...measurements}."""
    if cfg.optimize == "off":
        return {"path": raw, "fused": False, "mode": "off"}
    fused_path = onnx_export.fuse(cfg.checkpoint, raw, work / "model.fused.onnx")
    if cfg.optimize == "on":
        return {"path": fused_path, "fused": True, "mode": "on"}
    runners = {
        label: OnnxClassifier(path, cfg.checkpoint, threads=cfg.threads, berth=berth)
        for label, path in (("unfused", raw), ("fused", fused_path))
    }
    by_batch = {
        bs: interleaved_median_ms(runners, eval_texts, bs, cfg.latency_runs) for bs in (1, 32)
    }
    measured = {label: {f"batch_{bs}": by_batch[bs][label] for bs in by_batch} for label in runners}
    keep = measured["fused"]["batch_32"] < 0.95 * measured["unfused"]["batch_32"]
    return {
        "path": fused_path if keep else raw,
        "fused": keep,
        "fused_path": fused_path,
        "mode": "auto",
        "median_ms": measured,
        "decision": "kept the fusions (>=5% faster at batch 32)"
        if keep
        else "dropped the fusions (not >=5% faster at batch 32 than onnxruntime's own "
        "session-level optimizations)",
    }


# onnxruntime's session-level SkipLayerNormalization fusion: on the onnxruntime 1.32 CPU
# build its fused kernel took 2x the time of the LayerNormalization + Add it replaces
# (BENCHMARKS.md, "Where the time goes").
SLOW_FUSIONS = ("SkipLayerNormFusion",)


def _build_int8(
    cfg: ExportConfig,
    raw: Path,
    fusion: dict,
    target: Path,
    eval_texts: list[str],
    berth: BerthConfig | None = None,
) -> dict:
    """Quantize, and with `--optimize auto` pick the int8 graph the CPU classifier runs
    fastest at its serving thread count: quantized from the fused or the unfused graph,
    with or without onnxruntime's SkipLayerNorm fusion, timed in turns at batch 32. A
    candidate replaces the plain one (unfused, every session optimizer) only when faster
    by a margin: >=5% for the other graph (its int8 weights differ, and so does its
    accuracy), >=2% for a disabled session fusion (the same arithmetic; a smaller margin
    keeps a real but modest gain from flipping between exports on noise).

    Returns {"source", "disabled_optimizers", ...measurements}."""
    if cfg.optimize != "auto":
        onnx_export.to_int8(fusion["path"], target, fused=fusion["fused"])
        return {"source": "fused" if fusion["fused"] else "unfused", "disabled_optimizers": []}
    graphs = {"unfused": _work_file(target, "unfused"), "fused": _work_file(target, "fused")}
    onnx_export.to_int8(raw, graphs["unfused"], fused=False)
    onnx_export.to_int8(fusion["fused_path"], graphs["fused"], fused=True)
    candidates = [
        ("unfused", ()),
        ("fused", ()),
        ("unfused", SLOW_FUSIONS),
    ]
    runners = {
        _key((source, disabled)): OnnxClassifier(
            graphs[source],
            cfg.checkpoint,
            threads=cfg.serving.intra_op_threads,
            disabled_optimizers=disabled,
            berth=berth,
        )
        for source, disabled in candidates
    }
    median_ms = interleaved_median_ms(runners, eval_texts, 32, cfg.latency_runs)
    del runners
    best = choose_int8(candidates, median_ms)
    baseline = median_ms[_key(candidates[0])]
    source, disabled = best
    graphs[source].replace(target)
    for path in graphs.values():
        path.unlink(missing_ok=True)
    return {
        "source": source,
        "disabled_optimizers": list(disabled),
        "threads": cfg.serving.intra_op_threads,
        "batch_32_median_ms": median_ms,
        "decision": f"int8 from the {source} graph"
        + (f", without {', '.join(disabled)}" if disabled else "")
        + f" ({median_ms[_key(best)]:.1f} ms vs {baseline:.1f} ms at batch 32, "
        f"{cfg.serving.intra_op_threads} thread(s))",
    }


def choose_int8(
    candidates: list[tuple[str, tuple[str, ...]]], median_ms: dict[str, float]
) -> tuple[str, tuple[str, ...]]:
    """The fastest candidate that beats the first (the baseline) by its margin: 5% for
    another graph, 2% for the baseline's graph with session fusions disabled."""
    baseline = median_ms[_key(candidates[0])]

    def wins(candidate: tuple[str, tuple[str, ...]]) -> bool:
        margin = 0.98 if candidate[0] == candidates[0][0] else 0.95
        return candidate == candidates[0] or median_ms[_key(candidate)] < margin * baseline

    return min(filter(wins, candidates), key=lambda c: median_ms[_key(c)])


def _key(candidate: tuple[str, tuple[str, ...]]) -> str:
    source, disabled = candidate
    return source + "".join(f" -{name}" for name in disabled)


def _work_file(target: Path, tag: str) -> Path:
    return target.with_name(f"{target.stem}.{tag}{target.suffix}")


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "export_report.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path = out / "export_report.md"
    md_path.write_text(report_markdown(report))
    return json_path, md_path


def report_markdown(report: dict) -> str:
    lines = [
        f"# Export report: {report['name']}",
        "",
        f"- checkpoint: `{report['checkpoint']}`",
        f"- problem type: {report['problem_type']}, labels: {', '.join(report['labels'])}",
        f"- held-out rows scored: {report['eval_rows']} (`{report['eval_file']}`), "
        f"parity texts: {report['parity_texts']}",
        f"- machine: {report['machine']}, onnxruntime threads: {report['threads'] or 'default'}",
        f"- fusions: {report['fusion'].get('decision', report['fusion']['mode'])}",
        f"- long texts: {windows_line(report['windows'], report['max_length'])}",
        *(
            [f"- {report['int8_graph']['decision']}"]
            if report.get("int8_graph", {}).get("decision")
            else []
        ),
        f"- status: **{report['status']}**"
        + (f", published as version {report['version']}" if report.get("version") else ""),
        "",
        "| variant | size MB | metric | Δ vs fp32 (pts) | max abs Δlogit vs PyTorch | "
        "argmax agree | agrees with teacher | batch 1 ms | batch 32 ms | texts/s @32 | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in report["variants"]:
        s = v["scores"]
        metric = ", ".join(
            f"{k} {s[k]:.2f}" for k in ("accuracy", "micro_f1", "macro_f1") if k in s
        )
        lines.append(
            f"| {v['variant']} | {v['size_mb']:.1f} | {metric} | {-v['drop'] or 0.0:+.2f} | "
            f"{v['parity']['max_abs_logit_diff']:.2e} | "
            f"{100 * v['parity']['argmax_agreement']:.1f} % | "
            f"{_percent(s.get('teacher_agreement'))} | "
            f"{v['latency']['batch_1']['median_ms']:.2f} | "
            f"{v['latency']['batch_32']['median_ms']:.2f} | "
            f"{v['latency']['batch_32']['texts_per_s']:.0f} | {v['verdict']} |"
        )
    if report.get("refusals"):
        lines += ["", "## Refused", ""] + [f"- {r}" for r in report["refusals"]]
    lines.append("")
    return "\n".join(lines)


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.2f} %"


def teacher_reference(
    berth: BerthConfig, texts: list[str]
) -> tuple[BerthConfig, np.ndarray] | None:
    """A distilled student's teacher and its logits on `texts` (PyTorch reference), so
    that each variant's agreement with its teacher is reported; None for other
    checkpoints, or when the teacher is no longer where berth.json says."""
    from training.predict import Predictor

    teacher_dir = Path((berth.distillation or {}).get("teacher", ""))
    if not berth.distillation or not (teacher_dir / BERTH_FILE).is_file():
        if berth.distillation:
            _say(f"teacher {teacher_dir} not found: agreement with it is not reported")
        return None
    _say(f"teacher {teacher_dir}: scoring the held-out rows for agreement")
    teacher = Predictor(teacher_dir)
    return teacher.config, teacher.logits(texts)


def windows_line(windows: dict, max_length: int) -> str:
    if windows["max_windows"] <= 1:
        return f"one window of {max_length} tokens (the rest truncated)"
    return (
        f"up to {windows['max_windows']} windows of {max_length} tokens, "
        f"{windows['window_stride']} apart, aggregated by {windows['aggregation']}"
    )


def stage_versions(
    cfg: ExportConfig, berth: BerthConfig, files: dict[str, Path], stage: Path, report: dict
) -> dict[str, Path]:
    """Directories whose contents become the new versions, per model."""
    if stage.exists():
        shutil.rmtree(stage)
    versions: dict[str, Path] = {}
    tok = stage / tokenizer_model_name(cfg.name)
    tok.mkdir(parents=True)
    shutil.copy2(TOKENIZER_MODEL_SOURCE, tok / "model.py")
    berth_core.copy_to(tok)
    shutil.copy2(cfg.checkpoint / "tokenizer.json", tok / "tokenizer.json")
    versions[tok.name] = tok
    if berth.windowed:
        aggregate = stage / aggregate_model_name(cfg.name)
        aggregate.mkdir(parents=True)
        shutil.copy2(AGGREGATE_MODEL_SOURCE, aggregate / "model.py")
        berth_core.copy_to(aggregate)
        versions[aggregate.name] = aggregate
    for variant, path in files.items():
        model = stage / classifier_model_name(cfg.name, variant)
        model.mkdir(parents=True)
        shutil.copy2(path, model / "model.onnx")
        versions[model.name] = model
    ensemble = stage / cfg.name  # the ensemble's version dir: provenance only
    ensemble.mkdir(parents=True)
    berth.save(ensemble)  # as served: the checkpoint's, with export's window settings
    (ensemble / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    versions[cfg.name] = ensemble
    return versions


def load_berth(checkpoint: Path) -> BerthConfig:
    """The checkpoint's berth.json, read once per export; a missing or unreadable one is
    the user's input error."""
    try:
        return BerthConfig.load(checkpoint)
    except (OSError, ValueError, TypeError) as exc:
        raise ExportInputError(f"--checkpoint {checkpoint}: {exc}") from exc


@dataclass
class ExportRun:
    """What one export works with: its configuration, berth.json read once (as the
    checkpoint has it, and as the ensemble will serve it), its folders and the held-out
    rows every variant is scored on."""

    cfg: ExportConfig
    checkpoint_berth: BerthConfig
    berth: BerthConfig
    out: Path
    work: Path
    eval_file: Path
    eval_texts: list[str]
    targets: np.ndarray
    parity_texts: list[str]
    started: float = field(default_factory=time.monotonic)


def prepare(cfg: ExportConfig, berth: BerthConfig | None = None) -> ExportRun:
    """Read berth.json and the held-out split; make a fresh work folder."""
    checkpoint_berth = berth or load_berth(cfg.checkpoint)
    served = cfg.serving_berth(checkpoint_berth)
    out = cfg.resolved_output_dir
    work = out / "onnx"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    eval_file = cfg.resolved_eval_file
    if not eval_file.is_file():
        raise ExportInputError(f"--eval-file {eval_file} does not exist")
    try:
        eval_texts, targets = load_eval(eval_file, served, cfg.max_eval_samples or None)
    except (OSError, ValueError, KeyError) as exc:
        raise ExportInputError(f"--eval-file {eval_file}: {exc!s}") from exc
    parity_texts = eval_texts[: cfg.parity_samples]
    if served.windowed:  # long real texts too, so that the gate covers the aggregation
        parity_texts += joined_texts(eval_texts)
    _say(f"{len(eval_texts)} held-out rows from {eval_file}; parity on {len(parity_texts)}")
    return ExportRun(
        cfg, checkpoint_berth, served, out, work, eval_file, eval_texts, targets, parity_texts
    )


def build_variants(run: ExportRun, raw: Path, fusion: dict) -> tuple[dict[str, Path], dict]:
    """({variant: ONNX file}, the int8 graph's choice) for every variant asked for."""
    files: dict[str, Path] = {}
    int8: dict = {"disabled_optimizers": []}  # replaced when int8 is built
    for variant in run.cfg.variant_list:
        target = run.work / f"model.{variant}.onnx"
        if variant == "fp32":
            shutil.copy2(fusion["path"], target)
        elif variant == "fp16":
            onnx_export.to_fp16(fusion["path"], target)
        else:
            int8 = _build_int8(run.cfg, raw, fusion, target, run.eval_texts, run.checkpoint_berth)
            _say(f"int8: {int8.get('decision', int8['source'])}")
        files[variant] = target
    return files, int8


def score_variants(run: ExportRun, files: dict[str, Path], int8: dict) -> list[dict]:
    """Each variant's parity with the PyTorch reference, scores and latency."""
    from training.predict import Predictor

    reference_logits = Predictor(run.cfg.checkpoint, config=run.berth).logits(run.parity_texts)
    teacher = teacher_reference(run.berth, run.eval_texts)
    results = []
    for variant, path in files.items():
        _say(f"scoring {variant} …")
        disabled = int8["disabled_optimizers"] if variant == "int8" else []
        results.append(
            _score_variant(
                variant,
                path,
                run.cfg,
                run.berth,
                run.eval_texts,
                run.targets,
                run.parity_texts,
                reference_logits,
                disabled,
                teacher,
            )
        )
    return results


def apply_gates(cfg: ExportConfig, results: list[dict]) -> tuple[list[str], bool]:
    """Give each result its verdict; returns (refusals, fatal): fatal when fp32 parity
    fails or a variant that must be served loses too much accuracy."""
    fp32 = next(r for r in results if r["variant"] == "fp32")
    refusals: list[str] = []
    p = fp32["parity"]
    fp32_ok = p["max_abs_logit_diff"] <= cfg.parity_tolerance and p["argmax_agreement"] == 1.0
    fatal = not fp32_ok
    if not fp32_ok:
        refusals.append(
            f"fp32 parity failed: max |Δlogit| {p['max_abs_logit_diff']:.3g} (limit "
            f"{cfg.parity_tolerance:g}), argmax agreement {100 * p['argmax_agreement']:.2f} % "
            f"(must be 100 %) on {p['texts']} held-out texts against the PyTorch reference"
        )
    for r in results:
        r["drop"] = fp32["scores"]["primary"] - r["scores"]["primary"]
        r["verdict"] = "ok"
        if r["variant"] == "fp32":
            r["verdict"] = "ok" if fp32_ok else "refused: parity"
            continue
        if r["drop"] > cfg.max_accuracy_drop:
            r["verdict"] = "refused: accuracy"
            metric = r["scores"]["primary_metric"]
            refusals.append(
                f"{r['variant']} refused: {metric} {r['scores']['primary']:.2f} vs fp32 "
                f"{fp32['scores']['primary']:.2f} loses {r['drop']:.2f} points, more than "
                f"--max-accuracy-drop {cfg.max_accuracy_drop:g}"
            )
            if not cfg.skip_refused or r["variant"] in (cfg.default_variant, cfg.gpu_variant):
                fatal = True
    return refusals, fatal


def build_report(
    run: ExportRun, fusion: dict, int8: dict, results: list[dict], refusals: list[str], fatal
) -> dict:
    cfg, berth = run.cfg, run.berth
    return {
        "name": cfg.name,
        "checkpoint": str(cfg.checkpoint),
        "labels": list(berth.labels),
        "problem_type": berth.problem_type,
        "thresholds": berth.decision_thresholds() if berth.multi_label else None,
        "eval_file": str(run.eval_file),
        "eval_rows": len(run.eval_texts),
        "parity_texts": len(run.parity_texts),
        "parity_tolerance": cfg.parity_tolerance,
        "max_accuracy_drop": cfg.max_accuracy_drop,
        "opset": cfg.opset,
        "threads": cfg.threads,
        "max_length": berth.max_length,
        "windows": window_parameters(berth),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "fusion": {k: (str(v) if isinstance(v, Path) else v) for k, v in fusion.items()},
        "int8_graph": int8,
        "variants": results,
        "refusals": refusals,
        "status": "refused" if fatal else ("no-publish" if cfg.no_publish else "published"),
        "config": cfg.record(),
    }


def publish_variants(
    run: ExportRun, files: dict[str, Path], published: list[str], int8: dict, report: dict
) -> int:
    """Write the passing variants as a new version of every model; returns the version."""
    cfg, berth = run.cfg, run.berth
    configs = repository_configs(
        cfg.name,
        berth,
        published,
        cfg.default_variant,
        cfg.gpu_variant,
        cfg.serving,
    )
    texts = {rel: render(c) for rel, c in configs.items()}
    publish_files = {v: files[v] for v in published}
    versions = stage_versions(cfg, berth, publish_files, run.out / "staged", report)
    int8_version = versions.get(classifier_model_name(cfg.name, "int8"))
    if int8_version is not None and int8["disabled_optimizers"]:
        # measured on this machine: beside the graph it was measured on, never in the
        # (committed) configs, which stay the same whichever CPU exported
        session = {"disabled_optimizers": list(int8["disabled_optimizers"])}
        (int8_version / SESSION_FILE).write_text(json.dumps(session) + "\n")
    version = publish(cfg.model_repository, versions, texts, cfg.keep_versions)
    stale = cfg.model_repository / aggregate_model_name(cfg.name)
    if not berth.windowed and stale.is_dir():
        # a one-window ensemble has no aggregation member; a config left without
        # versions would stop tritonserver from starting ("failed to load all models")
        shutil.rmtree(stale)
    shutil.rmtree(run.out / "staged", ignore_errors=True)
    _say(
        f"published {cfg.name} version {version} to {cfg.model_repository} "
        f"(CPU: {cfg.default_variant}, GPU: {cfg.gpu_variant}; variants {published})"
    )
    return version


def run_export(cfg: ExportConfig, berth: BerthConfig | None = None) -> dict:
    """Run the whole stage; returns the report. Raises ExportRefused when a gate fails
    (the report is still written; the repository is untouched), ExportInputError when
    the checkpoint or held-out file cannot be used. `berth`: the checkpoint's berth.json
    when the caller has read it (default: read here, once)."""
    run = prepare(cfg, berth)
    raw = onnx_export.export_fp32(
        cfg.checkpoint, run.work / "model.raw.onnx", cfg.opset, berth=run.checkpoint_berth
    )
    fusion = _choose_fusion(cfg, raw, run.work, run.eval_texts, run.checkpoint_berth)
    _say(f"fusions: {fusion.get('decision', fusion['mode'])}")
    files, int8 = build_variants(run, raw, fusion)
    results = score_variants(run, files, int8)
    refusals, fatal = apply_gates(cfg, results)
    report = build_report(run, fusion, int8, results, refusals, fatal)
    for line in refusals:
        _say(f"REFUSED: {line}")
    if fatal:
        report["elapsed_s"] = time.monotonic() - run.started
        write_report(report, run.out)
        raise ExportRefused(
            "export refused, nothing published (repository unchanged):\n  " + "\n  ".join(refusals)
        )
    if not cfg.no_publish:
        published = [r["variant"] for r in results if r["verdict"] == "ok"]
        report["version"] = publish_variants(run, files, published, int8, report)
        report["published_variants"] = published
    report["elapsed_s"] = time.monotonic() - run.started
    json_path, md_path = write_report(report, run.out)
    _say(f"report: {json_path}, {md_path}")
    return report


__all__ = [
    "ExportConfig",
    "ExportInputError",
    "ExportRefused",
    "build_parser",
    "parse_args",
    "run_export",
]
