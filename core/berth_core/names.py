"""The names the parts of berth agree on, and the helpers the served models share.

Export writes these names into the Triton repository (`export/triton_config.py`), the
Python-backend models read them (`serving/*/model.py`), the load test and the serving
helpers rebuild them. Model names for an ensemble `<name>`:

    <name>                    the ensemble (the public API: TEXT → LOGITS, PROBABILITIES)
    <name>_tokenizer          Python backend: TEXT → input_ids, attention_mask [, windows]
    <name>_onnx_<precision>   the classifier, backend "onnxruntime" (fp32, fp16, int8)
    <name>_aggregate          window mode, default and GPU configs: window logits → one row per text

berth-client reads the public tensor names from here too.
"""

from __future__ import annotations

import re

# The ensemble's tensors (the public API).
TEXT = "TEXT"
LOGITS = "LOGITS"
PROBABILITIES = "PROBABILITIES"
# Between the members: the tokenizer's outputs, the ONNX graph's inputs and outputs.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
ONNX_LOGITS = "logits"
ONNX_PROBABILITIES = "probabilities"
# berth.json `problem_type`, also the ensemble's config parameter of that name.
SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL)
# Window mode: INT64 [rows, 2], per row its text within the request and its weight.
WINDOWS = "windows"

# Files of the repository.
CONFIG_FILE = "config.pbtxt"
# config.pbtxt: what the stock NVIDIA container serves as-is (native onnxruntime backend,
# padded batches or, exported with --container-ragged, ragged ones on the flat graph,
# KIND_CPU). configs/gpu.pbtxt: --model-config-name=gpu in the container.
# configs/pip.pbtxt: what `python -m serving` selects on the pip tritonserver, where
# berth's Python onnxruntime runner adds what the native backend lacks (ragged batches,
# windows aggregated in the classifier step).
GPU_CONFIG_NAME = "gpu"
GPU_CONFIG_FILE = f"configs/{GPU_CONFIG_NAME}.pbtxt"
PIP_CONFIG_NAME = "pip"
PIP_CONFIG_FILE = f"configs/{PIP_CONFIG_NAME}.pbtxt"
# Set to "1" in the server's environment (`python -m serving --container-configs`): the
# Python onnxruntime runner then refuses what the native backend refuses.
STRICT_RUNNER_ENV = "BERTH_RUNNER_STRICT"
MODEL_FILE = "model.onnx"
# The same classifier behind a ragged front end (export --container-ragged): flat
# token ids and mask ([-1]: the requests' rows, concatenated) plus ITEM_SHAPE (INT32
# [rows, 1]: each row's length, Triton's BATCH_ITEM_SHAPE batch input); the graph
# re-pads them per batch. The only ragged form the native onnxruntime backend takes.
FLAT_MODEL_FILE = "model_flat.onnx"
ITEM_SHAPE = "item_shape"
TOKENIZER_FILE = "tokenizer.json"
# Next to a classifier's graph in its version directory: the session settings export
# measured for that graph on the exporting machine ({"disabled_optimizers": [...]}).
# Machine-dependent, so never in a (committed) config.pbtxt.
SESSION_FILE = "session.json"
# An opt-in sample of the texts the tokenizer receives (berth_core.traffic_sample), for
# the next student's `distill --unlabelled-file`: set in the server's environment (so in
# its stub processes) by `python -m serving --sample-texts`, or by `docker run -e`.
SAMPLE_TEXTS_ENV = "BERTH_SAMPLE_TEXTS"
SAMPLE_RATE_ENV = "BERTH_SAMPLE_RATE"
SAMPLE_MAX_TEXTS_ENV = "BERTH_SAMPLE_MAX_TEXTS"
SAMPLE_MAX_BYTES_ENV = "BERTH_SAMPLE_MAX_BYTES"


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


def number_parameter(config: dict, key: str, default: str, kind: type = int) -> int | float:
    """A numeric parameter (`kind` int or float): a hand-edited config whose value does
    not parse fails the model's load with the parameter's name, not Python's own words."""
    value = parameter(config, key, default)
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"model config parameter {key!r} must be {what}, got {value!r}") from None
