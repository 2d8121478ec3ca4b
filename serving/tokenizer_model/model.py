"""The `<name>_tokenizer` Triton model (Python backend): TEXT → input_ids, attention_mask.

It runs training's own tokenization, `berth_core.encoding` (export copies the
`berth_core` package next to this file in the model's version directory). Settings
come from the model config's `parameters`:
`tokenizer_file` (in the version directory), `max_length`, `truncation`, `head_tokens`,
`bucket`, and for long texts `window_stride` and `max_windows`.

Window mode (`max_windows` > 1): a row is a window, not a text. A text longer than
`max_length` tokens becomes its windows, exactly as training cuts them; a third output,
`windows` (INT64 [rows, 2]: the row's text within its request, its weight), lets the
next step (berth's onnxruntime backend on CPU, `<name>_aggregate` on GPU) turn each
request's window logits back into one row per text. A request of n texts may thus send
up to n × `max_windows` rows to the classifier.

Padding (config parameter `padding`):

- `per_request` (configs/pip.pbtxt): each request is padded only to its own longest
  text, rounded up to a multiple of `bucket` and capped at `max_length`. The classifier's
  pip config marks its inputs `allow_ragged_batch`, so its dynamic batcher merges
  requests of any length, and berth's Python onnxruntime runner sorts them by
  length and runs sub-batches padded to their own longest (almost no padding).
- `batch` (config.pbtxt and configs/gpu.pbtxt, where the native onnxruntime backend
  cannot take ragged inputs): all the texts of one `execute()` call (one dynamic batch
  of requests) are padded to one common length, the longest rounded up to a multiple of `bucket` and
  capped at `max_length`. Every response of a batch then has the same shape, and the few
  distinct bucketed lengths let the classifier's dynamic batcher merge requests of
  different lengths.

Input validation (RELIABILITY.md): every request is checked on its own BEFORE any
tokenization. A text longer than `max_text_bytes` (config parameter, default 1 MiB) or not
valid UTF-8 fails that request alone with an INVALID_ARG error (HTTP 400 / gRPC
INVALID_ARGUMENT) that names the row, the limit and the fix; the other requests of the
same dynamic batch are answered normally. Empty and whitespace-only texts are valid: they
encode to `[CLS] [SEP]` and are classified like any other text.

Admission (opt-in, off by default): with `admission_rate` > 0 (requests a second, shared
by the instances; `admission_burst`, default a tenth of a second's worth) a token bucket
(`berth_core.admission`) refuses the requests beyond that rate at once, UNAVAILABLE
(HTTP 503), before reading or tokenizing them: under overload the excess costs the
server a Python call instead of the tokenizer's and the queues' work.

Text sample (opt-in, off by default): with `BERTH_SAMPLE_TEXTS` set in the server's
environment (`python -m serving --sample-texts`, `docker run -e`), each instance appends
a random share of the valid texts it receives to that JSON Lines file, for `python -m
training distill --unlabelled-file` (`berth_core.traffic_sample`: texts only, capped,
each once; a writing error is logged and never fails a request).
"""

from __future__ import annotations

import json
from itertools import accumulate, pairwise
from pathlib import Path

import numpy as np

try:  # only inside the Triton Python backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # unit tests inject a stand-in
    pb_utils = None

# berth's runtime contract: installed in the source tree; in a published version, the
# copy export puts next to this file (the stub has the version directory on sys.path).
from berth_core import admission, encoding, traffic_sample
from berth_core import names as contracts
from berth_core.errors import InputError

PADDING_MODES = ("per_request", "batch")
# Output tensors, in the order `Tokenization` returns them (`windows` in window mode).
OUTPUTS = (contracts.INPUT_IDS, contracts.ATTENTION_MASK, contracts.WINDOWS)
# Texts longer than this (UTF-8 bytes) are refused before tokenization; the tokenizer
# config parameter `max_text_bytes` overrides it (export: --max-text-bytes).
DEFAULT_MAX_TEXT_BYTES = 1 << 20


class InvalidTextError(InputError):
    """A request's TEXT cannot be classified; the message says what to fix."""


def checked_texts(array: np.ndarray, max_text_bytes: int) -> list[str]:
    """A request's TEXT tensor → strings, refusing oversized or non-UTF-8 rows.

    The size check looks only at `len(bytes)`, so a 10 MB text is refused in
    microseconds, before it is decoded or tokenized."""
    texts = []
    for row, item in enumerate(array.reshape(-1)):
        if isinstance(item, str):
            item = item.encode("utf-8", errors="surrogateescape")
        if not isinstance(item, bytes | bytearray):
            raise InvalidTextError(
                f"TEXT[{row}] is {type(item).__name__}, not bytes: send UTF-8 text as "
                "datatype BYTES (TYPE_STRING)"
            )
        if len(item) > max_text_bytes:
            raise InvalidTextError(
                f"TEXT[{row}] is {len(item):,} bytes, over the limit of {max_text_bytes:,} "
                "bytes per text (tokenizer parameter max_text_bytes; export "
                "--max-text-bytes): shorten or split the text"
            )
        try:
            texts.append(bytes(item).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidTextError(
                f"TEXT[{row}] is not valid UTF-8 (byte 0x{item[exc.start]:02x} at offset "
                f"{exc.start}: {exc.reason}): encode the text as UTF-8"
            ) from None
    return texts


class Tokenization:
    """The tokenizer model's work, without Triton: texts per request → padded arrays."""

    def __init__(
        self,
        directory: Path,
        tokenizer_file: str = contracts.TOKENIZER_FILE,
        max_length: int = 128,
        truncation: str = "head",
        head_tokens: int = 0,
        bucket: int = 16,
        padding: str = "batch",
        window_stride: int = 0,
        max_windows: int = 1,
    ) -> None:
        if padding not in PADDING_MODES:
            raise ValueError(f"padding {padding!r}: one of {PADDING_MODES}")
        path = str(Path(directory) / tokenizer_file)
        self.tokenizer = encoding.load_tokenizer(path)
        self.pad_id = encoding.pad_token_id(path, self.tokenizer)
        self.max_length = max_length
        self.truncation = truncation
        self.head_tokens = head_tokens
        self.bucket = bucket
        self.padding = padding
        self.window_stride = window_stride
        self.max_windows = max_windows

    @property
    def windowed(self) -> bool:
        return self.max_windows > 1

    @classmethod
    def from_config(cls, directory: Path, config: dict) -> Tokenization:
        return cls(
            directory,
            tokenizer_file=contracts.parameter(config, "tokenizer_file", contracts.TOKENIZER_FILE),
            max_length=contracts.number_parameter(config, "max_length", "128"),
            truncation=contracts.parameter(config, "truncation", "head"),
            head_tokens=contracts.number_parameter(config, "head_tokens", "0"),
            bucket=contracts.number_parameter(config, "bucket", "16"),
            padding=contracts.parameter(config, "padding", "batch"),
            window_stride=contracts.number_parameter(config, "window_stride", "0"),
            max_windows=contracts.number_parameter(config, "max_windows", "1"),
        )

    def __call__(self, batches: list[list[str]]) -> list[tuple[np.ndarray, ...]]:
        """Per request: (input_ids, attention_mask), int64 [rows, bucketed length]: the
        batch's common length (`padding="batch"`) or the request's own (`per_request`).
        Without windows a row is a text; with windows a row is a window, and a third
        array, `windows` int64 [rows, 2], gives each row's text (within its request) and
        weight, for the aggregation step."""
        texts = [text for batch in batches for text in batch]
        bounds = list(accumulate((len(batch) for batch in batches), initial=0))
        if not self.windowed:
            ids = encoding.encode(
                self.tokenizer, texts, self.max_length, self.truncation, self.head_tokens
            )
            return self._pad(ids, bounds)
        windows = encoding.encode_windows(
            self.tokenizer, texts, self.max_length, self.window_stride, self.max_windows
        )
        one_each = len(windows) == len(texts)
        rows = bounds if one_each else np.searchsorted(windows.text, bounds).tolist()
        which = np.stack((windows.text, windows.weight), axis=1)
        out = []
        for i, arrays in enumerate(self._pad(windows.ids, rows)):
            local = which[rows[i] : rows[i + 1]]
            local[:, 0] -= bounds[i]  # the text's index within its request
            out.append((*arrays, local))
        return out

    def _pad(self, ids: list[list[int]], rows: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Pad `ids` (rows `rows[i]:rows[i + 1]` belong to request i) per request or to
        one length for the whole batch."""
        if self.padding == "per_request":
            return self._per_request(ids, rows)
        longest = max((len(row) for row in ids), default=1)
        width = encoding.bucket_length(longest, self.bucket, self.max_length)
        input_ids, mask = encoding.pad(ids, self.pad_id, width)
        return [(input_ids[start:stop], mask[start:stop]) for start, stop in pairwise(rows)]

    def _per_request(self, ids, rows):
        out = []
        bucket, max_length, pad_id = self.bucket, self.max_length, self.pad_id
        for start, stop in pairwise(rows):
            request = ids[start:stop]
            longest = max((len(row) for row in request), default=1)
            width = encoding.bucket_length(longest, bucket, max_length)
            if len(request) == 1 and len(request[0]) == width:  # the common case, no padding
                input_ids = np.array(request, dtype=np.int64)
                out.append((input_ids, np.ones_like(input_ids)))
            else:
                out.append(encoding.pad(request, pad_id, width))
        return out


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        directory = Path(args["model_repository"]) / str(args["model_version"])
        self.tokenization = Tokenization.from_config(directory, config)
        self.max_text_bytes = contracts.number_parameter(
            config, "max_text_bytes", str(DEFAULT_MAX_TEXT_BYTES)
        )
        self.sample = traffic_sample.from_environment()  # None: sampling is off
        self.admission = admission.from_parameters(
            contracts.number_parameter(config, "admission_rate", "0", float),
            contracts.number_parameter(config, "admission_burst", "0", float),
            sum(int(group.get("count", 1)) for group in config.get("instance_group") or [{}]),
        )  # None: every request is admitted

    def _error(self, message: str, code_name: str = "INVALID_ARG"):
        """A failed response for one request: INVALID_ARG (HTTP 400 / INVALID_ARGUMENT),
        or UNAVAILABLE (HTTP 503 / UNAVAILABLE) for a refusal to retry."""
        code = getattr(pb_utils.TritonError, code_name, None)
        error = (
            pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
        )
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    def _admitted_texts(self, request) -> tuple[list[str] | None, tuple[str, str] | None]:
        """The request's texts, or why it fails: refused by admission (UNAVAILABLE, before
        its tensor is even read) or invalid (INVALID_ARG)."""
        if self.admission is not None and not self.admission.admit():
            return None, (self.admission.refusal(), "UNAVAILABLE")
        tensor = pb_utils.get_input_tensor_by_name(request, contracts.TEXT)
        try:
            if tensor is None:
                raise InvalidTextError("input TEXT is missing")
            return checked_texts(tensor.as_numpy(), self.max_text_bytes), None
        except InvalidTextError as exc:
            return None, (str(exc), "INVALID_ARG")

    def execute(self, requests):
        # Each request admitted and validated on its own: one refused or bad fails alone.
        checked = [self._admitted_texts(request) for request in requests]
        valid = [batch for batch, _ in checked if batch is not None]
        good = iter(self.tokenization(valid) if valid else [])
        responses = []
        for batch, error in checked:
            if batch is None:
                responses.append(self._error(*error))
                continue
            arrays = next(good)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(name, array)
                        for name, array in zip(OUTPUTS, arrays, strict=False)
                    ]
                )
            )
        if self.sample is not None:
            self.sample.offer(text for batch in valid for text in batch)
        return responses

    def finalize(self) -> None:
        self.tokenization = None
