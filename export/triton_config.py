"""Typed Triton model configurations, rendered through Triton's protobuf definitions.

Each model of a berth repository is described by a small dataclass whose `config()`
(and `gpu_config()`, `pip_config()`) returns a `model_config_pb2.ModelConfig`;
`render()` turns it into `config.pbtxt` text with `google.protobuf.text_format`,
`parse()` reads it back. No string templates: a typo in a field name fails at build
time, not when Triton loads it.

The repository for a model named `<name>`:

    <name>/                 ensemble: TEXT → tokenizer → classifier [→ aggregate]
                            → LOGITS, PROBABILITIES
      config.pbtxt          the stock container on CPU: <name>_onnx_<default variant> (int8)
      configs/gpu.pbtxt     --model-config-name=gpu: uses <name>_onnx_<gpu variant> (fp16)
      configs/pip.pbtxt     `python -m serving` (pip tritonserver + berth's Python runner)
    <name>_tokenizer/       Python backend, `tokenizers` via berth_core/encoding.py
      config.pbtxt          pads each batch to one length (`padding: batch`; each request
                            to its own with --container-ragged)
      configs/gpu.pbtxt     pads each batch to one length
      configs/pip.pbtxt     pads each request to its own length (`padding: per_request`)
    <name>_onnx_<variant>/  backend "onnxruntime", one per variant (fp32, fp16, int8:
                            export/variants.py declares where each may serve)
      config.pbtxt          KIND_CPU, thread settings, padded batches (the native backend);
                            --container-ragged: ragged batches as the native backend takes
                            them, model_flat.onnx (export/flat_graph.py) fed with a
                            BATCH_ITEM_SHAPE batch input
      configs/gpu.pbtxt     KIND_GPU + TensorRT accelerator (fp32/fp16; int8 stays on CPU)
      configs/pip.pbtxt     KIND_CPU, ragged inputs (berth's Python runner sub-batches them
                            by length; the native backend takes none on this graph)
    <name>_aggregate/       window mode only (berth.json max_windows > 1): Python backend,
                            window logits → one row per text (berth_core/encoding.py)

In window mode the tokenizer sends each text's windows to the classifier as rows (so
its dynamic batcher merges the windows of different requests) with a `windows` tensor
(each row's text and weight). Where the windows are aggregated:

- pip configs with ragged batching (berth's Python onnxruntime runner): in the
  classifier step itself, which takes `windows` as a third input and answers one row
  per text. Still two steps: a text of one window costs what it cost before windows (a
  third Python step cost ~190 µs of server CPU per request, measured).
- the default and GPU configs (the native onnxruntime backend), and `--no-ragged` pip
  configs: in a third step, `<name>_aggregate`.

A request of `max_batch_size` texts may carry `max_batch_size × max_windows` windows: the
classifier and the aggregation step accept that many rows. A model without windows keeps
the two-step ensemble, exactly as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from berth_core.checkpoint import BerthConfig
from berth_core.names import (
    ATTENTION_MASK,
    CONFIG_FILE,
    FLAT_MODEL_FILE,
    GPU_CONFIG_FILE,
    INPUT_IDS,
    ITEM_SHAPE,
    LOGITS,
    MODEL_FILE,
    ONNX_LOGITS,
    ONNX_PROBABILITIES,
    PIP_CONFIG_FILE,
    PROBABILITIES,
    TEXT,
    TOKENIZER_FILE,
    WINDOWS,
    aggregate_model_name,
    classifier_model_name,
    tokenizer_model_name,
)
from export.variants import VARIANTS, Variant, variant


def render(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def window_parameters(berth: BerthConfig) -> dict[str, object]:
    return {
        "window_stride": berth.window_stride,
        "max_windows": berth.max_windows,
        "aggregation": berth.aggregation,
    }


def _tensor(name: str, data_type: int, dims: list[int]) -> dict:
    return {"name": name, "data_type": data_type, "dims": dims}


def _set_parameters(config: mc.ModelConfig, parameters: dict[str, object]) -> None:
    for key, value in parameters.items():
        config.parameters[key].string_value = str(value)


def _set_queue_policy(config: mc.ModelConfig, settings: ServingSettings) -> None:
    """Bounded queue: reject (not pile up) what the model cannot serve in time."""
    policy = config.dynamic_batching.default_queue_policy
    policy.max_queue_size = settings.max_queue_size
    policy.timeout_action = mc.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = settings.queue_timeout_us
    policy.allow_timeout_override = True


@dataclass
class ServingSettings:
    """Batching, instance and thread settings shared by the repository's models."""

    max_batch_size: int = 64
    # Tokenizer: pad to a multiple of `bucket` tokens (capped at max_length): each
    # request to its own longest text when `ragged` (pip configs), else each batch to
    # its longest (the default and GPU configs, and pip ones when `ragged` is off).
    bucket: int = 8
    # pip configs (configs/pip.pbtxt): the classifier's inputs allow ragged batches, so
    # its dynamic batcher merges requests of any length; berth's Python onnxruntime
    # runner sorts them and runs sub-batches padded to their own longest, each
    # `session.run` weighed as `ragged_run_cost_tokens` tokens when it plans the cuts.
    # The native onnxruntime backend takes ragged inputs only on a flat [-1] graph input:
    # `container_ragged` below.
    ragged: bool = True
    ragged_run_cost_tokens: int = 16
    # The default (stock-container) CPU configs: ragged batches in the form the native
    # onnxruntime backend takes, the classifier behind a flat front end
    # (export/flat_graph.py, `model_flat.onnx` next to `model.onnx`) fed with Triton's
    # BATCH_ITEM_SHAPE batch input; the tokenizer then pads each request to its own
    # length. Off (the default): padded batches of equal shapes, as the GPU configs
    # always are. Opt-in: on this CPU it carried no more requests than padded batches
    # (BENCHMARKS.md): one session.run pads a merged batch to its longest row.
    container_ragged: bool = False
    tokenizer_instances: int = 1
    tokenizer_queue_delay_us: int = 1000
    classifier_instances: int = 2
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    classifier_queue_delay_us: int = 1000
    # Per variant: onnxruntime graph optimizers its CPU classifier skips (berth's
    # Python runner; the native backend ignores the parameter). Set by hand: what
    # export measures goes into the version directory's session.json instead.
    disabled_optimizers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    gpu_instances: int = 1
    gpu_queue_delay_us: int = 500
    trt_precision: str = "FP16"
    trt_workspace_bytes: int = 1 << 30
    # Inside the container; docker/compose.yaml mounts a volume there.
    trt_cache_dir: str = "/trt-cache"
    version_policy_latest: int = 1
    # Overload protection (RELIABILITY.md): every dynamic batcher (tokenizer and
    # classifiers) holds at most `max_queue_size` requests (0 = unbounded) and rejects
    # the rest at once; a request that waited `queue_timeout_us` (0 = no limit) is
    # rejected too. Both are UNAVAILABLE to the client (berth-client:
    # ServerOverloadedError, retried with backoff). Clients may set a shorter timeout.
    # 64 and 0.5 s: overloaded at 2x and 5x its capacity (open loop, BENCHMARKS.md), the
    # demo's ensemble kept the accepted requests' p99 near or under 0.5 s; with 256 and
    # 2 s, at 1.14x it answered after 0.74 s (median) and 0.93 s (p99).
    max_queue_size: int = 64
    queue_timeout_us: int = 500_000
    # Tokenizer: texts longer than this many UTF-8 bytes are refused before tokenization.
    max_text_bytes: int = 1 << 20
    # Admission in the tokenizer (berth_core/admission.py), off by default: the tokenizer
    # refuses requests beyond this many a second (UNAVAILABLE) before tokenizing them.
    # Set it near the capacity `python -m loadtest` measures on the serving machine: the
    # rate a server sustains is a property of its machine, not of the model.
    admission_rate: float = 0.0
    admission_burst: int = 0  # 0: a tenth of a second's worth
    # Triton's response cache on the ensemble (all its configurations): a repeated request
    # (the same texts) is answered from the cache, no member model runs. The server needs
    # a cache too (`python -m serving --cache-size`, `tritonserver --cache-config
    # local,size=N`); without one the setting is ignored.
    response_cache: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be > 0 (clients send [batch, 1])")
        if self.max_queue_size < 0 or self.queue_timeout_us < 0:
            raise ValueError("max_queue_size and queue_timeout_us must be >= 0 (0 = no limit)")
        if self.max_text_bytes < 1:
            raise ValueError("max_text_bytes must be >= 1")
        if self.admission_rate < 0 or self.admission_burst < 0:
            raise ValueError("admission_rate and admission_burst must be >= 0 (0 = off, default)")
        if self.bucket < 1:
            raise ValueError("bucket must be >= 1")


