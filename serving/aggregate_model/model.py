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

It runs training's own aggregation, `berth_core.encoding` (export copies the
`berth_core` package next to this file). Config parameters: `aggregation` (mean,
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

# berth's runtime contract: installed in the source tree; in a published version, the
# copy export puts next to this file (the stub has the version directory on sys.path).
from berth_core import encoding
from berth_core import names as contracts


class Aggregation:
    """The model's work without Triton: (window logits, windows) → (logits, probabilities)."""

    def __init__(self, directory: Path, method: str = "mean", multi_label: bool = False) -> None:
        if method not in encoding.AGGREGATIONS:
            raise ValueError(f"aggregation {method!r}: one of {encoding.AGGREGATIONS}")
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
        return encoding.aggregate_request(logits, windows, self.method, self.multi_label)


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
