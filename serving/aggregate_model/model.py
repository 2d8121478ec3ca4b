"""The `<name>_aggregate` Triton model (Python backend): window logits → text logits.

The last step of a window-mode ensemble (tokenizer → classifier → this model). The
tokenizer cuts each text into windows and sends them to the classifier as rows, so the
classifier's dynamic batcher merges windows of different requests; this model turns a
request's window rows back into one row per text:

    logits   FP32  [windows, num_labels]  the classifier's logits per window
    windows  INT64 [windows, 2]           per window: its text (0-based, in the request)
                                          and its weight (tokens it adds to the text)
    →
    LOGITS, PROBABILITIES  FP32 [texts, num_labels]

It runs training's own aggregation: export copies `training/encoding.py` into the
version directory as `berth_encoding.py` (outside a published version, e.g. in unit
tests, it falls back to `training.encoding`), with `berth_contracts.py` (the names and
helpers the served models share). Config parameters: `aggregation` (mean,
max, weighted, mean_prob) and `problem_type` (softmax or sigmoid probabilities).
Arithmetic only: a failed request fails alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

try:  # only inside the Triton Python backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # unit tests inject a stand-in
    pb_utils = None

try:  # a published version: export copies it next to this file (on the stub's sys.path)
    import berth_contracts as contracts
except ImportError:  # imported from the source tree (unit tests)
    from serving import berth_contracts as contracts


class Aggregation:
    """The model's work without Triton: (window logits, windows) → (logits, probabilities)."""

    def __init__(self, directory: Path, method: str = "mean", multi_label: bool = False) -> None:
        self.encoding = contracts.load_encoding(directory)
        if method not in self.encoding.AGGREGATIONS:
            raise ValueError(f"aggregation {method!r}: one of {self.encoding.AGGREGATIONS}")
        self.method = method
        self.multi_label = multi_label

    @classmethod
    def from_config(cls, directory: Path, config: dict) -> Aggregation:
        return cls(
            directory,
            method=contracts.parameter(config, "aggregation", "mean"),
            multi_label=contracts.parameter(config, "problem_type", "") == contracts.MULTI_LABEL,
        )

    def __call__(self, logits: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.encoding.aggregate_request(logits, windows, self.method, self.multi_label)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        directory = Path(args["model_repository"]) / str(args["model_version"])
        self.aggregation = Aggregation.from_config(directory, config)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                logits, probs = self.aggregation(
                    pb_utils.get_input_tensor_by_name(request, contracts.ONNX_LOGITS).as_numpy(),
                    pb_utils.get_input_tensor_by_name(request, contracts.WINDOWS).as_numpy(),
                )
            except Exception as exc:  # a malformed request fails alone
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(f"aggregate: {exc}")
                    )
                )
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(contracts.LOGITS, logits),
                        pb_utils.Tensor(contracts.PROBABILITIES, probs),
                    ]
                )
            )
        return responses

    def finalize(self) -> None:
        self.aggregation = None