@dataclass
class TokenizerModel:
    name: str
    berth: BerthConfig
    settings: ServingSettings = field(default_factory=ServingSettings)
    tokenizer_file: str = TOKENIZER_FILE

    def config(self) -> mc.ModelConfig:
        """Pads each batch to one length (the native backend batches equal shapes), or
        each request to its own where the classifiers take flat ragged batches."""
        return self._config("per_request" if self.settings.container_ragged else "batch")

    def gpu_config(self) -> mc.ModelConfig:
        return self._config("batch")

    def pip_config(self) -> mc.ModelConfig:
        """Pads each request to its own length when the classifiers take ragged batches."""
        return self._config("per_request" if self.settings.ragged else "batch")

    def _config(self, padding: str) -> mc.ModelConfig:
        s = self.settings
        windows = [_tensor(WINDOWS, mc.TYPE_INT64, [2])] if self.berth.windowed else []
        cfg = mc.ModelConfig(
            name=self.name,
            backend="python",
            max_batch_size=s.max_batch_size,
            input=[_tensor(TEXT, mc.TYPE_STRING, [1])],
            output=[
                _tensor(INPUT_IDS, mc.TYPE_INT64, [-1]),
                _tensor(ATTENTION_MASK, mc.TYPE_INT64, [-1]),
                *windows,
            ],
            instance_group=[
                {"kind": mc.ModelInstanceGroup.KIND_CPU, "count": s.tokenizer_instances}
            ],
        )
        cfg.version_policy.latest.num_versions = s.version_policy_latest
        cfg.dynamic_batching.max_queue_delay_microseconds = s.tokenizer_queue_delay_us
        _set_queue_policy(cfg, s)
        _set_parameters(
            cfg,
            {
                "tokenizer_file": self.tokenizer_file,
                "max_length": self.berth.max_length,
                "truncation": self.berth.truncation,
                "head_tokens": self.berth.head_tokens,
                "bucket": s.bucket,
                "padding": padding,
                "max_text_bytes": s.max_text_bytes,
                **(
                    {"admission_rate": s.admission_rate, "admission_burst": s.admission_burst}
                    if s.admission_rate > 0
                    else {}
                ),
                **(
                    {
                        "window_stride": self.berth.window_stride,
                        "max_windows": self.berth.max_windows,
                    }
                    if self.berth.windowed
                    else {}
                ),
            },
        )
        return cfg


