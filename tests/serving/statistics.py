"""Triton's per-model statistics as the serving tests read them."""

from __future__ import annotations

import time

import tritonclient.http as httpclient


def settled_counts(server, model: str, at_least: int = 0) -> tuple[int, int]:
    """(inferences, executions) once `at_least` inferences are counted: a member reports
    its statistics after its answer has gone on, so the last batch can lag a moment."""
    client = httpclient.InferenceServerClient(server.http_url)
    deadline = time.monotonic() + 10
    try:
        while True:
            s = client.get_inference_statistics(model)["model_stats"][0]
            if int(s["inference_count"]) >= at_least or time.monotonic() > deadline:
                return int(s["inference_count"]), int(s["execution_count"])
            time.sleep(0.05)
    finally:
        client.close()
