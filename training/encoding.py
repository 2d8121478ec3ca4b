"""Text → token ids, identical in training, the reference predictor and the Triton
tokenizer model.

It depends on `tokenizers` and `numpy` only, so the Triton tokenizer model ships a copy
of this file next to its `model.py` (export copies it) and runs exactly this code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer


def load_tokenizer(path: str) -> Tokenizer:
    """Load `tokenizer.json` with padding and truncation switched off.

    Shipped tokenizers often pad every text to a fixed length (all-MiniLM-L6-v2 pads to
    128); padding and truncation are done here instead, so the attention mask always
    matches the real tokens.
    """
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
        special = enc.special_tokens_mask
        lead = 0
        while lead < len(ids) and special[lead]:
            lead += 1
        trail = 0
        while trail < len(ids) - lead and special[len(ids) - 1 - trail]:
            trail += 1
        content = ids[lead : len(ids) - trail]
        budget = max_length - lead - trail
        out.append(
            ids[:lead]
            + truncate_ids(content, budget, truncation, head_tokens)
            + ids[len(ids) - trail :]
        )
    return out


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