@dataclass
class ClassifierModel:
    name: str
    variant: str
    num_labels: int
    settings: ServingSettings = field(default_factory=ServingSettings)
    model_filename: str = MODEL_FILE
    # Window mode: rows are windows, up to this many per text of a full request. The CPU
    # backend then runs at most `max_run_tokens` (rows × padded length) per session.run:
    # never more than the largest run of one-window texts. Ragged CPU configs aggregate
    # the windows in the classifier step (`aggregation`, `problem_type`: berth.json's).
    max_windows: int = 1
    max_run_tokens: int = 0
    aggregation: str = "mean"
    problem_type: str = ""

    def __post_init__(self) -> None:
        variant(self.variant)  # an unknown one is refused (an InputError: a ValueError)

    @property
    def declared(self) -> Variant:
        """The variant's declaration (export/variants.py): where it serves, TensorRT's
        precision."""
        return variant(self.variant)

    @property
    def max_batch_size(self) -> int:
        return self.settings.max_batch_size * self.max_windows

    def _base(self) -> mc.ModelConfig:
        cfg = mc.ModelConfig(
            name=self.name,
            backend="onnxruntime",
            max_batch_size=self.max_batch_size,
            default_model_filename=self.model_filename,
            input=[
                _tensor(INPUT_IDS, mc.TYPE_INT64, [-1]),
                _tensor(ATTENTION_MASK, mc.TYPE_INT64, [-1]),
            ],
            output=[
                _tensor(ONNX_LOGITS, mc.TYPE_FP32, [self.num_labels]),
                _tensor(ONNX_PROBABILITIES, mc.TYPE_FP32, [self.num_labels]),
            ],
        )
        cfg.version_policy.latest.num_versions = self.settings.version_policy_latest
        return cfg

    def config(self) -> mc.ModelConfig:
        """CPU, as the native backend takes it: dynamic batching of padded batches,
        `classifier_instances` × `intra_op_threads`. A variant that cannot serve on CPU
        instances has only its GPU configuration."""
        if not self.declared.cpu:
            return self.gpu_config()
        if self.settings.container_ragged:
            return self._flat_config()
        return self._cpu_config(ragged=False)

    def _flat_config(self) -> mc.ModelConfig:
        """Ragged batches as the native backend takes them: flat inputs, each row's
        length from Triton's BATCH_ITEM_SHAPE batch input (export/flat_graph.py)."""
        cfg = self._cpu_config(ragged=True, flat=True)
        cfg.default_model_filename = FLAT_MODEL_FILE
        cfg.batch_input.add(
            kind=mc.BatchInput.BATCH_ITEM_SHAPE,
            target_name=[ITEM_SHAPE],
            data_type=mc.TYPE_INT32,
            source_input=[INPUT_IDS],
        )
        return cfg

    def pip_config(self) -> mc.ModelConfig:
        """CPU for berth's Python runner: ragged inputs when `settings.ragged`."""
        if not self.declared.cpu:
            return self.gpu_config()
        return self._cpu_config(self.settings.ragged)

    def _cpu_config(self, ragged: bool, flat: bool = False) -> mc.ModelConfig:
        """`flat`: the native backend's ragged form: no runner-only parameters."""
        s = self.settings
        cfg = self._base()
        for tensor in cfg.input:
            tensor.allow_ragged_batch = ragged
        runner_ragged = ragged and not flat
        aggregates = runner_ragged and self.max_windows > 1
        if aggregates:  # the windows of a request → one row per text, in this step
            cfg.input.add(**_tensor(WINDOWS, mc.TYPE_INT64, [2]))
        cfg.dynamic_batching.max_queue_delay_microseconds = s.classifier_queue_delay_us
        _set_queue_policy(cfg, s)
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=s.classifier_instances)
        _set_parameters(
            cfg,
            {
                "intra_op_thread_count": s.intra_op_threads,
                "inter_op_thread_count": s.inter_op_threads,
                **({"ragged_run_cost_tokens": s.ragged_run_cost_tokens} if runner_ragged else {}),
                **(
                    {"max_run_tokens": self.max_run_tokens}
                    if self.max_run_tokens and not flat
                    else {}
                ),
                **(
                    {"aggregation": self.aggregation, "problem_type": self.problem_type}
                    if aggregates
                    else {}
                ),
                **(
                    {"disabled_optimizers": ",".join(disabled)}
                    if (disabled := s.disabled_optimizers.get(self.variant))
                    else {}
                ),
            },
        )
        return cfg

    def gpu_config(self) -> mc.ModelConfig:
        """GPU: KIND_GPU, TensorRT accelerator with an engine cache, in the precision the
        variant declares (default: `settings.trt_precision`). A variant that is not
        GPU-capable (int8) stays on CPU instances here too."""
        declared = self.declared
        if not declared.gpu:  # native backend on the CPU: the default configuration
            return self.config()
        s = self.settings
        cfg = self._base()
        cfg.dynamic_batching.max_queue_delay_microseconds = s.gpu_queue_delay_us
        _set_queue_policy(cfg, s)
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=s.gpu_instances)
        trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        trt.parameters["precision_mode"] = declared.trt_precision or s.trt_precision
        trt.parameters["max_workspace_size_bytes"] = str(s.trt_workspace_bytes)
        trt.parameters["trt_engine_cache_enable"] = "true"
        trt.parameters["trt_engine_cache_path"] = f"{s.trt_cache_dir.rstrip('/')}/{self.name}"
        return cfg


