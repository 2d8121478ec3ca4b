"""The ragged front end (export/flat_graph.py): the classifier behind it answers flat,
concatenated rows exactly as the padded graph answers the same rows padded."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from berth_core.checkpoint import BerthConfig
from berth_core.names import ATTENTION_MASK, INPUT_IDS, ITEM_SHAPE
from export.flat_graph import add_flat_front
from export.onnx_export import export_fp32, to_int8


@pytest.fixture(scope="module")
def graphs(sentiment_checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flat")
    fp32 = export_fp32(
        sentiment_checkpoint, tmp / "fp32.onnx", BerthConfig.load(sentiment_checkpoint)
    )
    int8 = to_int8(fp32, tmp / "int8.onnx", fused=False)
    return {
        name: (session(path), session(add_flat_front(path, tmp / f"{name}.flat.onnx", pad_id=0)))
        for name, path in (("fp32", fp32), ("int8", int8))
    }


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def rows(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.concatenate([[101], rng.integers(1000, 5000, n - 2), [102]]) for n in lengths]


def padded_feed(batch: list[np.ndarray]) -> dict[str, np.ndarray]:
    width = max(len(r) for r in batch)
    ids = np.zeros((len(batch), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(batch):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return {INPUT_IDS: ids, ATTENTION_MASK: mask}


def flat_feed(batch: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What Triton hands the native backend: ragged inputs concatenated, BATCH_ITEM_SHAPE."""
    return {
        INPUT_IDS: np.concatenate(batch).astype(np.int64),
        ATTENTION_MASK: np.ones(sum(len(r) for r in batch), dtype=np.int64),
        ITEM_SHAPE: np.array([[len(r)] for r in batch], dtype=np.int32),
    }


@pytest.mark.parametrize("variant", ["fp32", "int8"])
@pytest.mark.parametrize("lengths", [[5], [3, 17, 9, 30, 4], [12, 12, 12]])
def test_flat_rows_are_answered_as_the_padded_batch(graphs, variant, lengths):
    padded, flat = graphs[variant]
    batch = rows(lengths)
    expected = padded.run(None, padded_feed(batch))
    got = flat.run(None, flat_feed(batch))
    for e, g in zip(expected, got, strict=True):
        assert g.shape == (len(lengths), 2)
        np.testing.assert_array_equal(g, e)


def test_padding_inside_a_row_stays_masked(graphs):
    """A request's windows are padded to its longest by the tokenizer: the mask it sends
    is kept, not replaced by all ones."""
    padded, flat = graphs["fp32"]
    batch = rows([9, 20])
    feed = padded_feed(batch)  # row 0 carries 11 masked pad positions, as a window would
    flat_in = {
        INPUT_IDS: feed[INPUT_IDS].reshape(-1),
        ATTENTION_MASK: feed[ATTENTION_MASK].reshape(-1),
        ITEM_SHAPE: np.array([[20], [20]], dtype=np.int32),
    }
    np.testing.assert_allclose(
        flat.run(None, flat_in)[0], padded.run(None, feed)[0], rtol=0, atol=1e-5
    )
    alone = padded.run(None, padded_feed(batch[:1]))[0]
    np.testing.assert_allclose(flat.run(None, flat_in)[0][:1], alone, rtol=0, atol=1e-5)


def test_the_flat_graph_declares_what_triton_feeds(graphs):
    _, flat = graphs["int8"]
    inputs = {i.name: (i.type, i.shape) for i in flat.get_inputs()}
    assert inputs[INPUT_IDS] == ("tensor(int64)", ["tokens"])
    assert inputs[ATTENTION_MASK] == ("tensor(int64)", ["tokens"])
    assert inputs[ITEM_SHAPE] == ("tensor(int32)", ["batch", 1])


def test_a_graph_with_other_inputs_is_refused(graphs, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    identity = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.INT64, [-1])],
            [helper.make_tensor_value_info("y", TensorProto.INT64, [-1])],
        )
    )
    onnx.save(identity, tmp_path / "other.onnx")
    with pytest.raises(ValueError, match="expected graph inputs input_ids, attention_mask"):
        add_flat_front(tmp_path / "other.onnx", tmp_path / "out.onnx")
