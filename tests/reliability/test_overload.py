"""Overload: bounded queues keep accepted latency bounded and reject the rest quickly.

The suite's repository is published with `--max-queue-size 8 --queue-timeout-us 1000000`
(tests/reliability/served.py). First the sustainable rate is measured (closed loop, 8
concurrent gRPC requests), then requests are offered open-loop at 5× that rate. The
accepted ones keep a bounded p99, the others are refused at once with UNAVAILABLE
("Exceeds maximum queue size"), the server's memory (RSS of the process tree, stubs
included) stays flat, and afterwards the server answers normally. RELIABILITY.md,
"Overload".
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import numpy as np
import psutil
import pytest

from berth_client import Classifier, RetryPolicy, ServerOverloadedError
from tests.reliability.served import GOOD_TEXT, MAX_TEXT_BYTES, MODEL, QUEUE_TIMEOUT_US

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


class RecordingPolicy(RetryPolicy):
    """RetryPolicy that records the sleeps it chooses (full jitter under growing caps)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "delays", [])

    def delay(self, attempt, rng=None):
        value = super().delay(attempt) if rng is None else super().delay(attempt, rng)
        self.delays.append((attempt, self.cap(attempt), value))
        return value


def test_client_retries_with_growing_backoff_then_raises_overloaded(served):
    """Real overload of the tokenizer's one instance: a request of 4 texts of 1 MiB
    keeps it busy for seconds (tokenizing 4 MiB), and 8 requests fill its 8-deep queue
    (where they wait at most QUEUE_TIMEOUT_US). Every attempt of the client within that
    second is refused, and Classifier retries 3 times with full-jitter sleeps under caps
    0.02, 0.04, 0.08 s before raising ServerOverloadedError; the busy request is
    answered afterwards, the queued ones too or refused as timed out."""
    import tritonclient.grpc as grpcclient

    tokenizer = f"{MODEL}_tokenizer"
    url = served.grpc_url
    clf = Classifier(url, model=MODEL, protocol="grpc")
    clf.retry_policy = RecordingPolicy(retries=3, backoff=0.02, max_backoff=2.0)
    clf.model_info()  # the config is read first, off the clock
    attempts: list[float] = []
    infer = clf._client.infer

    def timed_infer(*args, **kwargs):
        attempts.append(time.perf_counter())
        return infer(*args, **kwargs)

    clf._client.infer = timed_infer
    big = ("a gripping, funny and moving film " * 40_000)[: MAX_TEXT_BYTES - 64]
    done: dict[str, tuple[float, str]] = {}

    def send(name: str, texts: list[str]) -> None:
        client = grpcclient.InferenceServerClient(url)
        data = np.array([[t.encode()] for t in texts], dtype=np.object_)
        inp = grpcclient.InferInput("TEXT", list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        try:
            client.infer(tokenizer, [inp], client_timeout=120)
            done[name] = (time.perf_counter(), "")
        except Exception as exc:
            done[name] = (time.perf_counter(), str(exc))
        finally:
            client.close()

    busy = threading.Thread(target=send, args=("busy", [big] * 4))
    busy.start()
    time.sleep(0.5)  # the 4 MiB request is in the instance
    queued = [threading.Thread(target=send, args=(f"q{i}", [GOOD_TEXT])) for i in range(8)]
    for thread in queued:
        thread.start()
    time.sleep(0.3)  # ... and 8 requests wait in the queue
    queued_at = time.perf_counter() - 0.3
    try:
        with pytest.raises(ServerOverloadedError, match="Exceeds maximum queue size"):
            clf.predict(GOOD_TEXT)
        refused_until = time.perf_counter()
    finally:
        clf.close()
        for thread in [busy, *queued]:
            thread.join(180)
    delays = clf.retry_policy.delays
    print(
        f"\nbusy request answered {done['busy'][0] - refused_until:.2f} s after the last "
        f"refusal; retry sleeps {[round(d, 3) for *_, d in delays]}"
    )
    assert done["busy"][1] == ""
    # the queued ones were answered, or refused once their second in the queue was up
    assert all(error == "" or "Request timeout expired" in error for _, error in done.values())
    # the premise: the instance was busy and the queue full throughout the retries
    assert done["busy"][0] > refused_until
    assert refused_until - queued_at < QUEUE_TIMEOUT_US / 1e6
    assert [(a, c) for a, c, _ in delays] == [(1, 0.02), (2, 0.04), (3, 0.08)]
    assert all(0 <= d <= c for _, c, d in delays)
    assert len(attempts) == 4
    gaps = np.diff(attempts)
    for gap, (_, _, slept) in zip(gaps, delays, strict=True):
        assert gap >= slept  # each retry waited its jittered delay
    served.assert_healthy()