@dataclass
class AggregateModel:
    """Window logits → one row per text (Python backend, `serving/aggregate_model`)."""

    name: str
    berth: BerthConfig
    settings: ServingSettings = field(default_factory=ServingSettings)

    def config(self) -> mc.ModelConfig:
        """The same on CPU and GPU: a few numpy operations per request, on the CPU."""
        s, num_labels = self.settings, len(self.berth.labels)
        cfg = mc.ModelConfig(
            name=self.name,
            backend="python",
            max_batch_size=s.max_batch_size * self.berth.max_windows,
            input=[
                _tensor(ONNX_LOGITS, mc.TYPE_FP32, [num_labels]),
                _tensor(WINDOWS, mc.TYPE_INT64, [2]),
            ],
            output=[
                _tensor(LOGITS, mc.TYPE_FP32, [num_labels]),
                _tensor(PROBABILITIES, mc.TYPE_FP32, [num_labels]),
            ],
            instance_group=[{"kind": mc.ModelInstanceGroup.KIND_CPU, "count": 1}],
        )
        cfg.version_policy.latest.num_versions = s.version_policy_latest
        # No delay: it batches only what is already waiting, to save executions.
        cfg.dynamic_batching.max_queue_delay_microseconds = 0
        _set_queue_policy(cfg, s)
        _set_parameters(
            cfg, {"aggregation": self.berth.aggregation, "problem_type": self.berth.problem_type}
        )
        return cfg

    def gpu_config(self) -> mc.ModelConfig:
        return self.config()

    def pip_config(self) -> mc.ModelConfig:
        return self.config()


