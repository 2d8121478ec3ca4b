"""The `<name>_tokenizer` Triton model (Python backend): TEXT → input_ids, attention_mask.

It runs training's own tokenization: export copies `training/encoding.py` into the
model's version directory as `berth_encoding.py`, next to this file, and this module
loads it from there (outside a published version directory, e.g. in unit tests, it falls
back to `training.encoding`). Settings come from the model config's `parameters`:
`tokenizer_file` (in the version directory), `max_length`, `truncation`, `head_tokens`
and `bucket`.

Padding: all the texts of one `execute()` call (one dynamic batch of requests) are
padded to one common length, the longest rounded up to a multiple of `bucket` and capped
at `max_length`. Every response of a batch then has the same shape, and the few distinct
bucketed lengths let the classifier's dynamic batcher merge requests of different
lengths.
"""

from __future__ import annotations

import importlib.util
import json
import locale
import sys
from pathlib import Path

import numpy as np

try:  # only inside the Triton Python backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # unit tests inject a stand-in
    pb_utils = None

ENCODING_MODULE = "berth_encoding"


def load_encoding(directory: Path):
    """`berth_encoding.py` from `directory` (the version directory), else training's."""
    path = Path(directory) / f"{ENCODING_MODULE}.py"
    if path.is_file():
        spec = importlib.util.spec_from_file_location(ENCODING_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[ENCODING_MODULE] = module
        spec.loader.exec_module(module)
        return module
    from training import encoding

    return encoding


def utf8_locale() -> None:
    """The stub's embedded interpreter starts with the C locale (ASCII), so `open()`
    without an encoding fails on UTF-8 files such as tokenizer.json. Switch LC_CTYPE."""
    for name in ("C.UTF-8", "C.utf8", "en_US.UTF-8"):
        try:
            locale.setlocale(locale.LC_CTYPE, name)
            return
        except locale.Error:
            continue


def parameter(config: dict, key: str, default: str) -> str:
    value = (config.get("parameters") or {}).get(key)
    if isinstance(value, dict):
        value = value.get("string_value")
    return default if value in (None, "") else str(value)


def decode_texts(array: np.ndarray) -> list[str]:
    """A TYPE_STRING tensor [batch, 1] (bytes objects) → Python strings."""
    return [
        item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
        for item in array.reshape(-1)
    ]


class Tokenization:
    """The tokenizer model's work, without Triton: texts per request → padded arrays."""

    def __init__(
        self,
        directory: Path,
        tokenizer_file: str = "tokenizer.json",
        max_length: int = 128,
        truncation: str = "head",
        head_tokens: int = 0,
        bucket: int = 16,
    ) -> None:
        self.encoding = load_encoding(directory)
        path = str(Path(directory) / tokenizer_file)
        self.tokenizer = self.encoding.load_tokenizer(path)
        self.pad_id = self.encoding.pad_token_id(path, self.tokenizer)
        self.max_length = max_length
        self.truncation = truncation
        self.head_tokens = head_tokens
        self.bucket = bucket

    @classmethod
    def from_config(cls, directory: Path, config: dict) -> Tokenization:
        return cls(
            directory,
            tokenizer_file=parameter(config, "tokenizer_file", "tokenizer.json"),
            max_length=int(parameter(config, "max_length", "128")),
            truncation=parameter(config, "truncation", "head"),
            head_tokens=int(parameter(config, "head_tokens", "0")),
            bucket=int(parameter(config, "bucket", "16")),
        )

    def __call__(self, batches: list[list[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per request: (input_ids, attention_mask), int64 [rows, common bucketed length]."""
        texts = [text for batch in batches for text in batch]
        ids = self.encoding.encode(
            self.tokenizer, texts, self.max_length, self.truncation, self.head_tokens
        )
        longest = max((len(row) for row in ids), default=1)
        width = self.encoding.bucket_length(longest, self.bucket, self.max_length)
        input_ids, mask = self.encoding.pad(ids, self.pad_id, width)
        out, start = [], 0
        for batch in batches:
            stop = start + len(batch)
            out.append((input_ids[start:stop], mask[start:stop]))
            start = stop
        return out


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        utf8_locale()
        config = json.loads(args["model_config"])
        directory = Path(args["model_repository"]) / str(args["model_version"])
        self.tokenization = Tokenization.from_config(directory, config)

    def execute(self, requests):
        batches = [
            decode_texts(pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy())
            for request in requests
        ]
        responses = []
        for input_ids, mask in self.tokenization(batches):
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("input_ids", input_ids),
                        pb_utils.Tensor("attention_mask", mask),
                    ]
                )
            )
        return responses

    def finalize(self) -> None:
        self.tokenization = None
