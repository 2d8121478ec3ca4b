"""serving.conformance: each load-time rule of the native onnxruntime backend and Triton
core, fed a configuration the native refuses, and correct configurations (berth's
published ones among them) that it accepts.

Each test names the source file and function of its rule, read at the r24.10 branches
(Triton 2.51.0, container 24.10):
onnxruntime_backend 17e5cb23a6fbeb37282eb7079dd0b580cd79530d,
core bfec7c61dc0939433f64f14e89b1973073eac8ba,
backend ac03a5d97403dec841ad46d0439e93db12c9268f,
common 578491fc3944f77d16a6a38e3d7691c485c47ba0,
server e0f0734d61c789535ac58c22b79d67eabc5d7477.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from export.flat_graph import add_flat_front
from export.triton_config import ClassifierModel, ServingSettings, render
from serving import conformance
from serving.check_repository import config_dict
from serving.conformance import GraphIO, check_ensemble, check_onnxruntime_model, refusal

REPO = Path(__file__).resolve().parents[2] / "model_repository"
CLASSIFIERS = ("sentiment_onnx_int8", "sentiment_onnx_fp16", "sentiment_onnx_fp32")


def published(model: str, variant: str = "configs/gpu.pbtxt") -> dict:
    return config_dict((REPO / model / variant).read_text())


# -- graphs ---------------------------------------------------------------------------------


def tensor(name: str, elem=TensorProto.INT64, shape=("batch", "sequence")):
    return helper.make_tensor_value_info(name, elem, list(shape) if shape is not None else None)


def classifier_model(extra_inputs=(), initializers=()) -> onnx.ModelProto:
    """berth's classifier interface (export/onnx_export.py): input_ids, attention_mask
    INT64 [batch, sequence]; logits, probabilities FP32 [batch, 2]; a runnable graph."""
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["m"]),
        helper.make_node("Cast", ["m"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f", "axes"], ["s"], keepdims=1),
        helper.make_node("Neg", ["s"], ["n"]),
        helper.make_node("Concat", ["s", "n"], ["c"], axis=1),
        helper.make_node("Mul", ["c", "scale"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [1], [1.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        nodes,
        "classifier",
        [tensor("input_ids"), tensor("attention_mask"), *extra_inputs],
        [
            tensor("logits", TensorProto.FLOAT, ("batch", 2)),
            tensor("probabilities", TensorProto.FLOAT, ("batch", 2)),
        ],
        initializer=[axes, scale, *initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


GRAPH = GraphIO.from_model(classifier_model())


def graph_io(inputs, outputs, initializers=()) -> GraphIO:
    """The interface of a graph with these value infos (its nodes do not matter here)."""
    graph = helper.make_graph([], "g", inputs, outputs, initializer=list(initializers))
    return GraphIO.from_model(helper.make_model(graph))


def good() -> dict:
    """The padded layout the native backend takes: berth's int8 GPU config."""
    return published("sentiment_onnx_int8")


def flat_graph(tmp_path: Path) -> GraphIO:
    """The classifier behind export's flat front end (model_flat.onnx)."""
    onnx.save(classifier_model(), tmp_path / "model.onnx")
    return GraphIO.from_path(add_flat_front(tmp_path / "model.onnx", tmp_path / "flat.onnx"))


def io(config: dict, name: str) -> dict:
    return next(t for t in config["input"] + config["output"] if t["name"] == name)


def rules_of(violations) -> set[str]:
    return {v.rule for v in violations}


def refused(config: dict, graph: GraphIO = GRAPH, **options) -> dict[str, list[str]]:
    """{rule: [message, ...]} of the refusals."""
    found: dict[str, list[str]] = {}
    for violation in check_onnxruntime_model(config, graph, **options):
        found.setdefault(violation.rule, []).append(violation.message)
    return found


# -- the dicts are Triton's ------------------------------------------------------------------


def test_config_dict_has_the_shape_triton_hands_a_python_backend():
    """core model_config_utils.cc ModelConfigToJson: proto field names, primitive fields
    printed with their defaults, 64-bit ints as JSON numbers, enums by name."""
    config = good()
    ids = io(config, "input_ids")
    assert ids["dims"] == [-1] and ids["data_type"] == "TYPE_INT64"
    assert ids["allow_ragged_batch"] is False and ids["optional"] is False
    assert config["max_batch_size"] == 1024
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["parameters"]["intra_op_thread_count"] == {"string_value": "1"}
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 1000
    assert config["backend"] == "onnxruntime"


def test_graph_io_is_what_onnxruntime_reports():
    """onnxruntime_utils.cc InputOutputInitializerInfos: session inputs exclude
    initializers, overridable initializers (IR >= 4) are listed apart, a symbolic
    dimension reads -1. GraphIO.from_model agrees with onnxruntime's own session."""
    scale_input = tensor("scale", TensorProto.FLOAT, (1,))
    model = classifier_model(extra_inputs=[scale_input])
    from_model = GraphIO.from_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert GraphIO.from_session(session) == from_model
    assert set(from_model.inputs) == {"input_ids", "attention_mask"}
    assert from_model.initializers["scale"].dims == (1,)
    assert from_model.inputs["input_ids"] == conformance.TensorInfo(
        "TYPE_INT64", (-1, -1), "ONNX_TYPE_TENSOR", "INT64"
    )
    assert from_model.outputs["logits"].dims == (-1, 2)


