"""`python -m export` on a fine-tuned checkpoint: ONNX variants, gates, report, publish."""

from __future__ import annotations

import dataclasses
import json
from unittest import mock

import numpy as np
import onnx
import pytest

from berth_core.checkpoint import BerthConfig
from export.__main__ import main as export_main
from export.evaluate import OnnxClassifier
from export.pipeline import ExportConfig, ExportRefused, build_parser, run_export
from export.triton_config import parse
from tests.export.checkpoints import held_out_texts
from tests.export.trees import tree_hash
from training.predict import Predictor

pytestmark = pytest.mark.slow


def config(checkpoint, tmp_path, **kw) -> ExportConfig:
    base = dict(
        checkpoint=checkpoint,
        name="sentiment",
        model_repository=tmp_path / "repo",
        output_dir=tmp_path / "export",
        max_eval_samples=300,
        parity_samples=200,
        latency_runs=3,
        optimize="off",
    )
    base.update(kw)
    return ExportConfig(**base)


@pytest.fixture(scope="module")
def exported(sentiment_checkpoint, tmp_path_factory):
    """One export with the defaults' `--optimize auto`; berth.json is read once in it."""
    tmp = tmp_path_factory.mktemp("export")
    cfg = config(sentiment_checkpoint, tmp, optimize="auto", latency_runs=5)
    loads = []
    load = BerthConfig.load.__func__

    def counted(cls, directory):
        loads.append(directory)
        return load(cls, directory)

    with mock.patch.object(BerthConfig, "load", classmethod(counted)):
        report = run_export(cfg)
    assert loads == [sentiment_checkpoint]
    return cfg, report


def test_report_and_files(exported):
    cfg, report = exported
    assert report["status"] == "published" and report["version"] == 1
    assert [v["variant"] for v in report["variants"]] == ["fp32", "fp16", "int8"]
    saved = json.loads((cfg.output_dir / "export_report.json").read_text())
    assert saved["version"] == 1
    md = (cfg.output_dir / "export_report.md").read_text()
    assert "| int8 |" in md and "batch 32 ms" in md
    assert "decision" in report["fusion"]  # --optimize auto measured and decided
    # ... and chose the int8 graph at the serving thread count; the version directory
    # says so, next to that graph (the config stays the same whichever CPU measured)
    int8 = report["int8_graph"]
    assert set(int8["batch_32_median_ms"]) == {"unfused", "fused", "unfused -SkipLayerNormFusion"}
    assert int8["decision"] in md
    int8_config = parse((cfg.model_repository / "sentiment_onnx_int8/config.pbtxt").read_text())
    assert "disabled_optimizers" not in int8_config.parameters
    session = cfg.model_repository / "sentiment_onnx_int8/1/session.json"
    written = json.loads(session.read_text())["disabled_optimizers"] if session.is_file() else []
    assert written == int8["disabled_optimizers"]
    assert not list(cfg.output_dir.glob("onnx/model.int8.*.onnx"))  # candidates removed
    for v in report["variants"]:
        graph = cfg.model_repository / f"sentiment_onnx_{v['variant']}/1/model.onnx"
        assert v["size_mb"] == pytest.approx(graph.stat().st_size / 1e6)  # the published graph
        assert v["latency"]["batch_1"]["median_ms"] > 0
        assert v["latency"]["batch_32"]["texts_per_s"] > 0
        assert {"accuracy", "macro_f1"} <= set(v["scores"])
    fp32 = report["variants"][0]["parity"]
    assert fp32["max_abs_logit_diff"] <= 1e-3 and fp32["argmax_agreement"] == 1.0
    sizes = {v["variant"]: v["size_mb"] for v in report["variants"]}
    assert sizes["fp16"] < sizes["fp32"] and sizes["int8"] < sizes["fp32"]


def test_onnx_graph_contract(exported):
    cfg, _ = exported
    path = cfg.model_repository / "sentiment_onnx_fp32/1/model.onnx"
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    inputs = {i.name: i for i in model.graph.input}
    assert set(inputs) == {"input_ids", "attention_mask"}
    for tensor in inputs.values():
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT64
        dims = tensor.type.tensor_type.shape.dim
        assert all(d.dim_param and not d.dim_value for d in dims)  # dynamic batch, sequence
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"]
    fp16 = onnx.load(str(cfg.model_repository / "sentiment_onnx_fp16/1/model.onnx"))
    io_types = {t.type.tensor_type.elem_type for t in [*fp16.graph.input, *fp16.graph.output]}
    assert onnx.TensorProto.FLOAT16 not in io_types  # keep_io_types


