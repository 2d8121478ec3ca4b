"""Few-step fine-tunes of a tiny random BERT: outputs, predictor, resume, MLM, CLI."""

from __future__ import annotations

import json
import platform
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from berth_core.checkpoint import MULTI_LABEL, SINGLE_LABEL, BerthConfig
from training.cli import main
from training.data import offline_rows
from training.metrics import tune_thresholds
from training.predict import Predictor
from training.rundir import RunDirError
from training.train import DataError, TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
FAST = {"max_length": 64, "batch_size": 16, "eval_batch_size": 64, "lr": 1e-3}


def config(tmp, model, **kwargs) -> TrainConfig:
    return TrainConfig(**{"model": str(model), "output_dir": str(tmp), **FAST, **kwargs})


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, tiny_base_model):
    run_dir = tmp_path_factory.mktemp("binary") / "run"
    return train(
        config(
            run_dir,
            tiny_base_model,
            dataset="rotten_tomatoes",
            epochs=2,
            max_train_samples=128,
            max_eval_samples=48,
        )
    )


def test_binary_outputs(binary_run):
    run = binary_run.run_dir
    assert binary_run.checkpoint == run / "model"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "berth.json"):
        assert (run / "model" / name).is_file(), name
    assert not (run / ".model.tmp").exists()
    berth = BerthConfig.load(run / "model")
    assert berth.labels == ["negative", "positive"] and berth.problem_type == SINGLE_LABEL
    assert berth.max_length == 64 and berth.thresholds is None
    hf_config = json.loads((run / "model" / "config.json").read_text())
    assert hf_config["id2label"] == {"0": "negative", "1": "positive"}
    assert hf_config["label2id"] == {"negative": 0, "positive": 1}
    assert hf_config["problem_type"] == SINGLE_LABEL
    metrics = json.loads((run / "metrics.json").read_text())
    # the model evaluated (and saved) is the best epoch's: its validation accuracy is the
    # best metric the Trainer recorded
    assert metrics["validation"]["accuracy"] == pytest.approx(metrics["best_metric"])
    # scored per text: a whole number of the 48 test texts is right
    right = metrics["test"]["accuracy"] * 48
    assert right == pytest.approx(round(right)) and "macro_f1" in metrics["test"]
    assert [h["epoch"] for h in metrics["history"]] == [1.0, 2.0]
    assert all("train_loss" in h and "eval_accuracy" in h for h in metrics["history"])
    assert metrics["train_wall_time_s"] > 0
    assert metrics["config"]["dataset"] == "rotten_tomatoes"
    assert metrics["sizes"] == {"train": 128, "validation": 48, "test": 48}
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "positive" in (run / "classification_report.txt").read_text()
    test_rows = read_jsonl(run / "splits" / "test.jsonl")
    assert len(test_rows) == 48 and len(read_jsonl(run / "splits" / "validation.jsonl")) == 48
    assert set(test_rows[0]) == {"text", "label"}
    assert {r["label"] for r in test_rows} == {"negative", "positive"}
    assert list((run / "checkpoints").glob("checkpoint-*"))


def test_predictor_agrees_with_reported_metrics(binary_run):
    run = binary_run.run_dir
    rows = read_jsonl(run / "splits" / "test.jsonl")
    predictions = Predictor(binary_run.checkpoint).predict([r["text"] for r in rows])
    accuracy = np.mean([p["label"] == r["label"] for p, r in zip(predictions, rows, strict=True)])
    assert accuracy == pytest.approx(binary_run.metrics["test"]["accuracy"])
    assert set(predictions[0]["probabilities"]) == {"negative", "positive"}


