"""The reliability suite's one `tritonserver` (see served.py)."""

from __future__ import annotations

import contextlib

import pytest

from tests.reliability.served import Served, publish


@pytest.fixture(scope="session")
def served(tmp_path_factory, sentiment_checkpoint) -> Served:
    repository = tmp_path_factory.mktemp("reliability") / "repository"
    publish(repository, sentiment_checkpoint)
    served = Served(repository, sentiment_checkpoint)
    with contextlib.ExitStack() as stack:
        stack.callback(served.stop)
        served.start()
        served.reference = served.classify()
        yield served
