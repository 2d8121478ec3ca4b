"""The names the parts of berth agree on, and the helpers the served models share.

Export writes these names into the Triton repository (`export/triton_config.py`), the
Python-backend models read them (`serving/*/model.py`), the load test and the serving
helpers rebuild them. Model names for an ensemble `<name>`:

    <name>                    the ensemble (the public API: TEXT → LOGITS, PROBABILITIES)
    <name>_tokenizer          Python backend: TEXT → input_ids, attention_mask [, windows]
    <name>_onnx_<precision>   the classifier, backend "onnxruntime" (fp32, fp16, int8)
    <name>_aggregate          window mode, GPU configs: window logits → one row per text

It depends on the standard library only: export copies it into the version directory
of each Python-backend model (and `serving.server` next to berth's Python-based
onnxruntime backend) as `berth_contracts.py`, where the Triton stub finds it on
`sys.path`; outside a published version the model.py files import `serving.berth_contracts`.
berth-client (installable alone) keeps its own copy of the public tensor names.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

# The ensemble's tensors (the public API).
TEXT = "TEXT"
LOGITS = "LOGITS"
PROBABILITIES = "PROBABILITIES"
# Between the members: the tokenizer's outputs, the ONNX graph's inputs and outputs.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
ONNX_LOGITS = "logits"
ONNX_PROBABILITIES = "probabilities"
# Window mode: INT64 [rows, 2], per row its text within the request and its weight.
WINDOWS = "windows"

# Files of the repository.
CONFIG_FILE = "config.pbtxt"
GPU_CONFIG_NAME = "gpu"
GPU_CONFIG_FILE = f"configs/{GPU_CONFIG_NAME}.pbtxt"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# Next to a classifier's graph in its version directory: the session settings export
# measured for that graph on the exporting machine ({"disabled_optimizers": [...]}).
# Machine-dependent, so never in a (committed) config.pbtxt.
SESSION_FILE = "session.json"
# training/encoding.py, as export copies it into a version directory.
ENCODING_MODULE = "berth_encoding"

# berth.json / config parameter `problem_type` of a multi-label model.
MULTI_LABEL = "multi_label_classification"


def tokenizer_model_name(name: str) -> str:
    return f"{name}_tokenizer"


def classifier_model_name(name: str, variant: str) -> str:
    return f"{name}_onnx_{variant}"


def aggregate_model_name(name: str) -> str:
    return f"{name}_aggregate"


def classifier_model_pattern(name: str) -> re.Pattern[str]:
    """Matches the names of `name`'s classifier models, whatever their precision."""
    return re.compile(re.escape(classifier_model_name(name, "")) + "[a-z0-9]+")


def parameter(config: dict, key: str, default: str | None = None) -> str | None:
    """A string parameter of a model config as the Python backend passes it (JSON:
    `{"parameters": {key: {"string_value": ...}}}`); `default` when absent or empty."""
    value = (config.get("parameters") or {}).get(key)
    if isinstance(value, dict):
        value = value.get("string_value")
    return default if value in (None, "") else str(value)


def load_encoding(directory: Path) -> ModuleType:
    """`berth_encoding.py` from `directory` (a published version directory), else
    training's own `training.encoding` (unit tests, unpublished layouts)."""
    path = Path(directory) / f"{ENCODING_MODULE}.py"
    if path.is_file():
        spec = importlib.util.spec_from_file_location(ENCODING_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[ENCODING_MODULE] = module
        spec.loader.exec_module(module)
        return module
    from training import encoding

    return encoding
