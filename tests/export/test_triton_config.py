"""Typed configs → config.pbtxt through Triton's protobuf definitions, and back."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from berth_core.checkpoint import MULTI_LABEL, BerthConfig
from berth_core.names import FLAT_MODEL_FILE, SESSION_FILE
from export.config import parse_args
from export.stage import publish_variants
from export.triton_config import (
    DEMO_BERTH,
    DEMO_NAME,
    DEMO_SETTINGS,
    AggregateModel,
    ClassifierModel,
    EnsembleModel,
    ServingSettings,
    TokenizerModel,
    demo_configs,
    parse,
    render,
    repository_configs,
)
from tests.export import crafted

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = ROOT / "model_repository"


def params(config: mc.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_every_config_round_trips_through_protobuf():
    for rel, config in demo_configs().items():
        text = render(config)
        assert parse(text) == config, rel
        assert render(parse(text)) == text


def test_committed_demo_configs_equal_the_typed_objects():
    """model_repository/ commits the demo model's configs; regenerate them with
    `python -m export.triton_config model_repository` when the defaults change."""
    configs = demo_configs()
    for rel, config in configs.items():
        path = REPOSITORY / rel
        assert path.is_file(), f"{path} is not committed"
        assert parse(path.read_text()) == config, f"{path} differs from the typed config"
        assert path.read_text() == render(config)
    committed = {str(p.relative_to(REPOSITORY)) for p in REPOSITORY.rglob("*.pbtxt") if p.is_file()}
    demo = {rel for rel in committed if rel.split("/")[0].startswith(DEMO_NAME)}
    assert demo == set(configs)


@pytest.mark.parametrize("measured", [(), ("SkipLayerNormFusion",)])
def test_the_demo_export_writes_the_committed_configs_whatever_the_cpu_measured(tmp_path, measured):
    """`make demo` exports with the defaults, `--optimize auto` included: the configs it
    publishes are the committed ones on any machine. What auto measured on this CPU
    (the int8 graph optimizers to skip) goes into session.json beside the int8 graph it
    was measured on, never into a config."""
    argv = ["--checkpoint", str(tmp_path / "checkpoint"), "--name", DEMO_NAME]
    argv += ["--model-repository", str(tmp_path / "repo"), "--output-dir", str(tmp_path / "out")]
    cfg = parse_args(argv)
    assert cfg.optimize == "auto"
    assert cfg.serving == DEMO_SETTINGS
    run = crafted.run(tmp_path, DEMO_BERTH, cfg)
    publish_variants(run, crafted.graphs(run, measured).variants, cfg.variant_list, {})
    repo = cfg.model_repository
    for rel in demo_configs():
        assert (repo / rel).read_text() == (REPOSITORY / rel).read_text(), rel
    for variant in ("fp32", "fp16", "int8"):
        version = repo / f"{DEMO_NAME}_onnx_{variant}/1"
        assert onnx.load(version / "model.onnx").graph.name == f"{variant} graph"
        assert not (version / FLAT_MODEL_FILE).exists()  # written with --container-ragged
        session = version / SESSION_FILE
        if variant == "int8" and measured:
            assert json.loads(session.read_text()) == {"disabled_optimizers": list(measured)}
        else:
            assert not session.exists()


def test_container_ragged_publishes_each_cpu_graph_behind_the_flat_front_end(tmp_path):
    """--container-ragged: model_flat.onnx beside model.onnx, the same graph with flat
    inputs and the BATCH_ITEM_SHAPE input; the default configs name it."""
    argv = ["--checkpoint", str(tmp_path / "checkpoint"), "--name", DEMO_NAME, "--container-ragged"]
    argv += ["--model-repository", str(tmp_path / "repo"), "--output-dir", str(tmp_path / "out")]
    cfg = parse_args(argv)
    run = crafted.run(tmp_path, DEMO_BERTH, cfg)
    publish_variants(run, crafted.graphs(run).variants, cfg.variant_list, {})
    for variant in ("fp32", "fp16", "int8"):
        model = cfg.model_repository / f"{DEMO_NAME}_onnx_{variant}"
        flat = onnx.load(model / "1" / FLAT_MODEL_FILE)
        assert flat.graph.name == f"{variant} graph"
        assert [i.name for i in flat.graph.input] == ["input_ids", "attention_mask", "item_shape"]
        assert parse((model / "config.pbtxt").read_text()).default_model_filename == FLAT_MODEL_FILE
        pip = (model / "configs/pip.pbtxt").read_text()
        assert pip == (REPOSITORY / f"{DEMO_NAME}_onnx_{variant}/configs/pip.pbtxt").read_text()


def test_ensemble_contract():
    berth = BerthConfig(
        labels=["a", "b", "c"],
        problem_type=MULTI_LABEL,
        thresholds=[0.3, 0.5, 0.7],
        max_length=96,
        truncation="head+tail",
        head_tokens=20,
    )
    configs = repository_configs("tags", berth, ["fp32", "fp16", "int8"], "int8", "fp16")
    cpu, gpu = configs["tags/config.pbtxt"], configs["tags/configs/gpu.pbtxt"]
    assert cpu.platform == "ensemble" and cpu.max_batch_size > 0
    assert [(i.name, i.data_type, list(i.dims)) for i in cpu.input] == [
        ("TEXT", mc.TYPE_STRING, [1])
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in cpu.output] == [
        ("LOGITS", mc.TYPE_FP32, [3]),
        ("PROBABILITIES", mc.TYPE_FP32, [3]),
    ]
    p = params(cpu)
    assert json.loads(p["id2label"]) == ["a", "b", "c"]
    assert json.loads(p["thresholds"]) == [0.3, 0.5, 0.7]
    assert p["problem_type"] == MULTI_LABEL
    assert (p["max_length"], p["truncation"], p["head_tokens"]) == ("96", "head+tail", "20")
    steps = [s.model_name for s in cpu.ensemble_scheduling.step]
    assert steps == ["tags_tokenizer", "tags_onnx_int8"]
    assert [s.model_name for s in gpu.ensemble_scheduling.step] == [
        "tags_tokenizer",
        "tags_onnx_fp16",
    ]
    tok = configs["tags_tokenizer/config.pbtxt"]
    assert tok.backend == "python" and tok.HasField("dynamic_batching")
    assert params(tok)["truncation"] == "head+tail" and params(tok)["bucket"] == "8"
    assert [o.name for o in tok.output] == ["input_ids", "attention_mask"]
    assert all(o.data_type == mc.TYPE_INT64 and list(o.dims) == [-1] for o in tok.output)
    # default and GPU (the native onnxruntime backend, int8 included): batch padding, no
    # ragged inputs; pip (berth's runner): each request padded to its own length, the
    # classifiers take ragged batches
    assert params(tok)["padding"] == "batch"
    assert params(configs["tags_tokenizer/configs/gpu.pbtxt"])["padding"] == "batch"
    assert params(configs["tags_tokenizer/configs/pip.pbtxt"])["padding"] == "per_request"
    for variant in ("fp32", "fp16", "int8"):
        for native in ("config.pbtxt", "configs/gpu.pbtxt"):
            config = configs[f"tags_onnx_{variant}/{native}"]
            assert not any(i.allow_ragged_batch for i in config.input) and not config.batch_input
        pip = configs[f"tags_onnx_{variant}/configs/pip.pbtxt"]
        assert all(i.allow_ragged_batch for i in pip.input) and not pip.batch_input
    # --container-ragged (the native backend's ragged form): each request padded to its
    # own length, the classifiers' flat graphs take ragged batches with BATCH_ITEM_SHAPE;
    # GPU: batch padding (int8 keeps its CPU config); the pip configs stay as they are
    flat_settings = ServingSettings(container_ragged=True)
    flat_configs = repository_configs("tags", berth, None, "int8", "fp16", flat_settings)
    assert params(flat_configs["tags_tokenizer/config.pbtxt"])["padding"] == "per_request"
    assert params(flat_configs["tags_tokenizer/configs/gpu.pbtxt"])["padding"] == "batch"
    for variant in ("fp32", "fp16", "int8"):
        flat = flat_configs[f"tags_onnx_{variant}/config.pbtxt"]
        assert all(i.allow_ragged_batch for i in flat.input)
        assert flat.default_model_filename == "model_flat.onnx"
        assert [(b.kind, list(b.target_name), list(b.source_input)) for b in flat.batch_input] == [
            (mc.BatchInput.BATCH_ITEM_SHAPE, ["item_shape"], ["input_ids"])
        ]
        assert not params(flat).keys() & {"ragged_run_cost_tokens", "max_run_tokens"}
        gpu = flat_configs[f"tags_onnx_{variant}/configs/gpu.pbtxt"]
        assert (
            gpu == flat
            if variant == "int8"
            else gpu == configs[f"tags_onnx_{variant}/configs/gpu.pbtxt"]
        )
        pip = f"tags_onnx_{variant}/configs/pip.pbtxt"
        assert flat_configs[pip] == configs[pip]
    assert [s.model_name for s in configs["tags/configs/pip.pbtxt"].ensemble_scheduling.step] == [
        "tags_tokenizer",
        "tags_onnx_int8",
    ]
    plain = repository_configs(
        "t", berth, ["fp32", "int8"], "int8", "fp32", ServingSettings(ragged=False)
    )
    assert params(plain["t_tokenizer/configs/pip.pbtxt"])["padding"] == "batch"
    assert not any(i.allow_ragged_batch for i in plain["t_onnx_int8/configs/pip.pbtxt"].input)
    # --no-ragged is for the pip configs: the container's stay as they are
    ragged = repository_configs("t", berth, ["fp32", "int8"], "int8", "fp32")
    for rel in ("t/config.pbtxt", "t_tokenizer/config.pbtxt", "t_onnx_int8/config.pbtxt"):
        assert plain[rel] == ragged[rel]


def test_classifier_cpu_and_gpu_configs():
    settings = ServingSettings(classifier_instances=3, intra_op_threads=2, trt_cache_dir="/c")
    model = ClassifierModel("m_onnx_fp16", "fp16", 2, settings)
    cpu, gpu = model.config(), model.gpu_config()
    assert cpu.backend == gpu.backend == "onnxruntime"
    assert cpu.HasField("dynamic_batching") and gpu.HasField("dynamic_batching")
    assert cpu.version_policy.latest.num_versions == 1
    assert [(g.kind, g.count) for g in cpu.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 3)]
    assert params(cpu)["intra_op_thread_count"] == "2"
    assert [g.kind for g in gpu.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    (trt,) = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt"
    assert trt.parameters["precision_mode"] == "FP16"
    assert trt.parameters["trt_engine_cache_enable"] == "true"
    assert trt.parameters["trt_engine_cache_path"] == "/c/m_onnx_fp16"
    # int8 (dynamic quantization) runs on CPU kernels only: its GPU config stays on CPU.
    int8 = ClassifierModel("m_onnx_int8", "int8", 2, settings).gpu_config()
    assert [g.kind for g in int8.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]


def test_second_ensemble_can_reuse_members():
    berth = BerthConfig(labels=["n", "p"])
    cfg = EnsembleModel("s_fp32", berth, "fp32", "fp16", members="s").config()
    assert [s.model_name for s in cfg.ensemble_scheduling.step] == ["s_tokenizer", "s_onnx_fp32"]


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        ServingSettings(max_batch_size=0)
    with pytest.raises(ValueError):
        repository_configs("x", BerthConfig(labels=["a"]), ["fp32"], "int8", "fp32")
    with pytest.raises(ValueError):
        ClassifierModel("x", "bf16", 2)
    assert TokenizerModel("t", BerthConfig(labels=["a"])).config().max_batch_size == 64


WINDOWED = BerthConfig(
    labels=["a", "b", "c"],
    problem_type=MULTI_LABEL,
    thresholds=[0.3, 0.5, 0.7],
    max_length=96,
    window_stride=64,
    max_windows=8,
    aggregation="max",
)


def test_window_mode_keeps_the_public_api_and_sizes_the_members():
    settings = ServingSettings(max_batch_size=32)
    configs = repository_configs("t", WINDOWED, ["fp32", "fp16", "int8"], "int8", "fp16", settings)
    for rel in ("t/config.pbtxt", "t/configs/gpu.pbtxt"):
        cfg = configs[rel]
        # TEXT in, one row per text out, 32 texts a request: as without windows
        assert cfg.max_batch_size == 32 and [i.name for i in cfg.input] == ["TEXT"]
        assert [(o.name, list(o.dims)) for o in cfg.output] == [
            ("LOGITS", [3]),
            ("PROBABILITIES", [3]),
        ]
        p = params(cfg)
        assert (p["window_stride"], p["max_windows"], p["aggregation"]) == ("64", "8", "max")
    tok = configs["t_tokenizer/config.pbtxt"]
    assert [o.name for o in tok.output] == ["input_ids", "attention_mask", "windows"]
    assert (params(tok)["window_stride"], params(tok)["max_windows"]) == ("64", "8")
    assert "aggregation" not in params(tok)  # the tokenizer only cuts the windows
    # a request of 32 long texts is 32 × 8 window rows for the classifier and aggregation
    for rel in ("t_onnx_fp16/config.pbtxt", "t_onnx_fp16/configs/gpu.pbtxt"):
        assert configs[rel].max_batch_size == 32 * 8
    assert params(configs["t_onnx_int8/configs/pip.pbtxt"])["max_run_tokens"] == str(32 * 96)
    agg = configs["t_aggregate/config.pbtxt"]
    assert agg == configs["t_aggregate/configs/gpu.pbtxt"]
    assert agg == AggregateModel("t_aggregate", WINDOWED, settings).config()
    assert agg.backend == "python" and agg.max_batch_size == 32 * 8
    assert [(i.name, list(i.dims)) for i in agg.input] == [("logits", [3]), ("windows", [2])]
    assert params(agg) == {"aggregation": "max", "problem_type": MULTI_LABEL}


def test_ragged_pip_configs_aggregate_in_the_classifier_step():
    """berth's onnxruntime runner aggregates: two steps, as cheap as before for a text of
    one window."""
    configs = repository_configs("t", WINDOWED, ["fp32", "int8"], "int8", "fp32")
    tok, cls = configs["t/configs/pip.pbtxt"].ensemble_scheduling.step
    assert cls.model_name == "t_onnx_int8"
    assert dict(cls.input_map)["windows"] == dict(tok.output_map)["windows"]
    assert dict(cls.output_map) == {"logits": "LOGITS", "probabilities": "PROBABILITIES"}
    int8 = configs["t_onnx_int8/configs/pip.pbtxt"]
    assert [(i.name, i.allow_ragged_batch) for i in int8.input] == [
        ("input_ids", True),
        ("attention_mask", True),
        ("windows", False),
    ]
    assert params(int8)["aggregation"] == "max" and params(int8)["problem_type"] == MULTI_LABEL


@pytest.mark.parametrize("ragged", [True, False])
def test_native_backend_configs_aggregate_in_a_third_step(ragged):
    """The default and GPU configs (and pip configs without ragged batching) are for the
    native onnxruntime backend: the classifier sees windows as plain rows."""
    configs = repository_configs(
        "t", WINDOWED, ["fp32", "int8"], "int8", "fp32", ServingSettings(ragged=ragged)
    )
    ensembles = ["t/config.pbtxt", "t/configs/gpu.pbtxt"]
    ensembles += [] if ragged else ["t/configs/pip.pbtxt"]
    for rel in ensembles:
        tok, cls, agg = configs[rel].ensemble_scheduling.step
        assert (tok.model_name, agg.model_name) == ("t_tokenizer", "t_aggregate")
        assert "windows" not in dict(cls.input_map)
        assert dict(tok.output_map)["windows"] == dict(agg.input_map)["windows"]
        assert dict(cls.output_map)["logits"] == dict(agg.input_map)["logits"]
        assert dict(agg.output_map) == {"LOGITS": "LOGITS", "PROBABILITIES": "PROBABILITIES"}
    for rel in ("t_onnx_fp32/configs/gpu.pbtxt", "t_onnx_int8/config.pbtxt"):
        assert [i.name for i in configs[rel].input] == ["input_ids", "attention_mask"]


def test_one_window_models_keep_the_two_step_ensemble():
    berth = BerthConfig(labels=["n", "p"], max_length=64)
    configs = repository_configs("s", berth, ["fp32", "int8"], "int8", "fp32")
    assert not any(rel.startswith("s_aggregate") for rel in configs)
    steps = configs["s/config.pbtxt"].ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["s_tokenizer", "s_onnx_int8"]
    assert [o.name for o in configs["s_tokenizer/config.pbtxt"].output] == [
        "input_ids",
        "attention_mask",
    ]
    cls = configs["s_onnx_int8/config.pbtxt"]
    assert cls.max_batch_size == 64 and "max_run_tokens" not in params(cls)


def test_the_response_cache_is_enabled_on_the_ensemble_only():
    """Triton caches a top-level ensemble request whole; its members need no cache."""
    berth = BerthConfig(labels=["n", "p"], max_length=64)
    plain = repository_configs("s", berth, ["fp32", "int8"], "int8", "fp32")
    cached = repository_configs(
        "s", berth, ["fp32", "int8"], "int8", "fp32", ServingSettings(response_cache=True)
    )
    for rel, config in cached.items():
        assert config.response_cache.enable == rel.startswith("s/"), rel
        assert not plain[rel].response_cache.enable


def test_admission_is_written_to_every_tokenizer_config_only_when_asked():
    """Off by default (the published configs carry no admission parameters); with a rate,
    each tokenizer config (default, pip, gpu) carries it for the stub to read."""
    berth = BerthConfig(labels=["n", "p"], max_length=64)
    plain = repository_configs("s", berth, ["int8"], "int8", "int8")
    limited = repository_configs(
        "s", berth, ["int8"], "int8", "int8", ServingSettings(admission_rate=450)
    )
    tokenizers = [rel for rel in limited if rel.startswith("s_tokenizer/")]
    assert len(tokenizers) == 3
    for rel in tokenizers:
        assert "admission_rate" not in params(plain[rel])
        written = params(limited[rel])
        assert (written["admission_rate"], written["admission_burst"]) == ("450", "0")
    with pytest.raises(ValueError, match="admission_rate"):
        ServingSettings(admission_rate=-1)