@pytest.mark.parametrize(("ir_version", "overridable"), [(3, []), (4, ["scale"])])
def test_initializers_listed_as_inputs_are_overridable_from_ir_4(ir_version, overridable):
    """onnxruntime.cc ModelInstanceState::ValidateInputs reads OverridableInitializerNames:
    onnxruntime counts a graph input that has an initializer as neither input nor
    overridable initializer before IR 4."""
    x = tensor("x", TensorProto.FLOAT, ("b", 1))
    scale = tensor("scale", TensorProto.FLOAT, (1,))
    weights = helper.make_tensor("scale", TensorProto.FLOAT, [1], [2.0])
    nodes = [helper.make_node("Mul", ["x", "scale"], ["y"])]
    y = tensor("y", TensorProto.FLOAT, ("b", 1))
    graph = helper.make_graph(nodes, "g", [x, scale], [y], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7 + ir_version)])
    model.ir_version = ir_version
    from_model = GraphIO.from_model(model)
    assert list(from_model.inputs) == ["x"] and list(from_model.initializers) == overridable
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert GraphIO.from_session(session) == from_model


def test_graph_io_from_path_does_not_need_external_weights(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(classifier_model(), path)
    assert GraphIO.from_path(path) == GRAPH


# -- correct configurations pass ------------------------------------------------------------


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_published_container_classifier_configs_pass(model, tmp_path):
    """berth's container configurations load in the native backend: config.pbtxt (padded
    inputs, KIND_CPU) and configs/gpu.pbtxt (KIND_GPU with TensorRT for fp16/fp32,
    KIND_CPU for int8); with --container-ragged, config.pbtxt's ragged inputs on the flat
    graph with a BATCH_ITEM_SHAPE batch input, which the padded graph cannot take."""
    assert check_onnxruntime_model(published(model, "config.pbtxt"), GRAPH) == []
    assert check_onnxruntime_model(published(model), GRAPH) == []
    variant = model.rsplit("_", 1)[1]
    settings = ServingSettings(container_ragged=True)
    flat = config_dict(render(ClassifierModel(model, variant, 2, settings).config()))
    assert check_onnxruntime_model(flat, flat_graph(tmp_path)) == []
    assert "ort.ragged-batch" in refused(flat, GRAPH)


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_published_pip_configs_fail_with_ragged_and_unknown_input(model):
    """berth's pip configurations (configs/pip.pbtxt) are the stand-in's only: ragged
    inputs on a [batch, sequence] graph (onnxruntime.cc ModelInstanceState::ValidateInputs)
    and the `windows` input that is no graph input (backend_common.cc
    CheckAllowedModelInput), which also makes the input count differ (ValidateInputs)."""
    found = refused(published(model, "configs/pip.pbtxt"))
    assert set(found) == {"ort.ragged-batch", "ort.unknown-input", "ort.input-count"}
    assert found["ort.ragged-batch"] == [
        f"unable to load model '{model}', configuration expects model provides input with "
        f"shape [-1]  for ragged input '{name}', model provides [-1,-1]"
        for name in ("input_ids", "attention_mask")
    ]
    assert found["ort.unknown-input"] == [
        "unexpected inference input 'windows', allowed inputs are: attention_mask, input_ids"
    ]
    assert found["ort.input-count"] == [
        f"unable to load model '{model}', configuration expects 3 inputs, model provides 2"
    ]


def test_a_config_without_io_is_completed_from_the_graph():
    """onnxruntime.cc ModelState::AutoCompleteConfig/AutoCompleteIO: no inputs or outputs
    declared → the graph's, batch dimension dropped, max_batch_size defaulted to 4."""
    config = {"name": "m", "backend": "onnxruntime", "instance_group": [{"kind": "KIND_CPU"}]}
    completed, violations = conformance.autocomplete(config, GRAPH)
    assert violations == []
    assert completed["max_batch_size"] == 4 and "dynamic_batching" in completed
    assert [(t["name"], t["dims"]) for t in completed["input"]] == [
        ("attention_mask", [-1]),
        ("input_ids", [-1]),
    ]
    assert check_onnxruntime_model(config, GRAPH) == []


# -- Triton core: the model's own configuration ----------------------------------------------


def test_platform_and_backend_must_agree():
    """core model_config_utils.cc ValidateModelConfig (GetBackendType vs
    GetBackendTypeFromPlatform)."""
    config = good() | {"platform": "tensorrt_plan"}
    assert refused(config) == {
        "core.model": ["unexpected 'platform' and 'backend' pair, got:tensorrt_plan, onnxruntime"]
    }
    assert refused(good() | {"platform": "onnxruntime_onnx"}) == {}


def test_max_batch_size_must_not_be_negative():
    """core model_config_utils.cc ValidateModelConfig."""
    found = refused(good() | {"max_batch_size": -1})
    assert found["core.model"] == [
        "'max_batch_size' must be non-negative value for sentiment_onnx_int8"
    ]


def test_ensemble_scheduling_only_on_an_ensemble():
    """core model_config_utils.cc ValidateModelConfig."""
    config = good() | {"ensemble_scheduling": {"step": []}}
    assert refused(config)["core.model"] == [
        "ensemble scheduling cannot be set for model 'sentiment_onnx_int8' whose platform is "
        "not ensemble"
    ]


def test_decoupled_model_has_no_response_cache():
    """core model_config_utils.cc ValidateModelConfig."""
    config = good() | {
        "model_transaction_policy": {"decoupled": True},
        "response_cache": {"enable": True},
    }
    assert "with 'decoupled' transaction policy" in refused(config)["core.model"][0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dims": [0]}, "dimension must be integer >= 1, or -1 to indicate a variable-size"),
        ({"dims": []}, "must specify 'dims'"),
        ({"data_type": "TYPE_INVALID"}, "must specify 'data_type'"),
        ({"dims": [4], "reshape": {"shape": [2, 3]}}, "has different size for dims and reshape"),
        ({"dims": [2, -1], "reshape": {"shape": [-1, 2]}}, "has different size for dims and"),
        (
            {"dims": [-1], "reshape": {"shape": [-1, -1]}},
            "has different number of variable-size dimensions for dims and reshape",
        ),
        ({"dims": [-1], "reshape": {"shape": [0]}}, "reshape dimensions must be integer >= 1"),
        ({"is_shape_tensor": True}, "shape tensors are only supported for TensorRT platform"),
        ({"format": "FORMAT_NCHW"}, "model input NHWC/NCHW require 3 dims"),
    ],
)
def test_io_declarations(change, message):
    """core model_config_utils.cc ValidateModelIOConfig → ValidateModelInput →
    ValidateIOShape (+ " for <model>")."""
    config = good()
    io(config, "input_ids").update(change)
    found = refused(config)["core.io"]
    assert any(message in text and text.endswith(" for sentiment_onnx_int8") for text in found)


