"""The served ensembles' TEXT input as the tests send it through tritonclient directly
(berth-client builds its own): one place for the tensor's name, shape and datatype."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def text_batch(texts: Sequence[str | bytes]) -> np.ndarray:
    """One text a row, shape [n, 1], UTF-8 bytes: the ensembles' batched TEXT."""
    rows = [[t.encode() if isinstance(t, str) else t] for t in texts]
    return np.array(rows, dtype=np.object_).reshape(len(rows), 1)


def text_input(tc, data: Sequence[str | bytes] | np.ndarray, datatype="BYTES", name="TEXT"):
    """An `InferInput` of `tc` (tritonclient.http, .grpc or an aio twin) holding `data`:
    texts (see `text_batch`), or an array sent as it is (bad-input tests)."""
    array = data if isinstance(data, np.ndarray) else text_batch(data)
    inp = tc.InferInput(name, list(array.shape), datatype)
    inp.set_data_from_numpy(array)
    return inp
