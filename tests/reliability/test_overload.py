"""Overload: bounded queues keep accepted latency bounded and reject the rest quickly.

The suite's repository is published with `--max-queue-size 8 --queue-timeout-us 1000000`
(tests/reliability/conftest.py). First the sustainable rate is measured (closed loop, 8
concurrent gRPC requests), then requests are offered open-loop at 5× that rate. The
accepted ones keep a bounded p99, the others are refused at once with UNAVAILABLE
("Exceeds maximum queue size"), the server's memory (RSS of the process tree, stubs
included) stays flat, and afterwards the server answers normally. RELIABILITY.md,
"Overload".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time

import numpy as np
import psutil
import pytest

from berth_client import Classifier, RetryPolicy, ServerOverloadedError
from tests.reliability.conftest import GOOD_TEXT, MODEL, QUEUE_TIMEOUT_US

pytestmark = [pytest.mark.server, pytest.mark.slow]

BASELINE_S = 3.0
OVERLOAD_S = 8.0
OVERLOAD_FACTOR = 5
TEXTS = [
    GOOD_TEXT,
    "the plot is thin and the dialogue is worse",
    "an unexpectedly tender portrait of a family in crisis, beautifully shot",
    "dull",
]


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append(tree_rss(self.pid))
            self._stop_event.wait(self.every)

    def stop(self) -> list[int]:
        self._stop_event.set()
        self.join(5)
        return self.samples


def pct(values, q):
    return float(np.percentile(values, q)) if values else 0.0


async def _request(client, index: int, results: list) -> None:
    import tritonclient.grpc.aio as aio

    data = np.array([[TEXTS[index % len(TEXTS)].encode()]], dtype=np.object_)
    inp = aio.InferInput("TEXT", [1, 1], "BYTES")
    inp.set_data_from_numpy(data)
    started = time.perf_counter()
    try:
        await client.infer(MODEL, [inp], client_timeout=30)
        results.append((True, time.perf_counter() - started, ""))
    except Exception as exc:
        results.append((False, time.perf_counter() - started, str(exc)))


async def closed_loop(url: str, concurrency: int, duration: float) -> list:
    import tritonclient.grpc.aio as aio

    client = aio.InferenceServerClient(url)
    results: list = []
    deadline = time.perf_counter() + duration

    async def user(u: int) -> None:
        i = u
        while time.perf_counter() < deadline:
            await _request(client, i, results)
            i += concurrency

    try:
        await asyncio.gather(*(user(u) for u in range(concurrency)))
    finally:
        await client.close()
    return results


async def open_loop(url: str, rate: float, duration: float, max_inflight: int = 1024):
    """Offer `rate` req/s for `duration` s whatever the answers (ticks of 5 ms);
    returns (results, requests offered)."""
    import tritonclient.grpc.aio as aio

    client = aio.InferenceServerClient(url)
    results: list = []
    tasks: set = set()
    offered = 0
    start = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - start) < duration:
            due = int(elapsed * rate) - offered
            for _ in range(max(0, due)):
                if len(tasks) >= max_inflight:
                    break
                task = asyncio.create_task(_request(client, offered, results))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                offered += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
    finally:
        await client.close()
    return results, offered


def test_five_times_the_sustainable_rate(served):
    url = served.grpc_url
    pid = served.server.process.pid
    baseline = asyncio.run(closed_loop(url, 8, BASELINE_S))
    assert all(ok for ok, _, _ in baseline), [m for ok, _, m in baseline if not ok][:3]
    sustainable = len(baseline) / BASELINE_S
    base_p99 = pct([t for _, t, _ in baseline], 99)

    rss_before = tree_rss(pid)
    sampler = RssSampler(pid)
    sampler.start()
    results, offered = asyncio.run(open_loop(url, OVERLOAD_FACTOR * sustainable, OVERLOAD_S))
    samples = sampler.stop()

    accepted = [t for ok, t, _ in results if ok]
    rejected = [(t, m) for ok, t, m in results if not ok]
    other = [m for _, m in rejected if "Exceeds maximum queue size" not in m]
    figures = {
        "sustainable_rps": round(sustainable, 1),
        "baseline_p99_ms": round(1000 * base_p99, 1),
        "offered_rps": round(offered / OVERLOAD_S, 1),
        "accepted_rps": round(len(accepted) / OVERLOAD_S, 1),
        "rejected": len(rejected),
        "accepted_p50_ms": round(1000 * pct(accepted, 50), 1),
        "accepted_p99_ms": round(1000 * pct(accepted, 99), 1),
        "rejected_p99_ms": round(1000 * pct([t for t, _ in rejected], 99), 1),
        "rss_before_mb": rss_before >> 20,
        "rss_max_mb": max(samples, default=0) >> 20,
    }
    print(f"\noverload figures: {figures}")
    (served.repository.parent / "overload.txt").write_text(repr(figures))

    assert len(results) == offered
    assert offered / OVERLOAD_S >= 2 * sustainable, figures  # really overloaded
    assert rejected, figures  # the bounded queues refused the excess ...
    assert not other, other[:3]  # ... as "Exceeds maximum queue size", nothing else
    # Latencies are measured in the load generator, which shares the 2 CI cores with the
    # server (its event loop lags at ~3,500 req/s): the bounds leave room for that.
    assert pct([t for t, _ in rejected], 50) < 0.25, figures  # refused at once
    assert pct([t for t, _ in rejected], 99) < 1.0, figures
    # accepted requests wait in at most two 8-deep queues, each with a 1 s timeout:
    # bounded (an unbounded queue at 5× grows by ~4× the rate every second)
    assert pct(accepted, 99) < 2 * QUEUE_TIMEOUT_US / 1e6, figures
    assert accepted, figures  # still serving
    assert max(samples) - rss_before < 256 << 20, figures  # memory stays bounded
    served.assert_healthy()


def _tokenizer_stub(served) -> psutil.Process:
    from tests.reliability.test_faults import python_stubs

    # the newest: the instance's stub (the model-level one starts first)
    stubs = python_stubs(served.server.process.pid, f"{MODEL}_tokenizer")
    return max(stubs, key=lambda p: p.create_time())


class RecordingPolicy(RetryPolicy):
    """RetryPolicy that records the sleeps it chooses (full jitter under growing caps)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "delays", [])

    def delay(self, attempt, rng=None):
        value = super().delay(attempt) if rng is None else super().delay(attempt, rng)
        self.delays.append((attempt, self.cap(attempt), value))
        return value