@dataclass
class EnsembleModel:
    """The public model: TEXT in; LOGITS, PROBABILITIES out; labels in `parameters`."""

    name: str
    berth: BerthConfig
    default_variant: str = "int8"
    gpu_variant: str = "fp16"
    settings: ServingSettings = field(default_factory=ServingSettings)
    # Name prefix of the member models (default: `name`); lets a second ensemble reuse
    # another's tokenizer and classifiers.
    members: str | None = None

    @property
    def member_prefix(self) -> str:
        return self.members or self.name

    def parameters(self, variant: str) -> dict[str, object]:
        b = self.berth
        return {
            "id2label": json.dumps(list(b.labels)),
            "problem_type": b.problem_type,
            "thresholds": json.dumps(b.decision_thresholds() if b.multi_label else []),
            "max_length": b.max_length,
            "truncation": b.truncation,
            "head_tokens": b.head_tokens,
            **window_parameters(b),
            "variant": variant,
        }

    def _config(self, variant: str, separate_step: bool) -> mc.ModelConfig:
        """`separate_step`: window mode aggregates in `<name>_aggregate` (else in the
        classifier step, see the module docstring)."""
        num_labels = len(self.berth.labels)
        cfg = mc.ModelConfig(
            name=self.name,
            platform="ensemble",
            max_batch_size=self.settings.max_batch_size,
            input=[_tensor(TEXT, mc.TYPE_STRING, [1])],
            output=[
                _tensor(LOGITS, mc.TYPE_FP32, [num_labels]),
                _tensor(PROBABILITIES, mc.TYPE_FP32, [num_labels]),
            ],
        )
        cfg.version_policy.latest.num_versions = self.settings.version_policy_latest
        steps = cfg.ensemble_scheduling.step
        steps.add(
            model_name=tokenizer_model_name(self.member_prefix),
            model_version=-1,
            input_map={TEXT: TEXT},
            output_map={INPUT_IDS: "_input_ids", ATTENTION_MASK: "_attention_mask"},
        )
        classifier = classifier_model_name(self.member_prefix, variant)
        inputs = {INPUT_IDS: "_input_ids", ATTENTION_MASK: "_attention_mask"}
        if self.berth.windowed:
            steps[0].output_map[WINDOWS] = "_windows"
        if self.berth.windowed and not separate_step:
            inputs[WINDOWS] = "_windows"
        if self.berth.windowed and separate_step:
            steps.add(
                model_name=classifier,
                model_version=-1,
                input_map=inputs,
                output_map={ONNX_LOGITS: "_window_logits"},
            )
            steps.add(
                model_name=aggregate_model_name(self.member_prefix),
                model_version=-1,
                input_map={ONNX_LOGITS: "_window_logits", WINDOWS: "_windows"},
                output_map={LOGITS: LOGITS, PROBABILITIES: PROBABILITIES},
            )
        else:
            steps.add(
                model_name=classifier,
                model_version=-1,
                input_map=inputs,
                output_map={ONNX_LOGITS: LOGITS, ONNX_PROBABILITIES: PROBABILITIES},
            )
        _set_parameters(cfg, self.parameters(variant))
        if self.settings.response_cache:
            cfg.response_cache.enable = True
        return cfg

    def config(self) -> mc.ModelConfig:
        """The stock container on CPU: windows aggregated in a step of their own."""
        return self._config(self.default_variant, separate_step=True)

    def gpu_config(self) -> mc.ModelConfig:
        return self._config(self.gpu_variant, separate_step=True)

    def pip_config(self) -> mc.ModelConfig:
        """berth's Python runner: with ragged batching the classifier step aggregates."""
        return self._config(self.default_variant, separate_step=not self.settings.ragged)


