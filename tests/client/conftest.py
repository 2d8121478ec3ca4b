"""Fixtures for client and load tests: real `tritonserver`s (pip binary, through
serving.server.TritonServer). tests/loadtest/conftest.py imports the same fixtures;
`shared()` makes both directories use one server per session."""

from __future__ import annotations

import contextlib

import pytest

from tests.client.stub_models import write_stub_repository
from tests.export.fixtures import multilabel_checkpoint, sentiment_checkpoint

__all__ = [  # re-exported: tests/export's session checkpoints, built once
    "ensemble",
    "multilabel_checkpoint",
    "sentiment_checkpoint",
    "stub_server",
]

_SHARED: dict[str, object] = {}


def shared(key: str, factory):
    """Enter `factory()` once per session, whichever conftest asks first; the exit
    stack is closed at session end by the fixture that created it."""
    if key in _SHARED:
        yield _SHARED[key]
        return
    with contextlib.ExitStack() as stack:
        _SHARED[key] = stack.enter_context(factory())
        try:
            yield _SHARED[key]
        finally:
            _SHARED.pop(key, None)


@pytest.fixture(scope="session")
def stub_server(tmp_path_factory):
    """A real tritonserver serving the stand-in `sentiment` and `tags` Python models."""
    server_mod = pytest.importorskip("serving.server")

    def start():
        repository = write_stub_repository(tmp_path_factory.mktemp("stub-repository"))
        return server_mod.TritonServer(repository)

    yield from shared("stub", start)


@pytest.fixture(scope="session")
def ensemble(tmp_path_factory, sentiment_checkpoint, multilabel_checkpoint):
    """(server, checkpoints): the real ensembles `sentiment` (binary), `tags`
    (multi-label, per-label thresholds), `reviews` and `reviews_steps` (window mode,
    fp32) published by `python -m export`."""
    server_mod = pytest.importorskip("serving.server")
    from tests.client.ensembles import EXTRA_ARGS, LONG, LONG_STEPS, MULTI, SINGLE, publish
    from tests.export.fixtures import windowed_copy

    windowed = windowed_copy(tmp_path_factory, sentiment_checkpoint)
    checkpoints = {
        SINGLE: sentiment_checkpoint,
        MULTI: multilabel_checkpoint,
        LONG: windowed,
        LONG_STEPS: windowed,
    }

    @contextlib.contextmanager
    def start():
        repository = tmp_path_factory.mktemp("ensembles") / "repository"
        for name, checkpoint in checkpoints.items():
            publish(repository, name, checkpoint, EXTRA_ARGS.get(name))
        with server_mod.TritonServer(repository) as server:
            yield server, checkpoints

    yield from shared("ensemble", start)
