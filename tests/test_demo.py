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
