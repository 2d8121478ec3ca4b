"""Locust users that call a served berth ensemble.

Run through `python -m loadtest` (which sets the environment below and checks SLOs), or
directly:

    BERTH_MODEL=sentiment locust -f loadtest/locustfile.py --headless -u 64 -t 20s \
        --host http://127.0.0.1:8000 BerthClientUser

User classes:
- `BerthClientUser`: the real client path, `berth_client.Classifier` (HTTP through
  geventhttpclient, or gRPC with grpc's gevent integration), one text per request, each
  request reported to Locust with its latency and exception.
- `FastTritonUser`: the cheap path. The KServe-v2 binary request bodies are built once
  with tritonclient's own `generate_request_body` and posted with Locust's FastHttpUser;
  the response is checked for status and for the `PROBABILITIES` output. Much less load
  generator CPU per request, which matters when Locust shares the server's cores.
- `ReferenceServiceUser`: posts `{"text": ...}` JSON to the plain PyTorch service of
  `python -m loadtest.compare`.

Environment: BERTH_MODEL (default sentiment), BERTH_PROTOCOL (http|grpc, for
BerthClientUser), BERTH_SCENARIO (snippets|long), BERTH_TEXTS (a texts file; default:
the Rotten Tomatoes snippets), BERTH_TIMEOUT (seconds, default 10), BERTH_USER_RPS
(per-user pacing; unset = no wait between requests), BERTH_FAILURES_FILE (where the
run's failures are written by message at the end, as JSON; Locust's own failures CSV
is flushed periodically and can miss the last second).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from locust import FastHttpUser, User, constant, constant_throughput, events, task
from locust.runners import WorkerRunner

from berth_client.model import PROBABILITIES
from loadtest.bodies import BODY_POOL as MAX_BODIES
from loadtest.bodies import build_body
from loadtest.data import TextPicker, load_texts

MODEL = os.environ.get("BERTH_MODEL", "sentiment")
PROTOCOL = os.environ.get("BERTH_PROTOCOL", "http")
SCENARIO = os.environ.get("BERTH_SCENARIO", "snippets")
TEXTS_FILE = os.environ.get("BERTH_TEXTS") or None
TIMEOUT = float(os.environ.get("BERTH_TIMEOUT", "10"))
USER_RPS = float(os.environ.get("BERTH_USER_RPS", "0") or 0)
# Zipf-like repeats of the texts (loadtest.data.TextPicker); 0: uniform draws.
ZIPF = float(os.environ.get("BERTH_ZIPF", "0") or 0)
FAILURES_FILE = os.environ.get("BERTH_FAILURES_FILE") or None

if PROTOCOL == "grpc":
    # grpc's C core runs its own threads; under Locust's gevent monkey-patching they
    # must be integrated with gevent's hub before any channel exists, or calls block
    # the whole process.
    import grpc.experimental.gevent as grpc_gevent

    grpc_gevent.init_gevent()

from berth_client import Classifier  # noqa: E402  (after gevent set-up for grpc)

TEXTS = load_texts(TEXTS_FILE, SCENARIO)
PICK = TextPicker(len(TEXTS), ZIPF)
REQUEST_NAME = f"{MODEL} [{SCENARIO}]"


_ENVIRONMENT: list = []


@events.init.add_listener
def _keep_environment(environment, **_) -> None:
    _ENVIRONMENT.append(environment)


@events.quit.add_listener
def _write_failures(**_) -> None:
    """After the runner stopped (the point Locust writes --json-file): the run's failures
    by message. Workers leave it to the master, which holds them all."""
    runner = _ENVIRONMENT[0].runner if _ENVIRONMENT else None
    if not FAILURES_FILE or runner is None or isinstance(runner, WorkerRunner):
        return
    rows = [
        {"error": e.to_name(), "occurrences": e.occurrences} for e in runner.stats.errors.values()
    ]
    path = Path(FAILURES_FILE)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(rows))
    partial.replace(path)


def _wait_time():
    return constant_throughput(USER_RPS) if USER_RPS > 0 else constant(0)


def _host_port(host: str) -> str:
    for scheme in ("http://", "grpc://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    return host.rstrip("/")


class BerthClientUser(User):
    """One `berth_client.Classifier` per user; no retries and no client-side throttling
    (the load test must see every failure and offer every request; the open loop's
    `--client-throttle` measures throttling clients)."""

    wait_time = _wait_time()

    def on_start(self) -> None:
        self.classifier = Classifier(
            _host_port(self.host or "127.0.0.1:8000"),
            model=MODEL,
            protocol=PROTOCOL,
            timeout=TIMEOUT,
            retries=0,
            throttle=0,
        )
        # The config read is not part of the measurement; when it fails (server down,
        # unknown model) the failure is reported and every request will fail too.
        started = time.perf_counter()
        try:
            self.classifier.model_info()
        except Exception as exc:
            events.request.fire(
                request_type=PROTOCOL.upper(),
                name=f"{MODEL} [config]",
                response_time=(time.perf_counter() - started) * 1000.0,
                response_length=0,
                exception=exc,
                context={},
            )

    def on_stop(self) -> None:
        self.classifier.close()

    @task
    def predict(self) -> None:
        text = TEXTS[PICK()]
        started = time.perf_counter()
        exception = None
        try:
            self.classifier.predict(text)
        except Exception as exc:
            exception = exc
        events.request.fire(
            request_type=PROTOCOL.upper(),
            name=REQUEST_NAME,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=0,
            exception=exception,
            context={},
        )


_BODIES: dict[int, tuple[bytes, dict]] = {}
BODY_POOL = min(len(TEXTS), MAX_BODIES)
PICK_BODY = TextPicker(BODY_POOL, ZIPF)


def body_for(index: int) -> tuple[bytes, dict]:
    """Built on first use, then reused (process-wide cache of BODY_POOL bodies)."""
    body = _BODIES.get(index)
    if body is None:
        body = _BODIES[index] = build_body(TEXTS[index])
    return body


def failure_message(response) -> str:
    """Why a request failed: the server's answer, or what kept it from answering
    (connection refused or reset, timed out), which has no status and no body."""
    if not response.status_code:
        return f"no response: {response.error!r}"
    return f"HTTP {response.status_code}: {(response.text or '')[:200]}"


class FastTritonUser(FastHttpUser):
    """Prebuilt request bodies over Locust's FastHttpUser (geventhttpclient)."""

    wait_time = _wait_time()
    network_timeout = TIMEOUT
    connection_timeout = TIMEOUT

    def on_start(self) -> None:
        self.path = f"/v2/models/{MODEL}/infer"

    @task
    def infer(self) -> None:
        body, headers = body_for(PICK_BODY())
        with self.client.post(
            self.path, data=body, headers=headers, name=REQUEST_NAME, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(failure_message(response))
            elif PROBABILITIES.encode() not in (response.content or b""):
                response.failure(f"no {PROBABILITIES} output in the response")


class ReferenceServiceUser(FastHttpUser):
    """`{"text": ...}` JSON to the PyTorch reference service (loadtest.compare)."""

    wait_time = _wait_time()
    network_timeout = TIMEOUT * 6
    connection_timeout = TIMEOUT

    @task
    def predict(self) -> None:
        payload = json.dumps({"text": TEXTS[PICK()]})
        with self.client.post(
            "/predict",
            data=payload,
            headers={"Content-Type": "application/json"},
            name=REQUEST_NAME,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(failure_message(response))
            elif "label" not in (response.text or ""):
                response.failure("no label in the response")