def test_empty_reshape_needs_batching():
    """core model_config_utils.cc ValidateIOShape: scalars only behind a batch dim."""
    config = good() | {"max_batch_size": 0}
    io(config, "logits").update({"dims": [1], "reshape": {"shape": []}})
    assert (
        "model output 'logits' cannot have empty reshape for non-batching model as scalar "
        "tensors are not supported for sentiment_onnx_int8"
    ) in refused(config)["core.io"]


def test_batch_inputs_and_outputs():
    """core model_config_utils.cc ValidateBatchIO."""
    config = good() | {
        "batch_input": [
            {
                "kind": "BATCH_ITEM_SHAPE",
                "target_name": ["shapes"],
                "data_type": "TYPE_INT64",
                "source_input": ["windows"],
            }
        ],
        "batch_output": [
            {
                "kind": "BATCH_SCATTER_WITH_INPUT_SHAPE",
                "target_name": ["missing", "missing"],
                "source_input": ["input_ids"],
            }
        ],
    }
    assert set(refused(config)["core.batch-io"]) == {
        "batch input data type must be TYPE_INT32 or TYPE_FP32 for sentiment_onnx_int8",
        "unknown source input name 'windows' for sentiment_onnx_int8",
        "unknown target output name 'missing' for sentiment_onnx_int8",
        "target output name 'missing' can only be specified once for sentiment_onnx_int8",
    }


def test_preferred_batch_size_within_max_batch_size():
    """core model_config_utils.cc ValidateModelConfig (dynamic batching)."""
    config = good()
    config["dynamic_batching"]["preferred_batch_size"] = [0, 2048]
    assert refused(config) == {
        "core.dynamic-batching": [
            "dynamic batching preferred size must be positive for sentiment_onnx_int8",
            "dynamic batching preferred size must be <= max batch size for sentiment_onnx_int8",
        ]
    }


def test_priority_levels_and_preserve_ordering():
    """core model_config_utils.cc ValidateModelConfig (dynamic batching priorities,
    preserve_ordering)."""
    config = good()
    config["dynamic_batching"].update(
        {"priority_levels": 2, "default_priority_level": 3, "preserve_ordering": True}
    )
    config["dynamic_batching"]["default_queue_policy"]["timeout_action"] = "DELAY"
    found = refused(config)["core.dynamic-batching"]
    assert "default priority level must be in range [1, 2] for sentiment_onnx_int8" in found
    assert any(text.startswith("Only one priority level is allowed") for text in found)
    assert any(text.startswith("Queue policy can not have DELAY") for text in found)


def test_sequence_batching_declarations():
    """core model_config_utils.cc ValidateModelConfig (sequence batching: CORRID type,
    oldest preferred sizes) with backend_common.cc GetBooleanSequenceControlProperties
    (one of int32/fp32/bool false_true)."""
    config = good()
    del config["dynamic_batching"]
    config["sequence_batching"] = {
        "control_input": [
            {"name": "START", "control": [{"kind": "CONTROL_SEQUENCE_START"}]},
            {
                "name": "CORRID",
                "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_FP32"}],
            },
        ],
        "oldest": {"preferred_batch_size": [4096]},
    }
    found = refused(config)["core.sequence-batching"]
    assert any(
        t.startswith("sequence batching must specify either 'int32_false_true'") for t in found
    )
    assert any(
        t.startswith("unexpected data type for control CONTROL_SEQUENCE_CORRID") for t in found
    )
    assert (
        "sequence batching preferred batch size must be <= max batch size for sentiment_onnx_int8"
    ) in found


def test_instance_group_gpus_only_with_kind_gpu():
    """core model_config_utils.cc ValidateInstanceGroup."""
    config = good()
    config["instance_group"][0]["gpus"] = [0]
    assert refused(config) == {
        "core.instance-group": [
            "instance group sentiment_onnx_int8_0 of model sentiment_onnx_int8 has kind "
            "KIND_CPU but specifies one or more GPUs"
        ]
    }
    config["instance_group"][0]["kind"] = "KIND_MODEL"
    assert "has kind KIND_MODEL but" in refused(config)["core.instance-group"][0]
    del config["instance_group"][0]["gpus"]
    assert refused(config) == {}  # backend_model_instance.cc: KIND_MODEL is an instance kind


def test_kind_gpu_needs_a_gpu_on_the_serving_machine():
    """core model_config_utils.cc NormalizeInstanceGroup (KIND_AUTO → KIND_CPU without
    GPUs) and ValidateInstanceGroup (KIND_GPU without GPUs)."""
    config = published("sentiment_onnx_fp16")
    assert refused(config) == {}  # the container, with its GPUs
    assert refused(config, gpus=[]) == {
        "core.instance-group": [
            "instance group sentiment_onnx_fp16_0 of model sentiment_onnx_fp16 has kind "
            "KIND_GPU but no GPUs are available"
        ]
    }
    config["instance_group"][0]["kind"] = "KIND_AUTO"
    assert refused(config, gpus=[]) == {}
    config["instance_group"][0].update({"kind": "KIND_GPU", "gpus": [3]})
    assert (
        "specifies invalid or unsupported gpu id 3"
        in refused(config, gpus=[0])["core.instance-group"][0]
    )