def test_existing_run_is_not_overwritten(binary_run, tiny_base_model, capsys):
    run = binary_run.run_dir
    before = (run / "metrics.json").read_text()
    with pytest.raises(RunDirError, match="--overwrite"):
        train(config(run, tiny_base_model, dataset="rotten_tomatoes"))
    code = main(
        ["--dataset", "rotten_tomatoes", "--output-dir", str(run), "--model", str(tiny_base_model)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert (run / "metrics.json").read_text() == before


def test_cli_data_error_exits_2(tmp_path, tiny_base_model, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "label": "a"}\nnot json\n')
    code = main(
        [
            "--train-file",
            str(bad),
            "--output-dir",
            str(tmp_path / "run"),
            "--model",
            str(tiny_base_model),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and f"{bad} line 2" in err
    assert "Traceback" not in err


def test_bf16_trains_on_cpu_and_saves_fp32_weights(tmp_path, tiny_base_model):
    """--precision bf16 runs the Trainer's CPU autocast (CPUs with AMX or AMD's AVX-512
    BF16 train faster in it); the master weights, and so the checkpoint export reads,
    stay fp32."""
    result = train(
        config(
            tmp_path / "run",
            tiny_base_model,
            dataset="rotten_tomatoes",
            precision="bf16",
            max_train_samples=32,
            max_eval_samples=16,
        )
    )
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["history"]
    weights = load_file(result.checkpoint / "model.safetensors")
    assert {str(t.dtype) for t in weights.values()} == {"torch.float32"}


@pytest.mark.parametrize(
    "amx, avx512_bf16, vendor, expected",
    [
        (True, True, "GenuineIntel", "bf16"),
        (False, True, "AuthenticAMD", "bf16"),
        (False, True, "GenuineIntel", "fp32"),  # measured slower there
        (False, False, "AuthenticAMD", "fp32"),
    ],
)
def test_auto_precision_on_cpu_is_bf16_where_measured_faster(
    monkeypatch, amx, avx512_bf16, vendor, expected
):
    from training import train as train_module

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("torch.cpu._is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr("torch.cpu._is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(train_module, "cpu_vendor", lambda: vendor)
    assert train_module.resolve_precision("auto") == expected
    assert train_module.resolve_precision("fp32") == "fp32"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the CPUID vendor is x86's")
def test_cpu_vendor_reads_the_cpuid_vendor():
    from training.train import cpu_vendor

    assert cpu_vendor() in {"GenuineIntel", "AuthenticAMD"}


@pytest.mark.parametrize("command", [[], ["mlm"]])
def test_fp16_without_cuda_is_a_clear_usage_error(
    tmp_path, tiny_base_model, capsys, monkeypatch, command
):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    argv = ["--output-dir", str(tmp_path / "run"), "--model", str(tiny_base_model)]
    code = main([*command, *argv, "--dataset", "rotten_tomatoes", "--precision", "fp16"])
    err = capsys.readouterr().err
    assert code == 2 and "--precision fp16 needs a CUDA GPU" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_multiclass_bbc_news_head_tail(tmp_path, tiny_base_model):
    result = train(
        config(
            tmp_path / "bbc",
            tiny_base_model,
            dataset="bbc_news",
            epochs=1,
            max_train_samples=120,
            max_eval_samples=40,
            truncation="head+tail",
            head_tokens=16,
            layer_lr_decay=0.8,
        )
    )
    berth = BerthConfig.load(result.checkpoint)
    assert berth.labels == ["business", "entertainment", "politics", "sports", "tech"]
    assert berth.truncation == "head+tail" and berth.head_tokens == 16
    assert (result.run_dir / "confusion_matrix.png").is_file()
    predictor = Predictor(result.checkpoint)
    text = read_jsonl(result.run_dir / "splits" / "test.jsonl")[0]["text"]
    ids = predictor.encode([text])[0]
    full = predictor.tokenizer.encode(text).ids  # [CLS] … [SEP], unpadded, untruncated
    assert len(full) > 64 and len(ids) == 64
    assert ids[:17] == full[:17] and ids[-10:] == full[-10:]  # head and tail kept
    assert predictor.predict(text)[0]["label"] in berth.labels


def multi_label_records():
    """Real BBC texts with two real properties as labels: the section, and "long"."""
    rows = offline_rows("bbc_news").rows
    rows = [r for _, r in rows if r["label"] in ("politics", "tech", "sports")][::6]
    median = statistics.median(len(r["text"].split()) for r in rows)
    return [
        {
            "text": r["text"],
            "labels": [r["label"]] + (["long"] if len(r["text"].split()) > median else []),
        }
        for r in rows
    ]


def test_multi_label_fine_tune(tmp_path, tiny_base_model):
    records = multi_label_records()
    path = tmp_path / "ml.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = train(
        config(
            tmp_path / "ml",
            tiny_base_model,
            train_file=str(path),
            label_column="labels",
            epochs=2,
            max_train_samples=96,
        )
    )
    berth = BerthConfig.load(result.checkpoint)
    assert berth.problem_type == MULTI_LABEL
    assert berth.labels == ["long", "politics", "sports", "tech"]
    # thresholds tuned on the validation split with the saved model's probabilities
    validation = read_jsonl(result.run_dir / "splits" / "validation.jsonl")
    predictor = Predictor(result.checkpoint)
    probs = predictor.probabilities([r["text"] for r in validation])
    truth = np.array([[name in r["labels"] for name in berth.labels] for r in validation])
    assert berth.thresholds == tune_thresholds(probs, truth)
    hf_config = json.loads((result.checkpoint / "config.json").read_text())
    assert hf_config["problem_type"] == MULTI_LABEL
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert {"micro_f1", "macro_f1", "accuracy"} <= set(metrics["test"])
    assert metrics["metric"] == "micro_f1"
    rows = read_jsonl(result.run_dir / "splits" / "test.jsonl")
    assert set(rows[0]) == {"text", "labels"}
    source = {r["text"]: sorted(r["labels"]) for r in records}
    assert all(sorted(r["labels"]) == source[r["text"]] for r in rows)
    prediction = predictor.predict(rows[0]["text"])[0]
    (row_probs,) = predictor.probabilities([rows[0]["text"]])
    above = zip(berth.labels, row_probs, berth.thresholds, strict=True)
    assert prediction["labels"] == [name for name, p, t in above if p >= t]
    assert metrics["thresholds"] == berth.thresholds
    assert (result.run_dir / "confusion_matrix.png").is_file()


def test_label_smoothing_reaches_the_loss_and_is_refused_for_multi_label(tmp_path, tiny_base_model):
    common = {"dataset": "rotten_tomatoes", "epochs": 1, "max_train_samples": 64}
    common["max_eval_samples"] = 16
    losses = [
        train(config(tmp_path / f"ls{ls}", tiny_base_model, label_smoothing=ls, **common)).metrics[
            "history"
        ][0]["train_loss"]
        for ls in (0.0, 0.5)
    ]
    assert abs(losses[0] - losses[1]) > 1e-4  # same seed and data: only the targets differ
    path = tmp_path / "ml.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in multi_label_records()[:40]))
    with pytest.raises(DataError, match=r"--label-smoothing.*multi-label"):
        train(
            config(
                tmp_path / "ml",
                tiny_base_model,
                train_file=str(path),
                label_column="labels",
                label_smoothing=0.1,
            )
        )
    with pytest.raises(DataError, match=r"--label-smoothing 1\.0"):
        TrainConfig(label_smoothing=1.0).validate()


def test_resume_continues_from_checkpoint(tmp_path, tiny_base_model):
    run = tmp_path / "resume"
    common = {"dataset": "rotten_tomatoes", "max_train_samples": 64, "max_eval_samples": 16}
    first = train(config(run, tiny_base_model, epochs=1, **common))
    steps = first.metrics["global_step"]
    assert steps == 4  # 64 examples / batch 16
    with pytest.raises(RunDirError, match="no Trainer checkpoint"):
        train(config(tmp_path / "fresh", tiny_base_model, epochs=2, resume=True, **common))
    second = train(config(run, tiny_base_model, epochs=2, resume=True, **common))
    assert second.metrics["resumed_from"].endswith(f"checkpoint-{steps}")
    assert second.metrics["global_step"] == 2 * steps
    assert [h["epoch"] for h in second.metrics["history"]] == [1.0, 2.0]
    # the first epoch's record comes from the saved trainer state, not a re-run
    assert second.metrics["history"][0]["train_loss"] == pytest.approx(
        first.metrics["history"][0]["train_loss"]
    )
    assert (run / "checkpoints" / f"checkpoint-{2 * steps}").is_dir()


def test_mlm_then_fine_tune(tmp_path, tiny_base_model, capsys):
    code = main(
        [
            "mlm",
            "--dataset",
            "bbc_news",
            "--model",
            str(tiny_base_model),
            "--output-dir",
            str(tmp_path / "mlm"),
            "--max-train-samples",
            "64",
            "--max-length",
            "64",
            "--batch-size",
            "16",
        ]
    )
    assert code == 0
    checkpoint = tmp_path / "mlm" / "model"
    assert (checkpoint / "model.safetensors").is_file()
    assert (checkpoint / "tokenizer.json").is_file()
    metrics = json.loads((tmp_path / "mlm" / "metrics.json").read_text())
    assert metrics["eval_perplexity"] > 1
    capsys.readouterr()
    code = main(
        [
            "--dataset",
            "rotten_tomatoes",
            "--model",
            str(checkpoint),
            "--output-dir",
            str(tmp_path / "ft"),
            "--epochs",
            "1",
            "--max-train-samples",
            "32",
            "--max-eval-samples",
            "16",
            "--max-length",
            "64",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "test accuracy:" in out and "test macro-F1:" in out and str(tmp_path / "ft") in out
    assert BerthConfig.load(tmp_path / "ft" / "model").base_model == str(checkpoint)


def test_trainer_uses_berth_parameter_groups(tmp_path, tiny_base_model):
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    from training.train import _trainer_class

    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_base_model, num_labels=2, use_safetensors=True
    )
    trainer = _trainer_class()(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.1, report_to="none"
        ),
    )
    trainer.layer_lr_decay = 0.5
    optimizer = trainer.create_optimizer()
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx(
        [1.25e-4, 2.5e-4, 5e-4, 1e-3]
    )
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.1}


KILL_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
import transformers

save = transformers.Trainer._save_checkpoint

def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up at all, like a lost machine

transformers.Trainer._save_checkpoint = save_then_die
from training.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_interrupted_run_resumes_to_the_same_final_metrics(tmp_path, tiny_base_model):
    """SIGKILL right after the first epoch's checkpoint, then `--resume`: the same
    history, test metrics and weights as a run that was never interrupted."""
    args = [
        "--dataset", "rotten_tomatoes", "--model", str(tiny_base_model),
        "--max-train-samples", "64", "--max-eval-samples", "16", "--epochs", "3",
        "--max-length", "64", "--batch-size", "16", "--lr", "1e-3",
    ]  # fmt: skip
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main([*args, "--output-dir", str(straight)]) == 0
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_CHECKPOINT, *args, "--output-dir", str(killed)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert [p.name for p in (killed / "checkpoints").iterdir()] == ["checkpoint-4"]
    assert not (killed / "metrics.json").exists() and not (killed / "model").exists()

    assert main([*args, "--output-dir", str(killed), "--resume"]) == 0
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["resumed_from"] is None and b["resumed_from"].endswith("checkpoint-4")
    assert b["global_step"] == a["global_step"] == 12
    assert len(b["history"]) == len(a["history"]) == 3
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert hb == pytest.approx(ha, rel=1e-5), (ha, hb)
    assert b["test"] == pytest.approx(a["test"], rel=1e-6)
    assert b["validation"] == pytest.approx(a["validation"], rel=1e-6)
    wa = load_file(straight / "model" / "model.safetensors")
    wb = load_file(killed / "model" / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5
