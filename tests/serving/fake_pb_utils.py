"""A stand-in for `triton_python_backend_utils`, enough to run model.py files in-process."""

from __future__ import annotations

import numpy as np


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    INVALID_ARG = "INVALID_ARG"
    UNAVAILABLE = "UNAVAILABLE"

    def __init__(self, message: str, code: str | None = None) -> None:
        self.message, self.code = message, code


class InferenceResponse:
    def __init__(self, output_tensors, error=None) -> None:
        self.output_tensors = {t.name(): t.as_numpy() for t in output_tensors}
        self.error = error


class InferenceRequest:
    def __init__(self, **inputs: np.ndarray) -> None:
        self.inputs = {name: Tensor(name, array) for name, array in inputs.items()}


def get_input_tensor_by_name(request: InferenceRequest, name: str):
    return request.inputs.get(name)
