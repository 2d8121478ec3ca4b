"""Text → token ids and window logits → text logits, identical in training, the
reference predictor, export's gates and the served ensemble.

It depends on `numpy` (and `tokenizers` to load a tokenizer) only, so the Triton
tokenizer and aggregation models run exactly this code from the copy of `berth_core`
that export puts next to their `model.py`.

Long texts (`max_windows > 1`): a text longer than `max_length` tokens is cut into
windows of `max_length` tokens, special tokens in every window, each window starting
`stride` content tokens after the previous one and the last one ending at the text's
end. Past `max_windows`, the windows are spread evenly over the whole text (the first
and the last always kept). A text that fits is one window, encoded exactly as without
windows. Each window is scored; `aggregate` turns a text's window logits into its logits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from berth_core.rule import probabilities

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def load_tokenizer(path: str) -> Tokenizer:
    """Load `tokenizer.json` with padding and truncation switched off.

    Shipped tokenizers often pad every text to a fixed length (all-MiniLM-L6-v2 pads to
    128); padding and truncation are done here instead, so the attention mask always
    matches the real tokens.
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def truncate_ids(ids: list[int], budget: int, truncation: str, head_tokens: int) -> list[int]:
    """Cut content ids (no special tokens) to `budget` tokens."""
    if len(ids) <= budget:
        return ids
    if truncation == "head":
        return ids[:budget]
    head = min(head_tokens or budget // 4, budget)
    tail = budget - head
    return ids[:head] + (ids[len(ids) - tail :] if tail else [])


def split_special(ids: list[int], special: list[int]) -> tuple[list[int], list[int], list[int]]:
    """(leading special tokens, content, trailing special tokens) of an encoding."""
    lead = 0
    while lead < len(ids) and special[lead]:
        lead += 1
    trail = 0
    while trail < len(ids) - lead and special[len(ids) - 1 - trail]:
        trail += 1
    return ids[:lead], ids[lead : len(ids) - trail], ids[len(ids) - trail :]


def encode(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    max_length: int,
    truncation: str = "head",
    head_tokens: int = 0,
) -> list[list[int]]:
    """Token ids with special tokens, at most `max_length` each, unpadded.

    The tokenizer's own template adds the special tokens; truncation then cuts the
    content between the leading and trailing special tokens, so `head+tail` keeps
    `[CLS] head … tail [SEP]` for any single-sequence template.
    """
    out = []
    for enc in tokenizer.encode_batch(list(texts), add_special_tokens=True):
        ids = enc.ids
        if len(ids) <= max_length:
            out.append(ids)
            continue
        lead, content, trail = split_special(ids, enc.special_tokens_mask)
        budget = max_length - len(lead) - len(trail)
        out.append(lead + truncate_ids(content, budget, truncation, head_tokens) + trail)
    return out


# How a text's window logits become its logits: the mean of the logits; their max per
# label; their mean weighted by the tokens each window adds to the windows before it
# (overlapping text counted once); the mean of the probabilities (softmax or sigmoid).
AGGREGATIONS = ("mean", "max", "weighted", "mean_prob")


@dataclass
class Windows:
    """The windows of a list of texts, text after text (a text's windows in order)."""

    ids: list[list[int]]  # token ids with special tokens, unpadded
    text: np.ndarray  # int64 [windows]: the index of the text each window belongs to
    weight: np.ndarray  # int64 [windows]: its share of the text (tokens no earlier window covered)

    def __len__(self) -> int:
        return len(self.ids)

    def first(self) -> np.ndarray:
        """Row of each text's first window."""
        return np.flatnonzero(np.r_[True, self.text[1:] != self.text[:-1]])


def window_starts(length: int, budget: int, stride: int, max_windows: int) -> list[int]:
    """Start offsets (in content tokens) of the windows of a text of `length` content
    tokens, `budget` tokens a window: `stride` apart, the last one ending at the end;
    past `max_windows`, `max_windows` starts spread evenly from the first to the last."""
    if length <= budget or max_windows <= 1:
        return [0]
    last = length - budget
    stride = max(1, min(stride or budget, budget))
    starts = [*range(0, last, stride), last]
    if len(starts) > max_windows:
        gaps = max_windows - 1
        starts = [(2 * i * last + gaps) // (2 * gaps) for i in range(max_windows)]
    return starts


def encode_windows(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    max_length: int,
    stride: int = 0,
    max_windows: int = 1,
    truncation: str = "head",
    head_tokens: int = 0,
) -> Windows:
    """Every window of every text (see the module docstring). With `max_windows` 1 each
    text is one window, cut by `truncation` exactly as `encode` cuts it."""
    if max_windows <= 1:
        ids = encode(tokenizer, texts, max_length, truncation, head_tokens)
        return Windows(ids, np.arange(len(ids), dtype=np.int64), _lengths(ids))
    ids, text, weight = [], [], []
    for index, enc in enumerate(tokenizer.encode_batch(list(texts), add_special_tokens=True)):
        if len(enc.ids) <= max_length:
            ids.append(enc.ids)
            text.append(index)
            weight.append(len(enc.ids))
            continue
        lead, content, trail = split_special(enc.ids, enc.special_tokens_mask)
        budget = max_length - len(lead) - len(trail)
        previous = None
        for start in window_starts(len(content), budget, stride, max_windows):
            ids.append(lead + content[start : start + budget] + trail)
            text.append(index)
            weight.append(budget if previous is None else min(start - previous, budget))
            previous = start
    return Windows(ids, np.asarray(text, dtype=np.int64), np.asarray(weight, dtype=np.int64))


def _lengths(ids: list[list[int]]) -> np.ndarray:
    return np.asarray([len(row) for row in ids], dtype=np.int64)


def aggregate(
    logits: np.ndarray,
    text: np.ndarray,
    weight: np.ndarray | None = None,
    method: str = "mean",
    multi_label: bool = False,
) -> np.ndarray:
    """Window logits [windows, labels] → text logits [texts, labels], float32.

    `text` numbers each window's text (a text's windows adjacent, texts in order, as
    `encode_windows` lays them out); `weight` is `Windows.weight` (method `weighted`).
    A text of one window keeps its logits unchanged, whatever the method; `mean_prob`
    returns logits whose softmax (sigmoid) is the mean of the windows' probabilities.
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"aggregation {method!r}: one of {AGGREGATIONS}")
    logits = np.asarray(logits, dtype=np.float32)
    text = np.asarray(text).reshape(-1)
    starts = np.flatnonzero(np.r_[True, text[1:] != text[:-1]]) if len(text) else text
    if len(starts) == len(logits):
        return logits
    values = logits.astype(np.float64)
    counts = np.diff(np.r_[starts, len(values)])[:, None]
    if method == "max":
        out = np.maximum.reduceat(values, starts, axis=0)
    elif method == "weighted":
        w = np.asarray(weight, dtype=np.float64).reshape(-1, 1)
        out = np.add.reduceat(values * w, starts, axis=0) / np.add.reduceat(w, starts, axis=0)
    elif method == "mean_prob":
        out = _mean_probability(values, starts, counts, multi_label)
    else:
        out = np.add.reduceat(values, starts, axis=0) / counts
    return out.astype(np.float32)


def aggregate_request(
    logits: np.ndarray,
    windows: np.ndarray,
    method: str = "mean",
    multi_label: bool = False,
    row_probabilities: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The served aggregation of one request: window logits and the tokenizer's
    `windows` tensor ([rows, 2]: text within the request, weight) → (logits,
    probabilities), one row per text. When every text is one window the rows pass as
    they are, with `row_probabilities` (the graph's own) when given."""
    windows = np.asarray(windows).reshape(-1, 2)
    text = windows[:, 0]
    if len(text) != len(logits):
        raise ValueError(f"{len(logits)} rows of logits for {len(windows)} windows")
    if np.array_equal(text, np.arange(len(text))):
        if row_probabilities is not None:
            return logits, row_probabilities
    else:
        steps = np.diff(text)
        if text[0] != 0 or ((steps != 0) & (steps != 1)).any():
            raise ValueError("windows: text indices must start at 0 and rise by 0 or 1")
        logits = aggregate(logits, text, windows[:, 1], method, multi_label)
    logits = np.asarray(logits, dtype=np.float32)
    probs = probabilities(logits.astype(np.float64), multi_label).astype(np.float32)
    return logits, probs


def _mean_probability(
    values: np.ndarray, starts: np.ndarray, counts: np.ndarray, multi_label: bool
) -> np.ndarray:
    """Logits of the mean probabilities. Softmax: log(mean p) plus the mean of the
    windows' log-sum-exp, so that one window gives back its own logits exactly."""
    mean = np.add.reduceat(probabilities(values, multi_label), starts, axis=0) / counts
    mean = np.clip(mean, 1e-30, 1.0 - 1e-15)
    if multi_label:
        return np.log(mean) - np.log1p(-mean)
    top = values.max(axis=1, keepdims=True)
    lse = top + np.log(np.exp(values - top).sum(axis=1, keepdims=True))
    return np.log(mean) + np.add.reduceat(lse, starts, axis=0) / counts


def pad(
    batch: Sequence[Sequence[int]], pad_id: int, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to `length` (default: the longest row). Returns (input_ids, attention_mask)."""
    width = length or max((len(ids) for ids in batch), default=1)
    input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return input_ids, mask


def bucket_length(length: int, bucket: int, max_length: int) -> int:
    """Round `length` up to a multiple of `bucket`, capped at `max_length`."""
    if bucket <= 1:
        return length
    return min(max_length, -(-length // bucket) * bucket)


def load_tokenizer_and_pad(tokenizer_json_path: str) -> tuple[Tokenizer, int]:
    """`load_tokenizer` and the file's `pad_token_id`: what a model's batches need."""
    tokenizer = load_tokenizer(tokenizer_json_path)
    return tokenizer, pad_token_id(tokenizer_json_path, tokenizer)


def pad_token_id(tokenizer_json_path: str, tokenizer: Tokenizer) -> int:
    """The pad id from the tokenizer file's padding section, else `[PAD]`, else 0."""
    with open(tokenizer_json_path, encoding="utf-8") as f:
        padding = (json.load(f) or {}).get("padding") or {}
    if "pad_id" in padding:
        return int(padding["pad_id"])
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0