def test_instance_group_profile_only_for_tensorrt():
    """core model_config_utils.cc ValidateInstanceGroup."""
    config = good()
    config["instance_group"][0]["profile"] = ["0"]
    assert (
        "specifies profile field which is only supported for TensorRT models"
        in (refused(config)["core.instance-group"][0])
    )


# -- the onnxruntime backend: tensors against the graph ----------------------------------------


def test_config_input_must_be_a_graph_input():
    """backend_common.cc CheckAllowedModelInput, from onnxruntime.cc
    ModelInstanceState::ValidateInputs."""
    config = good()
    io(config, "attention_mask")["name"] = "token_type_ids"
    assert refused(config) == {
        "ort.unknown-input": [
            "unexpected inference input 'token_type_ids', allowed inputs are: attention_mask, "
            "input_ids"
        ]
    }


def test_every_graph_input_must_be_declared():
    """onnxruntime.cc ModelInstanceState::ModelInstanceState/ValidateInputs: the graph's
    inputs number the config's non-optional inputs (+ batch inputs, sequence controls
    and states)."""
    config = good()
    config["input"] = [io(config, "input_ids")]
    assert refused(config) == {
        "ort.input-count": [
            "unable to load model 'sentiment_onnx_int8', configuration expects 1 inputs, model "
            "provides 2 (graph inputs not declared: attention_mask)"
        ]
    }


def test_overridable_initializers_may_be_named_but_are_not_counted():
    """onnxruntime.cc ValidateInputs: overridable initializers join the allowed names
    after the count, so declaring one (non-optional) breaks the count, not the name."""
    scale = tensor("scale", TensorProto.FLOAT, (1,))
    model = classifier_model(extra_inputs=[scale])
    config = good() | {"max_batch_size": 0}
    for t in config["input"]:
        t["dims"] = [-1, -1]
    for t in config["output"]:
        t["dims"] = [-1, 2]
    config["input"].append({"name": "scale", "data_type": "TYPE_FP32", "dims": [1]})
    assert set(refused(config, GraphIO.from_model(model))) == {"ort.input-count"}
    config["input"][-1]["optional"] = True
    assert refused(config, GraphIO.from_model(model)) == {}


def test_config_output_must_be_a_graph_output():
    """backend_common.cc CheckAllowedModelOutput, from onnxruntime.cc
    ModelInstanceState::ValidateOutputs."""
    config = good()
    io(config, "probabilities")["name"] = "scores"
    assert refused(config) == {
        "ort.unknown-output": [
            "unexpected inference output 'scores', allowed outputs are: logits, probabilities"
        ]
    }


def test_data_types_match_the_graph():
    """onnxruntime.cc ModelInstanceState::ValidateInputs/ValidateOutputs
    (ModelConfigDataTypeToOnnxDataType vs the graph's element type)."""
    config = good()
    io(config, "input_ids")["data_type"] = "TYPE_INT32"
    io(config, "logits")["data_type"] = "TYPE_FP16"
    assert refused(config) == {
        "ort.datatype": [
            "unable to load model 'sentiment_onnx_int8', configuration expects datatype "
            "TYPE_INT32 for input 'input_ids', model provides TYPE_INT64",
            "unable to load model 'sentiment_onnx_int8', configuration expects datatype "
            "TYPE_FP16 for output 'logits', model provides TYPE_FP32",
        ]
    }


def test_data_types_the_backend_cannot_map():
    """onnxruntime_utils.cc ModelConfigDataTypeToOnnxDataType (no TYPE_BF16: "unsupported
    datatype") and ConvertFromOnnxDataType (a bfloat16 graph tensor has no Triton type)."""
    config = good()
    io(config, "logits")["data_type"] = "TYPE_BF16"
    assert refused(config) == {
        "ort.unsupported-datatype": [
            "unsupported datatype TYPE_BF16 for output 'logits' for model 'sentiment_onnx_int8'"
        ]
    }
    graph = graph_io(
        [tensor("input_ids"), tensor("attention_mask")],
        [
            tensor("logits", TensorProto.BFLOAT16, ("batch", 2)),
            tensor("probabilities", TensorProto.FLOAT, ("batch", 2)),
        ],
    )
    assert refused(good(), graph)["ort.datatype"] == [
        "unable to load model 'sentiment_onnx_int8', configuration expects datatype TYPE_FP32 "
        "for output 'logits', model provides TYPE_<invalid>"
    ]


def test_string_tensors_are_supported_as_string_graph_tensors():
    """onnxruntime.cc SetStringInputTensor/SetStringOutputBuffer: the r24.10 backend takes
    BYTES (TYPE_STRING) tensors, so the rule is only that they meet ONNX string tensors
    (ValidateInputs: "model provides TYPE_BYTES" otherwise)."""
    graph = graph_io(
        [tensor("text", TensorProto.STRING, ("batch", 1))],
        [tensor("label", TensorProto.STRING, ("batch", 1))],
    )
    config = {
        "name": "strings",
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "input": [{"name": "text", "data_type": "TYPE_STRING", "dims": [1]}],
        "output": [{"name": "label", "data_type": "TYPE_STRING", "dims": [1]}],
        "instance_group": [{"kind": "KIND_CPU"}],
    }
    assert refused(config, graph) == {}
    config["input"][0]["data_type"] = "TYPE_INT64"
    assert refused(config, graph)["ort.datatype"] == [
        "unable to load model 'strings', configuration expects datatype TYPE_INT64 for input "
        "'text', model provides TYPE_BYTES"
    ]
    good_config = good()
    io(good_config, "input_ids")["data_type"] = "TYPE_STRING"
    assert "model provides TYPE_INT64" in refused(good_config)["ort.datatype"][0]


