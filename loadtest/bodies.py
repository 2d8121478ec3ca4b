"""The HTTP request the fast load generators send: one text as a binary KServe-v2 body,
built by tritonclient itself so that it is exactly what berth's clients send.

Shared by the Locust `FastTritonUser` (loadtest/locustfile.py) and the open-loop
generator (loadtest/open_loop.py), so both load the server with the same request.
"""

from __future__ import annotations

import numpy as np
import tritonclient.http as httpclient

from berth_client.model import DEFAULT_INPUT as TEXT
from berth_client.model import PROBABILITIES

# Bodies built ahead of a run: texts beyond this many are not needed to vary the load.
BODY_POOL = 2048


def build_body(text: str) -> tuple[bytes, dict]:
    """A binary KServe-v2 request body (+ headers) for one text, as tritonclient builds it."""
    output = httpclient.InferRequestedOutput(PROBABILITIES, binary_data=True)
    infer_input = httpclient.InferInput(TEXT, [1, 1], "BYTES")
    infer_input.set_data_from_numpy(np.array([[text.encode("utf-8")]], dtype=np.object_))
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [infer_input], outputs=[output]
    )
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    return body, headers


def build_bodies(texts: list[str], limit: int = BODY_POOL) -> list[tuple[bytes, dict]]:
    """Bodies for the first `limit` texts, built before a run so that building them costs
    the generator nothing while it sends."""
    return [build_body(text) for text in texts[:limit]]