@pytest.mark.xfail(
    reason="a SIGSTOPped stub can be judged unhealthy by Triton (500 'Stub process ... is "
    "not healthy') before the queue fills: the overload condition is not yet reliably "
    "produced (RELIABILITY.md, left undone)",
    strict=False,
)
def test_client_retries_with_growing_backoff_then_raises_overloaded(served):
    """The tokenizer's stub is paused (SIGSTOP) so its 8-deep queue fills and stays full:
    every attempt is refused, and Classifier retries 3 times with full-jitter sleeps
    under caps 0.05, 0.1, 0.2 s before raising ServerOverloadedError."""
    import tritonclient.grpc.aio as aio

    stub = _tokenizer_stub(served)
    url = served.grpc_url

    async def fill_then_classify():
        client = aio.InferenceServerClient(url)
        results: list = []
        fillers = [asyncio.create_task(_request(client, i, results)) for i in range(40)]
        await asyncio.sleep(0.3)  # the batch in flight + 8 queued; the rest refused

        def classify():
            clf = Classifier(url, model=MODEL, protocol="grpc", retries=3, backoff=0.05)
            clf.retry_policy = RecordingPolicy(retries=3, backoff=0.05, max_backoff=2.0)
            attempts = []
            infer = clf._client.infer

            def timed_infer(*args, **kwargs):
                attempts.append(time.perf_counter())
                return infer(*args, **kwargs)

            clf._client.infer = timed_infer
            clf.model_info()  # config only: answered while the stub is paused
            try:
                with pytest.raises(ServerOverloadedError, match="Exceeds maximum queue size"):
                    clf.predict(GOOD_TEXT)
            finally:
                clf.close()
            return clf.retry_policy.delays, attempts

        delays, attempts = await asyncio.to_thread(classify)
        os.kill(stub.pid, 18)  # SIGCONT: the queued requests are served
        await asyncio.gather(*fillers)
        await client.close()
        return delays, attempts, results

    os.kill(stub.pid, 19)  # SIGSTOP
    try:
        delays, attempts, fillers = asyncio.run(fill_then_classify())
    finally:
        os.kill(stub.pid, 18)
    assert [(a, c) for a, c, _ in delays] == [(1, 0.05), (2, 0.1), (3, 0.2)]
    assert all(0 <= d <= c for _, c, d in delays)
    assert len(attempts) == 4
    gaps = np.diff(attempts)
    for gap, (_, _, slept) in zip(gaps, delays, strict=True):
        assert gap >= slept  # each retry waited its jittered delay
    assert any(ok for ok, _, _ in fillers)  # the queued ones were answered after SIGCONT
    served.assert_healthy()
