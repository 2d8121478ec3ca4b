"""`make demo`'s stage plan: which documented commands it runs, and what --skip-training reuses.

The whole demo (training, serving, Locust) takes about half an hour, so it runs from a
clean clone outside the tests (BENCHMARKS.md); here `stage` is replaced by a recorder.
"""

from __future__ import annotations

import pytest

import demo


@pytest.fixture
def recorded(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(demo, "stage", lambda title, argv: calls.append(argv))
    return calls


def test_trains_the_teacher_then_distils_the_student_from_it(recorded, tmp_path):
    args = demo.parse_args(["--run-dir", str(tmp_path / "t"), "--student-dir", "s"])
    demo.train_teacher_and_student(args)
    teacher, student = recorded
    assert teacher[:2] == ["-m", "training"] and teacher[-2:] == demo.TEACHER_RECIPE
    assert teacher[teacher.index("--output-dir") + 1] == str(tmp_path / "t")
    assert student[:3] == ["-m", "training", "distill"]
    assert student[student.index("--teacher") + 1] == f"{tmp_path / 't'}/model"
    assert student[-len(demo.STUDENT_RECIPE) :] == demo.STUDENT_RECIPE


def test_skip_training_reuses_only_checkpoints_that_exist(recorded, tmp_path):
    (tmp_path / "t" / "model").mkdir(parents=True)
    args = demo.parse_args(
        ["--run-dir", str(tmp_path / "t"), "--student-dir", str(tmp_path / "s"), "--skip-training"]
    )
    demo.train_teacher_and_student(args)
    assert [argv[:3] for argv in recorded] == [["-m", "training", "distill"]]

    (tmp_path / "s" / "model").mkdir(parents=True)
    recorded.clear()
    demo.train_teacher_and_student(args)
    assert recorded == []


def test_without_skip_training_existing_checkpoints_are_retrained(recorded, tmp_path):
    for run in ("t", "s"):
        (tmp_path / run / "model").mkdir(parents=True)
    args = demo.parse_args(["--run-dir", str(tmp_path / "t"), "--student-dir", str(tmp_path / "s")])
    demo.train_teacher_and_student(args)
    assert len(recorded) == 2 and all("--overwrite" in argv for argv in recorded)


def test_the_docker_lines_serve_the_published_repository_as_it_is(tmp_path):
    """CPU: the default configs, no flag; GPU: --model-config-name=gpu; both mount the
    repository the demo published, in the image docker/Dockerfile builds."""
    build, cpu, gpu = demo.docker_lines(tmp_path)
    assert build == "docker build -f docker/Dockerfile -t berth-triton ."
    for line in (cpu, gpu):
        assert f"-v {tmp_path}:/models berth-triton tritonserver --model-repository=/models" in line
    assert "--model-config-name" not in cpu and "--gpus" not in cpu
    assert "--gpus=1" in gpu and "--model-config-name=gpu" in gpu
    assert "--no-ragged" not in build + cpu + gpu


def _published(repository, name: str = "sentiment", variant: str = "onnx_int8") -> None:
    (repository / name).mkdir(parents=True)
    steps = [f'step {{ model_name: "{name}_{member}" }}' for member in ("tokenizer", variant)]
    (repository / name / "config.pbtxt").write_text("\n".join(steps))
    (repository / f"{name}_{variant}" / "1").mkdir(parents=True)


def test_the_served_graph_is_the_one_the_ensemble_names(tmp_path):
    _published(tmp_path, variant="onnx_fp32")  # int8 refused by its gate: fp32 is served
    assert demo.classifier_graph(tmp_path, "sentiment") == (
        tmp_path / "sentiment_onnx_fp32" / "1" / "model.onnx"
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.pbtxt").write_text('step { model_name: "x_onnx_int8" }')
    with pytest.raises(SystemExit, match="names no other_onnx"):
        demo.classifier_graph(tmp_path, "other")


@pytest.mark.parametrize("pypi", [True, False])
def test_the_student_is_set_against_its_teacher_as_served(monkeypatch, tmp_path, capsys, pypi):
    """The teacher is published into a copy of the repository (the demo's own stays the
    student's), both scored through their served graphs on the held-out split and, when
    PyPI gives the outside texts, on those too; then one throughput run of the two."""
    import subprocess

    import export.agreement

    calls, scored = [], []

    def stage(title, argv):
        calls.append(argv)
        if argv[1] == "loadtest.outside_texts" and not pypi:
            raise subprocess.CalledProcessError(1, argv)
        if argv[1] == "loadtest.compare":
            out = argv[argv.index("--output") + 1]
            (tmp_path / out).write_text("- (3)/(4): **1.73×** the teacher ensemble's throughput")
        if argv[1] == "export":  # what the teacher's export publishes
            _published(tmp_path / argv[argv.index("--model-repository") + 1], "sentiment_teacher")

    def compare(config):
        scored.append((config.source, config.teacher_onnx.parent.parent.name,
                       config.student_onnx.parent.parent.name))  # fmt: skip
        gap = {"points": -10.0, "interval_95": [-25.5, 5.5]}
        return {"texts": 10, "teacher_accuracy": 0.9, "student_accuracy": 0.8, "agreement": 0.85,
                "student_minus_teacher": gap}  # fmt: skip

    monkeypatch.setattr(demo, "stage", stage)
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    monkeypatch.setattr(export.agreement, "compare", compare)
    monkeypatch.chdir(tmp_path)
    _published(tmp_path / "repo")
    args = demo.parse_args(["--model-repository", "repo", "--student-dir", "s"])
    demo.student_against_teacher(args, tmp_path / "s")
    exported, *_, throughput = calls
    copy = str(tmp_path / "s" / "compare_repository")
    assert exported[exported.index("--model-repository") + 1] == copy
    assert (tmp_path / "s" / "compare_repository" / "sentiment" / "config.pbtxt").is_file()
    assert not (tmp_path / "repo" / "sentiment_teacher").exists()
    graphs = ("sentiment_teacher_onnx_int8", "sentiment_onnx_int8")
    expected = [str(tmp_path / "s" / "splits" / "test.jsonl")]
    expected += ["imdb_test", "drug_reviews"] if pypi else []
    assert scored == [(source, *graphs) for source in expected]
    assert throughput[throughput.index("--teacher-model") + 1] == "sentiment_teacher"
    assert throughput[throughput.index("--model-repository") + 1] == copy
    printed = capsys.readouterr().out
    assert "90.00%   80.00%   85.0%  -10.00 (-25.5 to +5.5)" in printed
    assert "the student 1.73× the teacher" in printed
