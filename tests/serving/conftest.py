"""Fixtures of the serving tests (the session checkpoints come from tests/fixtures)."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper


@pytest.fixture
def tiny_onnx(tmp_path):
    """logits = float(input_ids * attention_mask) summed; probabilities = softmax-ish."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 1])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["b", 1])
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["m"]),
        helper.make_node("Cast", ["m"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f", "axes"], ["logits"], keepdims=1),
        helper.make_node("Sigmoid", ["logits"], ["probabilities"]),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(nodes, "g", [ids, mask], [logits, probs], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    onnx.save(model, version / "model.onnx")
    return tmp_path / "m"
