"""A stand-in model repository for client/load tests: Python-backend models that speak
the served berth API (TEXT in; LOGITS, PROBABILITIES out; id2label / problem_type /
thresholds in the config parameters) without ONNX or a trained checkpoint.

Deterministic: a text containing "good" scores label 0 high; otherwise label
len(text) % num_labels. Used where the real ensemble (`python -m export`) is not
needed: error paths, batching, multi-label decoding, load-test plumbing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MODEL_PY = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.multi = config["parameters"]["problem_type"]["string_value"].startswith("multi")
        self.n = int(config["output"][0]["dims"][0])

    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            logits = np.stack([scores(t.decode("utf-8"), self.n) for t in texts])
            if self.multi:
                probs = 1.0 / (1.0 + np.exp(-logits))
            else:
                e = np.exp(logits - logits.max(axis=1, keepdims=True))
                probs = e / e.sum(axis=1, keepdims=True)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("LOGITS", logits.astype(np.float32)),
                pb_utils.Tensor("PROBABILITIES", probs.astype(np.float32)),
            ]))
        return responses


def scores(text, n):
    v = np.zeros(n, dtype=np.float32)
    v[len(text) % n] = 3.0
    if "good" in text:
        v[0] = 5.0
    return v
"""


def stub_scores(text: str, n: int) -> np.ndarray:
    v = np.zeros(n, dtype=np.float32)
    v[len(text) % n] = 3.0
    if "good" in text:
        v[0] = 5.0
    return v


def write_stub_model(
    repository: Path,
    name: str,
    labels: list[str] | dict,
    problem_type: str = "single_label_classification",
    thresholds: list[float] | None = None,
    max_batch_size: int = 4,
) -> Path:
    n = len(labels)
    model_dir = repository / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "1" / "model.py").write_text(MODEL_PY)
    params = {"id2label": json.dumps(labels), "problem_type": problem_type}
    if thresholds is not None:
        params["thresholds"] = json.dumps(thresholds)
    parameters = "\n".join(
        f"parameters {{ key: {json.dumps(k)} value: {{ string_value: {json.dumps(v)} }} }}"
        for k, v in params.items()
    )
    (model_dir / "config.pbtxt").write_text(
        f"""name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [ {{ name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [
  {{ name: "LOGITS" data_type: TYPE_FP32 dims: [ {n} ] }},
  {{ name: "PROBABILITIES" data_type: TYPE_FP32 dims: [ {n} ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 500 }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
{parameters}
"""
    )
    return model_dir


def write_stub_repository(repository: Path) -> Path:
    """`sentiment` (single-label, max batch 4) and `tags` (multi-label, thresholds)."""
    write_stub_model(repository, "sentiment", ["negative", "positive"], max_batch_size=4)
    write_stub_model(
        repository,
        "tags",
        {"0": "a", "1": "b", "2": "c"},
        "multi_label_classification",
        [0.5, 0.9, 0.5],
        max_batch_size=4,
    )
    return repository
