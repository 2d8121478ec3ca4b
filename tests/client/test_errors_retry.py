"""Unit tests (no server): exception translation, retry policy, backoff with full jitter."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from tritonclient.utils import InferenceServerException

from berth_client import (
    BerthError,
    InvalidInputError,
    ModelNotFoundError,
    RequestTimeoutError,
    RetryPolicy,
    ServerOverloadedError,
    ServerUnavailableError,
)
from berth_client.errors import translate
from berth_client.retry import acall_with_retry, call_with_retry
from berth_core.errors import ServingError

URL = "http://127.0.0.1:8000"


def ise(status, msg="boom"):
    return InferenceServerException(msg=msg, status=status)


@pytest.mark.parametrize(
    "exc, kind, transient",
    [
        (ConnectionRefusedError(111, "Connection refused"), ServerUnavailableError, True),
        (ConnectionResetError(), ServerUnavailableError, True),
        (TimeoutError("timed out"), RequestTimeoutError, False),
        (ise("503"), ServerUnavailableError, True),
        (
            ise("StatusCode.UNAVAILABLE", "failed to connect to all addresses"),
            ServerUnavailableError,
            True,
        ),
        (ise("429"), ServerOverloadedError, True),
        (ise("StatusCode.RESOURCE_EXHAUSTED"), ServerOverloadedError, True),
        (ise("503", "Exceeds maximum queue size"), ServerOverloadedError, True),
        # a dead Python-backend stub's window, until the watchdog reloaded its model
        (
            ise("500", "in ensemble 's', Stub process 's_0_0' is not healthy."),
            ServerUnavailableError,
            True,
        ),
        (
            ise("StatusCode.INTERNAL", "Stub process 's_0_0' is not healthy."),
            ServerUnavailableError,
            True,
        ),
        (ise("500", "Failed to obtain the health mutex."), ServerUnavailableError, True),
        (ise("503", "in ensemble 's', Request timeout expired"), ServerOverloadedError, True),
        (
            ise("503", "in ensemble 's', over the admission rate (200 requests/s per …)"),
            ServerOverloadedError,
            True,
        ),
        (
            ise("400", "Request for unknown model: 'sentimnet' is not found"),
            ModelNotFoundError,
            False,
        ),
        (ise("400", "Exceeds maximum queue size"), ServerOverloadedError, True),
        (ise("404", "Request for unknown model: 'x' is not found"), ModelNotFoundError, False),
        (ise("StatusCode.NOT_FOUND"), ModelNotFoundError, False),
        (ise("400", "unexpected shape for input 'TEXT'"), InvalidInputError, False),
        (ise("StatusCode.INVALID_ARGUMENT"), InvalidInputError, False),
        (ise("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"), RequestTimeoutError, False),
        (ise("500", "internal"), ServingError, False),
        (ise(None, "weird"), ServingError, False),
    ],
)
def test_translate(exc, kind, transient):
    error = translate(exc, url=URL, model="sentiment")
    assert type(error) is kind
    assert error.transient is transient


def test_unavailable_error_names_the_url():
    error = translate(ConnectionRefusedError(111, "refused"), url=URL)
    assert error.url == URL and URL in str(error)


def test_aiohttp_connection_errors_are_unavailable():
    error = translate(aiohttp.ServerDisconnectedError(), url=URL)
    assert isinstance(error, ServerUnavailableError)


def test_full_jitter_backoff_bounds():
    policy = RetryPolicy(retries=5, backoff=0.1, max_backoff=0.5)
    assert [policy.cap(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert policy.delay(3, rng=lambda lo, hi: hi) == pytest.approx(0.4)
    assert policy.delay(3, rng=lambda lo, hi: lo) == 0.0
    for _ in range(200):
        assert 0.0 <= policy.delay(2) <= 0.2
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)


class Flaky:
    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def tr(exc):
    return translate(exc, url=URL, model="m")


def test_transient_failures_are_retried_with_backoff():
    sleeps = []
    fn = Flaky([ConnectionRefusedError(), ise("503"), ise("429")])
    assert (
        call_with_retry(
            fn, RetryPolicy(retries=3, backoff=1, max_backoff=100), tr, sleep=sleeps.append
        )
        == "ok"
    )
    assert fn.calls == 4
    assert len(sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(sleeps, [1, 2, 4], strict=True))


def test_retries_are_bounded():
    sleeps = []
    fn = Flaky([ConnectionRefusedError()] * 10)
    with pytest.raises(ServerUnavailableError) as info:
        call_with_retry(fn, RetryPolicy(retries=2), tr, sleep=sleeps.append)
    assert fn.calls == 3 and len(sleeps) == 2
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_the_default_policy_outlasts_a_dead_stub_and_not_a_typo():
    """A dead stub fails each attempt after ~1 s (Triton's stub health check) until the
    watchdog reloaded the model: 2-3 s after the kill in RELIABILITY.md's drill, so the
    default 3 retries (4 attempts, ~4 s, plus <= 0.35 s of backoff) outlast it; a
    mistyped model is refused on the first attempt."""
    from berth_client import Classifier

    policy = Classifier("localhost:1").retry_policy
    assert policy == RetryPolicy(retries=3, backoff=0.05, max_backoff=2.0)
    assert sum(policy.cap(n) for n in range(1, policy.retries + 1)) == pytest.approx(0.35)
    dead = ise("500", "in ensemble 's', Stub process 's_tokenizer_0_0' is not healthy.")
    fn = Flaky([dead] * policy.retries)
    assert call_with_retry(fn, policy, tr, sleep=lambda _: None) == "ok"
    typo = Flaky([ise("400", "Request for unknown model: 'sentimnet' is not found")])
    with pytest.raises(ModelNotFoundError):
        call_with_retry(typo, policy, tr, sleep=lambda _: None)
    assert typo.calls == 1


@pytest.mark.parametrize(
    "exc", [ise("400", "bad shape"), ise("404", "unknown model"), TimeoutError(), ise("500")]
)
def test_permanent_failures_are_not_retried(exc):
    sleeps = []
    fn = Flaky([exc])
    with pytest.raises(BerthError):
        call_with_retry(fn, RetryPolicy(retries=5), tr, sleep=sleeps.append)
    assert fn.calls == 1 and sleeps == []


def test_async_retry():
    sleeps = []
    fn = Flaky([ise("StatusCode.UNAVAILABLE"), ise("StatusCode.RESOURCE_EXHAUSTED")])

    async def call():
        return fn()

    async def sleep(s):
        sleeps.append(s)

    result = asyncio.run(acall_with_retry(call, RetryPolicy(retries=2), tr, sleep=sleep))
    assert result == "ok" and fn.calls == 3 and len(sleeps) == 2

    fn = Flaky([ise("StatusCode.INVALID_ARGUMENT")])
    with pytest.raises(InvalidInputError):
        asyncio.run(acall_with_retry(call, RetryPolicy(retries=2), tr, sleep=sleep))
    assert fn.calls == 1