def test_inputs_compare_loosely_against_graph_dims():
    """onnxruntime_utils.cc CompareDimsSupported (compare_exact false, for inputs): a -1
    in the graph takes any config dim, a fixed graph dim only itself, ranks equal."""
    fixed = graph_io(
        [tensor("input_ids", shape=("batch", 128)), tensor("attention_mask")],
        [tensor("logits", TensorProto.FLOAT, ("batch", 2))],
    )
    config = good()
    config["output"] = [io(config, "logits")]
    assert refused(config, fixed) == {
        "ort.dims": [
            "model 'sentiment_onnx_int8', tensor 'input_ids': the model expects 2 dimensions "
            "(shape [-1,128]) but the model configuration specifies 2 dimensions (an initial "
            "batch dimension because max_batch_size > 0 followed by the explicit tensor shape, "
            "making complete shape [-1,-1])"
        ]
    }
    io(config, "input_ids")["dims"] = [128]
    io(config, "attention_mask")["dims"] = [128]  # a -1 graph dim takes 128
    assert refused(config, fixed) == {}
    io(config, "attention_mask")["dims"] = [1, 128]
    assert "the model expects 2 dimensions" in refused(config, fixed)["ort.dims"][0]


def test_outputs_compare_exactly_against_graph_dims():
    """onnxruntime_utils.cc CompareDimsSupported (compare_exact true, for outputs): a -1
    in the config does not match the graph's fixed 2, nor a 2 the graph's -1."""
    config = good()
    io(config, "logits")["dims"] = [-1]
    assert refused(config) == {
        "ort.dims": [
            "model 'sentiment_onnx_int8', tensor 'logits': the model expects 2 dimensions "
            "(shape [-1,2]) but the model configuration specifies 2 dimensions (an initial "
            "batch dimension because max_batch_size > 0 followed by the explicit tensor shape, "
            "making complete shape [-1,-1])"
        ]
    }
    variable = graph_io(
        [tensor("input_ids"), tensor("attention_mask")],
        [tensor("logits", TensorProto.FLOAT, ("batch", "labels"))],
    )
    config = good()
    config["output"] = [io(config, "logits")]
    assert set(refused(config, variable)) == {"ort.dims"}


def test_batching_needs_a_variable_first_graph_dim():
    """onnxruntime_utils.cc CompareDimsSupported: with max_batch_size > 0 the graph's first
    dimension must be -1; the config's dims follow it."""
    graph = graph_io(
        [tensor("input_ids", shape=(1, "sequence")), tensor("attention_mask")],
        [
            tensor("logits", TensorProto.FLOAT, ("batch", 2)),
            tensor("probabilities", TensorProto.FLOAT, ("batch", 2)),
        ],
    )
    assert refused(good(), graph) == {
        "ort.batch-dim": [
            "model 'sentiment_onnx_int8', tensor 'input_ids': for the model to support "
            "batching the shape should have at least 1 dimension and the first dimension must "
            "be -1; but shape expected by the model is [1,-1]"
        ]
    }


def test_without_batching_the_config_dims_are_the_graph_dims():
    """onnxruntime_utils.cc CompareDimsSupported (max_batch_size 0): no batch dimension is
    added, so the config lists every graph dimension."""
    config = good() | {"max_batch_size": 0}
    del config["dynamic_batching"]
    assert set(refused(config)) == {"ort.dims"}
    for t in config["input"]:
        t["dims"] = [-1, -1]
    for t in config["output"]:
        t["dims"] = [-1, 2]
    assert refused(config) == {}


def test_reshape_is_what_is_compared():
    """onnxruntime.cc ModelInstanceState::ValidateInputs: with a reshape, its shape is
    compared with the graph, not dims."""
    config = good()
    io(config, "input_ids").update({"dims": [1, -1], "reshape": {"shape": [-1]}})
    assert refused(config) == {}
    del io(config, "input_ids")["reshape"]
    assert set(refused(config)) == {"ort.dims"}


def test_scalar_graph_tensor_takes_only_ones():
    """onnxruntime.cc ModelInstanceState::ValidateOutputs: a scalar graph tensor's config
    dims must all be 1."""
    graph = graph_io(
        [tensor("input_ids"), tensor("attention_mask")],
        [tensor("logits", TensorProto.FLOAT, ())],
    )
    config = good()
    config["output"] = [io(config, "logits")]
    assert refused(config, graph) == {
        "ort.dims": [
            "unable to load model 'sentiment_onnx_int8', scalar tensor 'logits', should only "
            "provide 1 in the model configuration when the model doesn't support batching. "
            "Model configuration provided: [2]."
        ]
    }


def test_ragged_input_needs_a_flat_graph_input():
    """onnxruntime.cc ModelInstanceState::ValidateInputs: a ragged input is fed flattened
    to one dimension, so the graph input must be exactly [-1]."""
    config = good()
    io(config, "input_ids")["allow_ragged_batch"] = True
    assert refused(config) == {
        "ort.ragged-batch": [
            "unable to load model 'sentiment_onnx_int8', configuration expects model provides "
            "input with shape [-1]  for ragged input 'input_ids', model provides [-1,-1]"
        ]
    }
    flat = graph_io(
        [tensor("input_ids", shape=("tokens",)), tensor("attention_mask")],
        [
            tensor("logits", TensorProto.FLOAT, ("batch", 2)),
            tensor("probabilities", TensorProto.FLOAT, ("batch", 2)),
        ],
    )
    assert refused(config, flat) == {}


def test_optional_inputs_only_without_batching():
    """onnxruntime.cc ModelInstanceState::ValidateInputs (optional with batching, optional
    and ragged)."""
    config = good()
    io(config, "attention_mask").update({"optional": True, "allow_ragged_batch": True})
    found = refused(config)
    assert found["ort.optional-input"] == [
        "unable to load model 'sentiment_onnx_int8', optional input 'attention_mask' is not "
        "supported for models that support batching"
    ]
    assert any("not supported for optional input" in t for t in found["ort.ragged-batch"])


def test_graph_tensors_must_be_tensors():
    """onnxruntime_utils.cc InputOutputInitializerInfos: sequences, maps, … are refused."""
    sequence = helper.make_tensor_sequence_value_info("logits", TensorProto.FLOAT, None)
    graph = graph_io([tensor("input_ids"), tensor("attention_mask")], [sequence])
    config = good()
    config["output"] = [io(config, "logits")]
    assert refused(config, graph) == {
        "ort.onnx-type": [
            "Unsupported ONNX Type 'ONNX_TYPE_SEQUENCE' for I/O 'logits', expected "
            "'ONNX_TYPE_TENSOR'."
        ]
    }


def test_sequence_controls_must_be_graph_inputs():
    """onnxruntime.cc ModelInstanceState::ValidateBooleanSequenceControl: a control tensor
    is a graph input of dims [1] and the control's type, and counts as an input."""
    config = good()
    del config["dynamic_batching"]
    config["sequence_batching"] = {
        "control_input": [
            {
                "name": "START",
                "control": [{"kind": "CONTROL_SEQUENCE_START", "int32_false_true": [0, 1]}],
            }
        ]
    }
    found = refused(config)
    assert found["ort.sequence-control"] == [
        "configuration specified sequence control 'START', but model does not provide that input"
    ]
    assert "configuration expects 3 inputs, model provides 2" in found["ort.input-count"][0]
    graph = graph_io(
        [
            tensor("input_ids"),
            tensor("attention_mask"),
            tensor("START", TensorProto.INT32, ("b", 1)),
        ],
        [
            tensor("logits", TensorProto.FLOAT, ("batch", 2)),
            tensor("probabilities", TensorProto.FLOAT, ("batch", 2)),
        ],
    )
    assert refused(config, graph) == {}


# -- the onnxruntime backend: parameters and accelerators -------------------------------------


def with_parameters(config: dict, **values: str) -> dict:
    config["parameters"] |= {k: {"string_value": v} for k, v in values.items()}
    return config


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("intra_op_thread_count", "four", "failed to convert 'four' to integral number"),
        ("inter_op_thread_count", "", "failed to convert '' to integral number"),
        (
            "execution_mode",
            "2",
            "Invalid configuration value provided. Expected values for  execution_mode are 0 "
            "or 1 but got 2 .",
        ),
        ("enable_mem_arena", "yes", "failed to convert 'yes' to boolean"),
        ("enable_mem_pattern", "2", "failed to convert '2' to boolean"),
    ],
)
def test_parameters_the_backend_reads_must_parse(key, value, message):
    """onnxruntime.cc ModelState::ModelState (TryParseModelStringParameter → backend_common.cc
    ParseIntValue, ParseBoolValue)."""
    found = refused(with_parameters(good(), **{key: value}))
    assert found == {"ort.parameter": [f"{message} (parameter '{key}')"]}


def test_integer_parameters_parse_as_std_stoi_does():
    """backend_common.cc ParseIntValue is std::stoi: a leading integer is enough, so the
    native accepts "4 threads"; the stand-in must read it as 4, not refuse it."""
    config = with_parameters(good(), intra_op_thread_count=" 4 threads", execution_mode="1")
    assert refused(config) == {}
    assert conformance.parse_int(" 4 threads") == (4, None)


def test_gpu_parameters_are_read_for_gpu_instances_only():
    """onnxruntime.cc ModelState::LoadModel: cudnn_conv_algo_search and
    arena_extend_strategy are parsed where a GPU instance is created."""
    config = with_parameters(good(), cudnn_conv_algo_search="5", arena_extend_strategy="x")
    assert refused(config) == {}  # KIND_CPU
    config["instance_group"][0]["kind"] = "KIND_GPU"
    assert refused(config) == {
        "ort.parameter": [
            "unsupported cudnn_conv_algo_search value '5' is requested "
            "(parameter 'cudnn_conv_algo_search')",
            "failed to convert 'x' to integral number (parameter 'arena_extend_strategy')",
        ]
    }


def test_cpu_accelerators_are_openvino_only():
    """onnxruntime.cc ModelState::LoadModel (CPU execution providers; server build.py
    enables OpenVINO in the x86-64 container)."""
    config = good()
    accelerators = {"cpu_execution_accelerator": [{"name": "tensorrt"}]}
    config["optimization"] = {"execution_accelerators": accelerators}
    assert refused(config) == {
        "ort.accelerator": ["unknown Execution Accelerator 'tensorrt' is requested"]
    }
    accelerators["cpu_execution_accelerator"] = [{"name": "openvino"}]
    assert refused(config) == {}


def test_gpu_accelerators_are_tensorrt_or_cuda_on_gpu_instances():
    """onnxruntime.cc ModelState::LoadModel (GPU execution providers, read for KIND_GPU
    instances only)."""
    config = published("sentiment_onnx_fp16")
    entries = config["optimization"]["execution_accelerators"]["gpu_execution_accelerator"]
    entries.append({"name": "openvino"})
    assert refused(config) == {
        "ort.accelerator": ["unknown Execution Accelerator 'openvino' is requested"]
    }
    config["instance_group"][0]["kind"] = "KIND_CPU"
    assert refused(config) == {}
    config["instance_group"][0]["kind"] = "KIND_GPU"
    entries[-1] = {"name": "cuda", "parameters": {"do_copy_in_default_stream": "maybe"}}
    assert refused(config) == {"ort.accelerator": ["failed to convert 'maybe' to boolean"]}


def test_tensorrt_accelerator_parameters():
    """onnxruntime.cc ModelState::LoadModel (TensorRT provider options: known keys, each
    value parsed by its kind)."""
    config = published("sentiment_onnx_fp32")
    tensorrt = config["optimization"]["execution_accelerators"]["gpu_execution_accelerator"][0]
    tensorrt["parameters"] |= {
        "precision_mode": "FP8",
        "max_workspace_size_bytes": "lots",
        "trt_engine_cache_enable": "maybe",
        "trt_builder_optimization_level": "high",
        "trt_fp16_enable": "1",
    }
    found = refused(config)
    assert set(found) == {"ort.accelerator"}
    assert sorted(found["ort.accelerator"]) == [
        "failed to convert 'high' to integral number",
        "failed to convert 'lots' to unsigned long long integral number",
        "failed to convert 'maybe' to boolean",
        "unknown parameter 'trt_fp16_enable' is provided for TensorRT Execution Accelerator",
        "unsupported precision mode 'FP8' is requested",
    ]


def test_autofill_refuses_batching_a_graph_that_cannot_batch():
    """onnxruntime.cc ModelState::AutoCompleteMaxBatch: auto-complete runs when inputs or
    outputs are missing, and a graph whose first dims are not all -1 cannot batch."""
    graph = graph_io(
        [tensor("input_ids", shape=(1, 8))],
        [tensor("logits", TensorProto.FLOAT, (1, 2))],
    )
    config = {"name": "m", "backend": "onnxruntime", "max_batch_size": 8}
    assert refused(config, graph) == {
        "ort.autocomplete": [
            "autofill failed for model 'm': model does not support batching while non-zero "
            "max_batch_size is specified"
        ]
    }
    assert refused(config | {"max_batch_size": 0}, graph) == {}


def test_the_graph_file_is_where_the_native_looks(tmp_path):
    """onnxruntime.cc ModelState::LoadModel: <version>/<default_model_filename>, or
    model.onnx inside it when a directory; never the model directory itself."""
    config = good()
    version = tmp_path / "sentiment_onnx_int8" / "1"
    version.mkdir(parents=True)
    (tmp_path / "sentiment_onnx_int8" / "model.onnx").write_bytes(b"")
    assert [v.rule for v in conformance.check_model_file(version, config)] == ["ort.model-file"]
    (version / "model.onnx").mkdir()
    (version / "model.onnx" / "model.onnx").write_bytes(b"")
    assert conformance.native_model_path(version, config) == version / "model.onnx" / "model.onnx"
    assert conformance.check_model_file(version, config) == []


# -- Triton core: ensembles ---------------------------------------------------------------------


def ensemble_and_members(variant: str = "configs/gpu.pbtxt") -> tuple[dict, dict]:
    ensemble = published("sentiment", variant)
    steps = ensemble["ensemble_scheduling"]["step"]
    return ensemble, {s["model_name"]: published(s["model_name"], variant) for s in steps}


@pytest.mark.parametrize("variant", ["configs/gpu.pbtxt", "config.pbtxt"])
def test_published_ensembles_pass(variant):
    """berth's ensembles are wired as core requires (ensemble_utils.cc
    ValidateEnsembleConfig, model_config_utils.cc ValidateEnsembleSchedulingConfig)."""
    ensemble, members = ensemble_and_members(variant)
    assert check_ensemble(ensemble, members) == []


def step(ensemble: dict, model: str) -> dict:
    return next(s for s in ensemble["ensemble_scheduling"]["step"] if s["model_name"] == model)


def ensemble_rules(ensemble: dict, members: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for violation in check_ensemble(ensemble, members):
        found.setdefault(violation.rule, []).append(violation.message)
    return found


def test_ensemble_step_models_must_exist():
    """core model_repository_manager.cc DependencyGraph::UpdateGraph."""
    ensemble, members = ensemble_and_members()
    del members["sentiment_aggregate"]
    assert ensemble_rules(ensemble, members) == {
        "core.ensemble-members": [
            "ensemble sentiment contains models that are not available or ambiguous: "
            "sentiment_aggregate"
        ]
    }


def test_ensemble_maps_name_real_tensors():
    """core ensemble_utils.cc ValidateTensorMapping: input_map keys are the model's inputs,
    every non-optional input is mapped, output_map keys are its outputs."""
    ensemble, members = ensemble_and_members()
    classifier = step(ensemble, "sentiment_onnx_fp16")
    classifier["input_map"]["windows"] = classifier["input_map"].pop("attention_mask")
    classifier["output_map"]["scores"] = classifier["output_map"].pop("logits")
    assert set(ensemble_rules(ensemble, members)["core.ensemble-wiring"]) == {
        "in ensemble sentiment, ensemble tensor _attention_mask is mapping to non-existing "
        "input windows in model sentiment_onnx_fp16",
        "in ensemble sentiment, input attention_mask in model sentiment_onnx_fp16 is not "
        "mapped to any ensemble tensors",
        "in ensemble sentiment, ensemble tensor _window_logits is mapped from non-existing "
        "output scores in model sentiment_onnx_fp16",
    }


def test_ensemble_tensors_agree_in_type_and_shape():
    """core ensemble_utils.cc ValidateTensorConsistency (common model_config.cc
    CompareDimsWithWildcard: a -1 agrees with anything)."""
    ensemble, members = ensemble_and_members()
    io(members["sentiment_onnx_fp16"], "input_ids")["data_type"] = "TYPE_INT32"
    io(members["sentiment_aggregate"], "logits")["dims"] = [3]
    assert ensemble_rules(ensemble, members) == {
        "core.ensemble-wiring": [
            "in ensemble sentiment, ensemble tensor _input_ids: inconsistent data type: "
            "TYPE_INT64 is inferred from model sentiment_tokenizer while TYPE_INT32 is "
            "inferred from model sentiment_onnx_fp16",
            "in ensemble sentiment, ensemble tensor _window_logits: inconsistent shape: "
            "[-1,2] is inferred from model sentiment_onnx_fp16 while [-1,3] is inferred from "
            "model sentiment_aggregate",
        ]
    }


def test_ensemble_members_batch_at_least_as_much():
    """core ensemble_utils.cc ValidateEnsembleConfig (max_batch_size of each step)."""
    ensemble, members = ensemble_and_members()
    members["sentiment_aggregate"]["max_batch_size"] = 32
    assert ensemble_rules(ensemble, members) == {
        "core.ensemble-batch-size": [
            "ensemble sentiment allows maximum batch size 64, but it contains model "
            "sentiment_aggregate which only allows maximum batch size to be 32"
        ]
    }


def test_ensemble_tensor_is_written_once():
    """core model_config_utils.cc BuildEnsembleGraph."""
    ensemble, members = ensemble_and_members()
    step(ensemble, "sentiment_onnx_fp16")["output_map"]["probabilities"] = "_window_logits"
    found = ensemble_rules(ensemble, members)
    assert found["core.ensemble-flow"] == [
        "ensemble tensor '_window_logits' can appear in an output map only once for ensemble "
        "'sentiment' step 1"
    ]


def test_ensemble_data_flow():
    """core model_config_utils.cc ValidateEnsembleSchedulingConfig: ensemble inputs used,
    outputs written (a cycle never is), no tensor left unconsumed."""
    ensemble, members = ensemble_and_members()
    ensemble["input"].append({"name": "EXTRA", "data_type": "TYPE_STRING", "dims": [1]})
    aggregate = step(ensemble, "sentiment_aggregate")
    aggregate["input_map"]["windows"] = "_loop"
    aggregate["output_map"]["PROBABILITIES"] = "_loop"
    found = ensemble_rules(ensemble, members)["core.ensemble-flow"]
    assert "ensemble input 'EXTRA' for ensemble sentiment' is not used" in found
    assert (
        "output 'LOGITS' for ensemble 'sentiment' is not written: at least one of its depending "
        "tensors, '_loop', is not connected"
    ) in found
    assert "ensemble output 'PROBABILITIES' for ensemble sentiment' is not used" in found
    assert "ensemble tensor '_windows' is unused in ensemble 'sentiment'" in found


def test_ensemble_sets_no_instances_or_backend():
    """core model_config_utils.cc ValidateModelConfig/ValidateEnsembleSchedulingConfig."""
    ensemble, members = ensemble_and_members()
    ensemble |= {"backend": "python", "instance_group": [{"kind": "KIND_CPU"}], "optimization": {}}
    assert set(ensemble_rules(ensemble, members)["core.ensemble-config"]) == {
        "Ensemble model 'sentiment' must have platform type 'ensemble' and empty backend type",
        "instance group should not be specified for ensemble 'sentiment'",
        "optimization should not be specified for ensemble 'sentiment'",
    }
    ensemble, members = ensemble_and_members()
    ensemble["ensemble_scheduling"]["step"] = []
    assert ensemble_rules(ensemble, members) == {
        "core.ensemble-config": ["must specify 'step' for ensemble 'sentiment'"]
    }


# -- the refusal -------------------------------------------------------------------------------


def test_refusal_lists_every_violation_with_its_source():
    config = published("sentiment_onnx_int8", "configs/pip.pbtxt")
    violations = check_onnxruntime_model(config, GRAPH)
    text = refusal(violations)
    assert text.splitlines() == [f"{v.message} [{v.rule}: {v.source}]" for v in violations]
    assert "[ort.unknown-input: backend src/backend_common.cc CheckAllowedModelInput]" in text
    assert refusal([]) == ""


def test_every_violation_names_a_source_file_and_function():
    configs = [published(m, "configs/pip.pbtxt") for m in CLASSIFIERS]
    violations = [v for c in configs for v in check_onnxruntime_model(c, GRAPH)]
    assert violations
    for violation in violations:
        repository, path, function = violation.source.split(" ", 2)
        assert repository in conformance.REVISIONS and path.startswith("src/") and function


# -- the package copied next to a Python-backend model.py ---------------------------------------

TOP_LEVEL_CHECK = """
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import conformance
loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before})
graph = conformance.GraphIO(
    {"x": conformance.TensorInfo("TYPE_FP32", (2,))},
    {"y": conformance.TensorInfo("TYPE_FP32", (2,))},
)
config = {
    "name": "tiny",
    "backend": "onnxruntime",
    "max_batch_size": 0,
    "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [2]}],
    "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [2]}],
    "instance_group": [{"kind": "KIND_CPU"}],
}
passed = conformance.check_onnxruntime_model(config, graph)
config["input"][0]["dims"] = [3]
refused = conformance.check_onnxruntime_model(config, graph)
print(json.dumps({
    "file": conformance.__file__,
    "loaded": loaded,
    "passed": [v.rule for v in passed],
    "refused": [v.rule for v in refused],
}))
"""


def test_the_package_imports_as_a_top_level_conformance(tmp_path):
    """The folder copied next to a Triton Python-backend model.py is imported there as
    the top-level package `conformance`: its modules import one another relatively and
    load nothing but the standard library (no `serving`, no `onnx`)."""
    source = Path(conformance.__file__).parent
    assert source.name == "conformance" and (source / "__init__.py").is_file()
    (tmp_path / "conformance").mkdir()
    for module in source.glob("*.py"):
        shutil.copy(module, tmp_path / "conformance" / module.name)
    run = subprocess.run(
        [sys.executable, "-I", "-c", TOP_LEVEL_CHECK, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert Path(found["file"]) == tmp_path / "conformance" / "__init__.py"
    assert set(found["loaded"]) <= {"conformance", *sys.stdlib_module_names}, found["loaded"]
    assert found["passed"] == []
    assert found["refused"] == ["ort.dims"]
