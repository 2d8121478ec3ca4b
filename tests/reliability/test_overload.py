"""Overload: bounded queues keep accepted latency bounded and reject the rest quickly.

The suite's repository is published with `--max-queue-size 8 --queue-timeout-us 1000000`
(tests/reliability/served.py). First the sustainable rate is measured (closed loop, 8
concurrent gRPC requests), then requests are offered open-loop at 5× that rate. The
tests assert behaviour, not speed: the queues stay bounded (Triton's pending-request
gauge), the excess is refused with UNAVAILABLE ("Exceeds maximum queue size": refused
on arrival, not after waiting), every request is answered or refused, the server's memory
(RSS of the process tree, stubs included) stays flat, and afterwards the server answers
normally. The latencies and rates are printed as figures; RELIABILITY.md, "Overload",
records them with the command that produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import urllib.request

import numpy as np
import psutil
import pytest

from berth_client import Classifier, RetryPolicy, ServerOverloadedError
from tests.reliability.served import (
    GOOD_TEXT,
    MAX_QUEUE_SIZE,
    MAX_TEXT_BYTES,
    MODEL,
    model_requests,
)
from tests.triton_text import text_input

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


PENDING = re.compile(r'^nv_inference_pending_request_count\{model="([^"]+)",[^}]*\} (\S+)$', re.M)
# A bounded queue's gauge can read a little over max_queue_size while requests are being
# refused (seen: 10 for a queue of 8; a request is counted before the size check refuses
# it), so the bound leaves a batch (64) of room; an unbounded queue at 5× the
# sustainable rate holds thousands of requests within seconds.
PENDING_BOUND = MAX_QUEUE_SIZE + 64


class PendingSampler(threading.Thread):
    """The peak of Triton's `nv_inference_pending_request_count` gauge per model (requests
    waiting in its queue), from the metrics endpoint."""

    def __init__(self, metrics_url: str, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.url, self.every = f"http://{metrics_url}/metrics", every
        self.peaks: dict[str, float] = {}
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    text = response.read().decode()
                for model, value in PENDING.findall(text):
                    self.peaks[model] = max(self.peaks.get(model, 0.0), float(value))
                self.samples += 1
            self._stop_event.wait(self.every)

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join(30)
        return self.peaks


def pct(values, q):
    return float(np.percentile(values, q)) if values else 0.0


async def _request(client, index: int, results: list) -> None:
    import tritonclient.grpc.aio as aio

    inp = text_input(aio, [TEXTS[index % len(TEXTS)]])
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
    answered_before = model_requests(served.http_url, ("success",))
    sampler, pending = RssSampler(pid), PendingSampler(served.server.metrics_url)
    sampler.start()
    pending.start()
    results, offered = asyncio.run(open_loop(url, OVERLOAD_FACTOR * sustainable, OVERLOAD_S))
    samples, peaks = sampler.stop(), pending.stop()
    answered = model_requests(served.http_url, ("success",))[MODEL] - answered_before[MODEL]

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
        "pending_peaks": peaks,
    }
    print(f"\noverload figures: {figures}")
    (served.repository.parent / "overload.txt").write_text(repr(figures))

    assert len(results) == offered  # every request answered or refused, none lost
    assert rejected, figures  # really overloaded: the bounded queues refused the excess ...
    # ... on arrival, "Exceeds maximum queue size"; none waited out its queue timeout
    # ("Request timeout expired") and nothing else failed
    assert not other, other[:3]
    assert accepted, figures  # still serving
    # the server answered exactly the requests the client saw accepted: none lost, none
    # refused after it was answered
    assert answered == len(accepted), (answered, figures)
    # accepted requests wait in at most two 8-deep queues, each with a 1 s timeout: the
    # queues stayed bounded (their latency is a figure, RELIABILITY.md "Overload")
    assert pending.samples > 0 and set(peaks) >= {f"{MODEL}_tokenizer", f"{MODEL}_onnx_int8"}
    assert all(peak <= PENDING_BOUND for peak in peaks.values()), figures
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
    (where they wait at most QUEUE_TIMEOUT_US). Every attempt of the client is refused
    because the queue is full (the premise, checked on each attempt's error rather than
    by the clock), and Classifier retries 3 times with full-jitter sleeps under caps
    0.02, 0.04, 0.08 s before raising ServerOverloadedError; the busy request is
    answered, the queued ones too or refused as timed out."""
    import tritonclient.grpc as grpcclient

    tokenizer = f"{MODEL}_tokenizer"
    url = served.grpc_url
    clf = Classifier(url, model=MODEL, protocol="grpc")
    clf.retry_policy = RecordingPolicy(retries=3, backoff=0.02, max_backoff=2.0)
    clf.model_info()  # the config is read first, off the clock
    attempts: list[float] = []
    refusals: list[str] = []
    infer = clf._client.infer

    def timed_infer(*args, **kwargs):
        attempts.append(time.perf_counter())
        try:
            return infer(*args, **kwargs)
        except Exception as exc:
            refusals.append(str(exc))
            raise

    clf._client.infer = timed_infer
    big = ("a gripping, funny and moving film " * 40_000)[: MAX_TEXT_BYTES - 64]
    done: dict[str, tuple[float, str]] = {}

    def send(name: str, texts: list[str]) -> None:
        client = grpcclient.InferenceServerClient(url)
        inp = text_input(grpcclient, texts)
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
    # the premise: the instance was busy and its queue full at every attempt
    assert len(refusals) == len(attempts) == 4, refusals
    assert all("Exceeds maximum queue size" in m for m in refusals), refusals
    assert [(a, c) for a, c, _ in delays] == [(1, 0.02), (2, 0.04), (3, 0.08)]
    assert all(0 <= d <= c for _, c, d in delays)
    gaps = np.diff(attempts)
    for gap, (_, _, slept) in zip(gaps, delays, strict=True):
        assert gap >= slept  # each retry waited its jittered delay
    served.assert_healthy()
