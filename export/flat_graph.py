"""A ragged front end for the classifier graph: the form of ragged batching the native
onnxruntime backend takes.

Triton's onnxruntime backend accepts `allow_ragged_batch` only on a flat `[-1]` graph
input: it concatenates the requests' rows of a ragged input into one dimension and
describes them with a `batch_input` (onnxruntime_backend `src/onnxruntime.cc`
ValidateInputs; backend `src/backend_input_collector.cc` SetBatchItemShape). The
classifier graph takes `[batch, sequence]`. `add_flat_front` puts a few ONNX ops in
front of it that re-pad the flat rows to `[rows, longest row]`, so the dynamic batcher
may merge requests of any length and each batch pays only for its own longest text:

    input_ids, attention_mask   INT64 [Σ row lengths]   the rows, concatenated
    item_shape                  INT32 [rows, 1]         each row's length
                                  (BATCH_ITEM_SHAPE of input_ids)

The classifier behind it is the published variant's graph, unchanged: its outputs for a
batch are those of the padded graph on the same rows padded to their longest (a test
holds the two to equality).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from berth_core.names import ATTENTION_MASK, INPUT_IDS, ITEM_SHAPE

PREFIX = "flat_front/"


def _constant(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, PREFIX + name)


def front_nodes(pad_id: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Flat rows + their lengths → `PREFIX + input_ids`, `PREFIX + attention_mask`
    ([rows, longest], right-padded: pad_id and 0)."""
    p = PREFIX
    constants = [
        _constant("zero", np.array(0, dtype=np.int64)),
        _constant("one", np.array(1, dtype=np.int64)),
        _constant("pad", np.array(pad_id, dtype=np.int64)),
        _constant("flat", np.array([-1], dtype=np.int64)),
        _constant("axis0", np.array([0], dtype=np.int64)),
        _constant("axis1", np.array([1], dtype=np.int64)),
    ]
    node = helper.make_node
    nodes = [
        node("Cast", [ITEM_SHAPE], [p + "shape"], to=TensorProto.INT64),
        node("Reshape", [p + "shape", p + "flat"], [p + "lengths"]),
        node("CumSum", [p + "lengths", p + "zero"], [p + "ends"]),
        node("Sub", [p + "ends", p + "lengths"], [p + "starts"]),
        node("ReduceMax", [p + "lengths"], [p + "width"], keepdims=0),
        node("Range", [p + "zero", p + "width", p + "one"], [p + "positions"]),
        node("Unsqueeze", [p + "positions", p + "axis0"], [p + "position_row"]),
        node("Unsqueeze", [p + "lengths", p + "axis1"], [p + "length_column"]),
        node("Unsqueeze", [p + "starts", p + "axis1"], [p + "start_column"]),
        node("Less", [p + "position_row", p + "length_column"], [p + "valid"]),
        node("Add", [p + "start_column", p + "position_row"], [p + "index"]),
        node("Where", [p + "valid", p + "index", p + "zero"], [p + "safe_index"]),
    ]
    for name, fill in ((INPUT_IDS, "pad"), (ATTENTION_MASK, "zero")):
        nodes += [
            node("Gather", [name, p + "safe_index"], [p + name + "_gathered"], axis=0),
            node("Where", [p + "valid", p + name + "_gathered", p + fill], [p + name]),
        ]
    return nodes, constants


def add_flat_front(src: Path, dst: Path, pad_id: int = 0) -> Path:
    """Write `src`'s classifier behind the ragged front end to `dst`."""
    model = onnx.load(str(src))
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    if set(inputs) != {INPUT_IDS, ATTENTION_MASK}:
        raise ValueError(f"{src}: expected graph inputs {INPUT_IDS}, {ATTENTION_MASK}")
    for n in graph.node:  # the classifier now reads the re-padded tensors
        n.input[:] = [PREFIX + name if name in inputs else name for name in n.input]
    nodes, constants = front_nodes(pad_id)
    original = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *original])
    graph.initializer.extend(constants)
    del graph.input[:]
    graph.input.extend(
        [
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["tokens"]),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["tokens"]),
            helper.make_tensor_value_info(ITEM_SHAPE, TensorProto.INT32, ["batch", 1]),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst
