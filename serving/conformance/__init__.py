"""The load-time rules of Triton's native onnxruntime backend and of Triton core, as pure checks.

berth's published repository is served by the native onnxruntime backend in the NVIDIA
container (`nvcr.io/nvidia/tritonserver:24.10-py3`, Triton 2.51.0) and, on a CPU machine,
by berth's Python stand-in registered under the same backend name
(serving/onnx_runner/model.py). A configuration that only the stand-in accepts
would pass every CPU test and then fail to load in the container, so the stand-in must
refuse, when it serves a default (container) configuration, what the native refuses.
These functions say what that is. Each rule is transcribed from the public source of the
r24.10 branches, and every `Violation` names the file and function it comes from:

- triton-inference-server/onnxruntime_backend r24.10 17e5cb23a6fbeb37282eb7079dd0b580cd79530d
- triton-inference-server/core r24.10 bfec7c61dc0939433f64f14e89b1973073eac8ba
- triton-inference-server/backend r24.10 ac03a5d97403dec841ad46d0439e93db12c9268f
- triton-inference-server/common r24.10 578491fc3944f77d16a6a38e3d7691c485c47ba0
- triton-inference-server/server r24.10 e0f0734d61c789535ac58c22b79d67eabc5d7477 (build.py:
  how the container's onnxruntime backend is built: GPU, TensorRT and OpenVINO enabled)

The native stops at its first error; these checks list every violation, each message
phrased as the source phrases it. A model configuration is the JSON dict Triton hands a
Python backend in `args["model_config"]` (the shape of `GET /v2/models/<name>/config`:
`dims` lists of ints, `data_type` "TYPE_INT64", `kind` "KIND_CPU", `parameters`
{key: {"string_value": ...}}); keys Triton prints with their default value may be absent.

Standard library only at import (the Triton Python stub imports this); `onnx` is imported
by `GraphIO.from_path` when called.

A package of small modules, each importing its siblings relatively only, so that the
folder also works copied next to a Python-backend model.py and imported as a top-level
`conformance`: sources.py (revisions, source files), violation.py (`Violation`,
`refusal`), graph.py (`GraphIO`, `TensorInfo`, type tables), parsing.py (config readers,
`parse_int`/`parse_unsigned`/`parse_bool`), checked_model.py (the model under check),
core_io.py and core_rules.py (Triton core's per-model rules), onnxruntime_options.py and
onnxruntime_rules.py (the backend's rules, `autocomplete`, `check_onnxruntime_model`),
ensemble_rules.py (`check_ensemble`).
"""

from __future__ import annotations

from .core_io import BATCH_INPUT_KINDS
from .core_rules import (
    CORE_MODEL_RULES,
    ENSEMBLE,
    MIN_COMPUTE_CAPABILITY,
    ONNX_PLATFORM,
    SEQUENCE_CONTROLS,
    sequence_controls,
)
from .ensemble_rules import check_ensemble
from .graph import INVALID, SUPPORTED_DATA_TYPES, TENSOR, GraphIO, TensorInfo
from .onnxruntime_options import (
    CPU_ACCELERATORS,
    GPU_ACCELERATORS,
    GPU_PARAMETERS,
    MODEL_PARAMETERS,
    TENSORRT_BOOLS,
    TENSORRT_INTS,
    TENSORRT_STRINGS,
)
from .onnxruntime_rules import (
    DEFAULT_MAX_BATCH_SIZE,
    ONNXRUNTIME_RULES,
    autocomplete,
    check_model_file,
    check_onnxruntime_model,
    native_model_path,
)
from .parsing import parse_bool, parse_int, parse_unsigned
from .sources import (
    BACKEND_COMMON,
    CORE_ENSEMBLE,
    CORE_REPOSITORY,
    CORE_UTILS,
    ORT,
    ORT_UTILS,
    REVISIONS,
)
from .violation import Violation, refusal

__all__ = [
    "BACKEND_COMMON",
    "BATCH_INPUT_KINDS",
    "CORE_ENSEMBLE",
    "CORE_MODEL_RULES",
    "CORE_REPOSITORY",
    "CORE_UTILS",
    "CPU_ACCELERATORS",
    "DEFAULT_MAX_BATCH_SIZE",
    "ENSEMBLE",
    "GPU_ACCELERATORS",
    "GPU_PARAMETERS",
    "INVALID",
    "MIN_COMPUTE_CAPABILITY",
    "MODEL_PARAMETERS",
    "ONNXRUNTIME_RULES",
    "ONNX_PLATFORM",
    "ORT",
    "ORT_UTILS",
    "REVISIONS",
    "SEQUENCE_CONTROLS",
    "SUPPORTED_DATA_TYPES",
    "TENSOR",
    "TENSORRT_BOOLS",
    "TENSORRT_INTS",
    "TENSORRT_STRINGS",
    "GraphIO",
    "TensorInfo",
    "Violation",
    "autocomplete",
    "check_ensemble",
    "check_model_file",
    "check_onnxruntime_model",
    "native_model_path",
    "parse_bool",
    "parse_int",
    "parse_unsigned",
    "refusal",
    "sequence_controls",
]