def repository_configs(
    name: str,
    berth: BerthConfig,
    variants: list[str] | tuple[str, ...] | None = None,
    default_variant: str = "int8",
    gpu_variant: str = "fp16",
    settings: ServingSettings | None = None,
) -> dict[str, mc.ModelConfig]:
    """Every config file of the repository, keyed by path relative to its root.
    `variants`: the classifiers published (default: every declared variant)."""
    settings = settings or ServingSettings()
    variants = list(VARIANTS) if variants is None else list(variants)
    for role, chosen in (("default", default_variant), ("gpu", gpu_variant)):
        if chosen not in variants:
            raise ValueError(f"the {role} variant {chosen!r} is not among {variants}")
    if not variant(default_variant).cpu:
        raise ValueError(f"the default (CPU) variant {default_variant!r} cannot serve on CPU")
    configs: dict[str, mc.ModelConfig] = {}
    ensemble = EnsembleModel(name, berth, default_variant, gpu_variant, settings)
    configs[f"{name}/{CONFIG_FILE}"] = ensemble.config()
    configs[f"{name}/{GPU_CONFIG_FILE}"] = ensemble.gpu_config()
    configs[f"{name}/{PIP_CONFIG_FILE}"] = ensemble.pip_config()
    tokenizer = TokenizerModel(tokenizer_model_name(name), berth, settings)
    members: list = [tokenizer]
    if berth.windowed:
        members.append(AggregateModel(aggregate_model_name(name), berth, settings))
    for published in variants:
        members.append(
            ClassifierModel(
                classifier_model_name(name, published),
                published,
                len(berth.labels),
                settings,
                max_windows=berth.max_windows,
                max_run_tokens=settings.max_batch_size * berth.max_length if berth.windowed else 0,
                aggregation=berth.aggregation,
                problem_type=berth.problem_type,
            )
        )
    for model in members:
        configs[f"{model.name}/{CONFIG_FILE}"] = model.config()
        configs[f"{model.name}/{GPU_CONFIG_FILE}"] = model.gpu_config()
        configs[f"{model.name}/{PIP_CONFIG_FILE}"] = model.pip_config()
    return configs


# The demo model the repository commits configs for (`make demo`: MiniLM on Rotten
# Tomatoes). tests/export/test_triton_config.py checks the committed files against these.
DEMO_NAME = "sentiment"
DEMO_BERTH = BerthConfig(
    labels=["negative", "positive"],
    max_length=128,
    truncation="head",
    window_stride=96,
    max_windows=16,
    aggregation="mean",
)


# The committed configs hold only machine-independent settings: the int8 graph
# optimizers `python -m export --optimize auto` measures as slower on the exporting CPU
# go into the version directory (`session.json`, git-ignored, next to the graph they were
# measured on), so `make demo` rewrites these files identically on any machine.
DEMO_SETTINGS = ServingSettings()


def demo_configs() -> dict[str, mc.ModelConfig]:
    return repository_configs(DEMO_NAME, DEMO_BERTH, settings=DEMO_SETTINGS)


def write_demo_configs(repository) -> list[str]:
    """(Re)write the committed demo configs under `repository`."""
    from pathlib import Path

    written = []
    for rel, config in demo_configs().items():
        path = Path(repository) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(config))
        written.append(str(path))
    return written


if __name__ == "__main__":
    import sys

    for path in write_demo_configs(sys.argv[1] if len(sys.argv) > 1 else "model_repository"):
        print(path)
