"""Fixtures of the serving tests (the session checkpoints come from tests/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tests.serving import fake_pb_utils


@pytest.fixture
def triton_model(monkeypatch):
    """`triton_model(module, version_dir, config=None, **parameters)`: `module`'s Triton
    Python model initialised in-process as Triton does, for the model version in
    `version_dir`, with pb_utils faked. `config` is the model config; `parameters`, if
    any, its string parameters."""

    def initialize(module, version_dir: Path, config: dict | None = None, **parameters: str):
        monkeypatch.setattr(module, "pb_utils", fake_pb_utils)
        config = dict(config or {})
        if parameters:
            config["parameters"] = {k: {"string_value": v} for k, v in parameters.items()}
        model = module.TritonPythonModel()
        model.initialize(
            {
                "model_config": json.dumps(config),
                "model_repository": str(version_dir.parent),
                "model_version": version_dir.name,
            }
        )
        return model

    return initialize


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