def test_fp32_onnx_matches_pytorch_on_odd_batches(exported, sentiment_checkpoint):
    cfg, _ = exported
    texts = held_out_texts(sentiment_checkpoint, 37)
    reference = Predictor(sentiment_checkpoint).logits(texts, batch_size=7)
    runner = OnnxClassifier(
        cfg.model_repository / "sentiment_onnx_fp32/1/model.onnx",
        sentiment_checkpoint,
        berth=BerthConfig.load(sentiment_checkpoint),
    )
    logits, probs = runner.logits_and_probabilities(texts, batch_size=5)
    np.testing.assert_allclose(logits, reference, atol=1e-3)
    assert (logits.argmax(1) == reference.argmax(1)).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_published_layout(exported):
    cfg, _ = exported
    repo = cfg.model_repository
    tok = repo / "sentiment_tokenizer/1"
    assert sorted(p.name for p in tok.iterdir()) == [
        "__pycache__",  # byte-compiled at publish (export/repository.py says why)
        "berth_core",
        "model.py",
        "tokenizer.json",
    ]
    for variant in ("fp32", "fp16", "int8"):
        assert (repo / f"sentiment_onnx_{variant}/1/model.onnx").is_file()
        assert (repo / f"sentiment_onnx_{variant}/configs/gpu.pbtxt").is_file()
    assert (repo / "sentiment/1/berth.json").is_file()
    ensemble = parse((repo / "sentiment/config.pbtxt").read_text())
    assert ensemble.ensemble_scheduling.step[1].model_name == "sentiment_onnx_int8"
    gpu = parse((repo / "sentiment/configs/gpu.pbtxt").read_text())
    assert gpu.ensemble_scheduling.step[1].model_name == "sentiment_onnx_fp16"
    assert not [p for p in repo.rglob("*") if p.name.startswith(".staging")]


def test_parity_refusal_leaves_the_repository_unchanged(exported, monkeypatch, capsys):
    cfg, _ = exported
    before = tree_hash(cfg.model_repository)
    real = Predictor.logits
    monkeypatch.setattr(Predictor, "logits", lambda self, *a, **k: real(self, *a, **k) + 0.01)
    code = export_main(
        [
            "--checkpoint",
            str(cfg.checkpoint),
            "--model-repository",
            str(cfg.model_repository),
            "--output-dir",
            str(cfg.output_dir / "refused"),
            "--variants",
            "fp32,int8",
            "--default-variant",
            "int8",
            "--gpu-variant",
            "fp32",
            "--max-eval-samples",
            "100",
            "--parity-samples",
            "50",
            "--latency-runs",
            "2",
            "--optimize",
            "off",
        ]
    )
    assert code == 3
    assert "fp32 parity failed" in capsys.readouterr().err
    assert tree_hash(cfg.model_repository) == before
    report = json.loads((cfg.output_dir / "refused/export_report.json").read_text())
    assert report["status"] == "refused"


def test_accuracy_drop_refusal_leaves_the_repository_unchanged(exported):
    cfg, _ = exported
    before = tree_hash(cfg.model_repository)
    refused = config(
        cfg.checkpoint,
        cfg.output_dir.parent / "acc",
        variants="fp32,int8",
        gpu_variant="fp32",
        max_accuracy_drop=-100.0,
        max_eval_samples=100,
        parity_samples=50,
        latency_runs=2,
    )
    refused.model_repository = cfg.model_repository
    with pytest.raises(ExportRefused, match="int8 refused: accuracy"):
        run_export(refused)
    assert tree_hash(cfg.model_repository) == before


def test_a_second_export_adds_a_version(exported, tmp_path):
    cfg, _ = exported
    again = config(
        cfg.checkpoint,
        tmp_path,
        variants="fp32,int8",
        gpu_variant="fp32",
        max_eval_samples=100,
        parity_samples=50,
        latency_runs=2,
    )
    again.model_repository = tmp_path / "repo2"
    assert run_export(again)["version"] == 1
    assert run_export(again)["version"] == 2
    assert sorted(
        p.name
        for p in (again.model_repository / "sentiment_onnx_int8").iterdir()
        if p.name.isdigit()
    ) == ["1", "2"]


def test_every_flag_is_in_help():
    text = build_parser().format_help()
    for flag in (
        "--checkpoint",
        "--name",
        "--model-repository",
        "--variants",
        "--default-variant",
        "--gpu-variant",
        "--eval-file",
        "--max-eval-samples",
        "--max-accuracy-drop",
        "--output-dir",
        "--optimize",
        "--keep-versions",
        "--max-windows",
        "--window-stride",
        "--aggregation",
    ):
        assert flag in text
    with pytest.raises(ValueError):
        ExportConfig(variants="fp32", default_variant="int8")


def test_window_mode_export_gates_and_publishes_what_it_serves(sentiment_checkpoint, tmp_path):
    """A checkpoint trained without windows, served whole: `--max-windows 4` reaches the
    gates (long parity texts), the configs, the aggregation model and the berth.json
    published beside the ensemble."""
    cfg = config(
        sentiment_checkpoint,
        tmp_path,
        variants="fp32,int8",
        gpu_variant="fp32",
        max_eval_samples=64,
        max_accuracy_drop=5.0,  # one row of 64 is 1.6 points; int8 flips one on some CPUs
        parity_samples=16,
        latency_runs=1,
        max_windows=4,
        aggregation="weighted",
    )
    report = run_export(cfg)
    assert report["windows"] == {"window_stride": 48, "max_windows": 4, "aggregation": "weighted"}
    assert report["parity_texts"] == 16 + 16  # + long texts joined from held-out ones
    assert report["variants"][0]["parity"]["max_abs_logit_diff"] <= 1e-3
    md = (cfg.output_dir / "export_report.md").read_text()
    assert "long texts: up to 4 windows of 64 tokens, 48 apart, aggregated by weighted" in md
    repo = cfg.model_repository
    served = BerthConfig.load(repo / "sentiment/1")
    assert (served.max_windows, served.window_stride, served.aggregation) == (4, 48, "weighted")
    assert not BerthConfig.load(sentiment_checkpoint).windowed  # the checkpoint is untouched
    assert (repo / "sentiment_aggregate/1/model.py").is_file()
    assert (repo / "sentiment_aggregate/1/berth_core/encoding.py").is_file()
    steps = parse((repo / "sentiment/configs/gpu.pbtxt").read_text()).ensemble_scheduling.step
    assert [s.model_name for s in steps][-1] == "sentiment_aggregate"
    with pytest.raises(ValueError, match="aggregation"):
        config(sentiment_checkpoint, tmp_path, aggregation="median")
    # published again with one window: the aggregation member goes, configs and all
    again = dataclasses.replace(cfg, max_windows=1, aggregation=None)
    run_export(again)
    assert not (repo / "sentiment_aggregate").exists()


def test_window_flags_override_berth_json(tmp_path):
    head = BerthConfig(labels=["a", "b"], max_length=128)
    windowed = BerthConfig(labels=["a", "b"], max_length=64, window_stride=40, max_windows=4)

    def served(berth, **flags):
        cfg = ExportConfig(checkpoint=tmp_path, **flags)
        b = cfg.serving_berth(berth)
        return b.window_stride, b.max_windows, b.aggregation

    assert served(head) == (0, 1, "mean")  # as berth.json says
    assert served(head, max_windows=16) == (96, 16, "mean")  # 3/4 of max_length
    assert served(head, max_windows=8, window_stride=64, aggregation="max") == (64, 8, "max")
    assert served(windowed) == (40, 4, "mean")
    assert served(windowed, max_windows=1) == (0, 1, "mean")  # head only, as before windows
    assert served(windowed, max_windows=9) == (40, 9, "mean")
    args = build_parser().parse_args(["--max-windows", "16", "--aggregation", "max"])
    assert (args.max_windows, args.window_stride, args.aggregation) == (16, None, "max")


def test_report_shows_a_loss_as_a_negative_change_and_the_teacher_agreement():
    from export.report import report_markdown

    def variant(name, drop, agreement):
        scores = {"accuracy": 83.0, "teacher_agreement": agreement}
        latency = {"median_ms": 1.0, "texts_per_s": 100.0}
        return {"variant": name, "size_mb": 1.0, "scores": scores, "drop": drop,
                "parity": {"max_abs_logit_diff": 0.0, "argmax_agreement": 1.0},
                "latency": {"batch_1": latency, "batch_32": latency}, "verdict": "ok"}  # fmt: skip

    report = {
        "name": "s", "checkpoint": "c", "problem_type": "single_label_classification",
        "labels": ["a", "b"], "eval_rows": 10, "eval_file": "f", "parity_texts": 5,
        "machine": "m", "threads": 0, "fusion": {"mode": "off"}, "status": "published",
        "windows": {"max_windows": 1}, "max_length": 128,
        "variants": [variant("fp32", 0.0, 0.9), variant("int8", 0.39, None)],
    }  # fmt: skip
    md = report_markdown(report)
    assert "| fp32 | 1.0 | accuracy 83.00 | +0.00 |" in md and "| 90.00 % |" in md
    assert "| int8 | 1.0 | accuracy 83.00 | -0.39 |" in md and "| – |" in md
