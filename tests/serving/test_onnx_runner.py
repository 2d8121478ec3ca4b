"""The Python-based onnxruntime backend: batching, shapes, dtypes, errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from serving.onnx_runner import model as ort_backend
from tests.serving import fake_pb_utils


class RecordingSession:
    def __init__(self) -> None:
        self.calls = []

    def run(self, names, feed):
        self.calls.append({k: v.shape for k, v in feed.items()})
        x = feed["input_ids"].astype(np.float32)
        return [x.sum(1, keepdims=True), x.mean(1, keepdims=True)]


def test_requests_of_equal_shape_run_as_one_batch():
    session = RecordingSession()
    batches = [
        {"input_ids": np.full((2, 16), 1), "attention_mask": np.ones((2, 16), np.int64)},
        {"input_ids": np.full((3, 16), 2), "attention_mask": np.ones((3, 16), np.int64)},
        {"input_ids": np.full((1, 32), 3), "attention_mask": np.ones((1, 32), np.int64)},
    ]
    results = ort_backend.run_batched(session, batches, ["sum", "mean"])
    assert session.calls == [
        {"input_ids": (5, 16), "attention_mask": (5, 16)},
        {"input_ids": (1, 32), "attention_mask": (1, 32)},
    ]
    assert [r["sum"].ravel().tolist() for r in results] == [[16, 16], [32, 32, 32], [96]]


def test_ragged_requests_run_sorted_in_sub_batches_padded_to_their_own_longest():
    session = RecordingSession()
    widths = [30, 8, 9, 31, 8, 64, 10]
    batches = [
        {
            "input_ids": np.full((1, w), i + 1, np.int64),
            "attention_mask": np.ones((1, w), np.int64),
        }
        for i, w in enumerate(widths)
    ]
    ragged = {"input_ids", "attention_mask"}
    results = ort_backend.run_batched(session, batches, ["sum", "mean"], ragged, 16)
    # cost 16 per run + rows × padded width: {8,8,9,10} | {30,31} | {64}
    assert [c["input_ids"] for c in session.calls] == [(4, 10), (2, 31), (1, 64)]
    # zero padding is masked out; each request gets its own row back
    assert [r["sum"].ravel().tolist() for r in results] == [
        [30.0],
        [16.0],
        [27.0],
        [124.0],
        [40.0],
        [384.0],
        [70.0],
    ]
    one_run = ort_backend.run_batched(RecordingSession(), batches, ["sum", "mean"], ragged, 1e9)
    assert len(one_run) == len(batches)
    session = RecordingSession()
    ort_backend.run_batched(session, batches, ["sum", "mean"], ragged, 1e9)
    assert session.calls == [{"input_ids": (7, 64), "attention_mask": (7, 64)}]


def test_plan_ragged_is_optimal_for_its_cost_model():
    import itertools

    rng = np.random.default_rng(0)
    for _ in range(30):
        widths = rng.integers(4, 60, rng.integers(1, 9)).tolist()
        rows = rng.integers(1, 4, len(widths)).tolist()
        cost_run = float(rng.choice([0, 8, 64, 512]))
        groups = ort_backend.plan_ragged(widths, rows, cost_run)
        assert sorted(i for g in groups for i in g) == list(range(len(widths)))

        def cost(gs, widths=widths, rows=rows, cost_run=cost_run):
            return sum(cost_run + sum(rows[i] for i in g) * max(widths[i] for i in g) for g in gs)

        order = sorted(range(len(widths)), key=widths.__getitem__)
        best = min(
            cost([order[a:b] for a, b in itertools.pairwise((0, *cuts, len(order)))])
            for k in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), k)
        )
        assert cost(groups) == pytest.approx(best)


def test_backend_model_in_process(tiny_onnx, triton_model):
    config = {
        "input": [
            {"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1]},
            {"name": "attention_mask", "data_type": "TYPE_INT64", "dims": [-1]},
        ],
        "output": [
            {"name": "logits", "data_type": "TYPE_FP32", "dims": [1]},
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [1]},
        ],
        "parameters": {"intra_op_thread_count": {"string_value": "1"}},
    }
    model = triton_model(ort_backend, tiny_onnx / "1", config)
    requests = [
        fake_pb_utils.InferenceRequest(
            input_ids=np.array([[1, 2, 3]], np.int64),
            attention_mask=np.array([[1, 1, 0]], np.int64),
        ),
        fake_pb_utils.InferenceRequest(
            input_ids=np.array([[4, 5, 6], [1, 1, 1]], np.int64),
            attention_mask=np.ones((2, 3), np.int64),
        ),
        fake_pb_utils.InferenceRequest(
            input_ids=np.array([[7]], np.int64), attention_mask=np.array([[1]], np.int64)
        ),
    ]
    responses = model.execute(requests)
    assert [r.error for r in responses] == [None, None, None]
    assert [r.output_tensors["logits"].ravel().tolist() for r in responses] == [
        [3.0],
        [15.0, 3.0],
        [7.0],
    ]
    assert responses[0].output_tensors["logits"].dtype == np.float32


def test_missing_graph_input_is_reported(tiny_onnx, triton_model):
    config = {
        "input": [{"name": "token_type_ids", "data_type": "TYPE_INT64", "dims": [-1]}],
        "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [1]}],
    }
    with pytest.raises(ValueError, match="token_type_ids"):
        triton_model(ort_backend, tiny_onnx / "1", config)


def test_backend_model_with_ragged_inputs_in_process(tiny_onnx, triton_model):
    config = {
        "input": [
            {"name": n, "data_type": "TYPE_INT64", "dims": [-1], "allow_ragged_batch": True}
            for n in ("input_ids", "attention_mask")
        ],
        "output": [
            {"name": "logits", "data_type": "TYPE_FP32", "dims": [1]},
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [1]},
        ],
        "parameters": {"ragged_run_cost_tokens": {"string_value": "1000"}},
    }
    model = triton_model(ort_backend, tiny_onnx / "1", config)
    assert model.ragged == {"input_ids", "attention_mask"}
    requests = [
        fake_pb_utils.InferenceRequest(
            input_ids=np.array([[1, 2, 3, 4]], np.int64), attention_mask=np.ones((1, 4), np.int64)
        ),
        fake_pb_utils.InferenceRequest(
            input_ids=np.array([[7]], np.int64), attention_mask=np.array([[1]], np.int64)
        ),
        fake_pb_utils.InferenceRequest(
            input_ids=np.array([[4, 5], [1, 1]], np.int64), attention_mask=np.ones((2, 2), np.int64)
        ),
    ]
    responses = model.execute(requests)
    assert [r.output_tensors["logits"].ravel().tolist() for r in responses] == [
        [10.0],
        [7.0],
        [9.0, 2.0],
    ]


def test_window_mode_aggregates_each_requests_windows_in_process(tiny_onnx, triton_model):
    """A `windows` input (not a graph input) makes the classifier step answer one row per
    text: the mean of its windows' logits, probabilities recomputed from them."""
    config = {
        "input": [
            {"name": n, "data_type": "TYPE_INT64", "dims": [-1], "allow_ragged_batch": True}
            for n in ("input_ids", "attention_mask")
        ]
        + [{"name": "windows", "data_type": "TYPE_INT64", "dims": [2]}],
        "output": [
            {"name": "logits", "data_type": "TYPE_FP32", "dims": [1]},
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [1]},
        ],
        "parameters": {
            "aggregation": {"string_value": "mean"},
            "problem_type": {"string_value": "multi_label_classification"},
        },
    }
    model = triton_model(ort_backend, tiny_onnx / "1", config)
    requests = [
        fake_pb_utils.InferenceRequest(  # text 0: windows 1 and 3; text 1: window 6
            input_ids=np.array([[1], [3], [6]], np.int64),
            attention_mask=np.ones((3, 1), np.int64),
            windows=np.array([[0, 4], [0, 2], [1, 5]], np.int64),
        ),
        fake_pb_utils.InferenceRequest(  # one window: as without window mode
            input_ids=np.array([[2, 5]], np.int64),
            attention_mask=np.ones((1, 2), np.int64),
            windows=np.array([[0, 2]], np.int64),
        ),
        fake_pb_utils.InferenceRequest(  # windows that do not match the rows
            input_ids=np.array([[2]], np.int64),
            attention_mask=np.ones((1, 1), np.int64),
            windows=np.array([[0, 2], [1, 2]], np.int64),
        ),
    ]
    long, short, bad = model.execute(requests)
    assert long.output_tensors["logits"].ravel().tolist() == [2.0, 6.0]
    np.testing.assert_allclose(
        long.output_tensors["probabilities"].ravel(), 1 / (1 + np.exp(-np.array([2.0, 6.0])))
    )
    assert short.output_tensors["logits"].ravel().tolist() == [7.0]
    assert bad.error is not None and "windows" in bad.error.message


def _add_layer_norm_graph(path) -> None:
    """x + skip → LayerNormalization: what onnxruntime's SkipLayerNormFusion fuses."""
    hidden = 8
    nodes = [
        helper.make_node("Add", ["x", "skip"], ["sum"]),
        helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1),
    ]
    inits = [
        helper.make_tensor("gamma", TensorProto.FLOAT, [hidden], np.ones(hidden).tolist()),
        helper.make_tensor("beta", TensorProto.FLOAT, [hidden], np.zeros(hidden).tolist()),
    ]
    spec = ["batch", "sequence", hidden]
    graph = helper.make_graph(
        nodes,
        "skip_ln",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, spec) for n in ("x", "skip")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, spec)],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize(
    ("parameter", "fused"), [("", True), ("SkipLayerNormFusion", False), (" , ", True)]
)
def test_disabled_optimizers_parameter_reaches_onnxruntime(tmp_path, parameter, fused):
    """The config parameter names optimizers onnxruntime really knows and skips."""
    import onnxruntime as ort

    source, optimized = tmp_path / "in.onnx", tmp_path / "out.onnx"
    _add_layer_norm_graph(source)
    config = {"parameters": {"disabled_optimizers": {"string_value": parameter}}}
    options = ort_backend.session_options(config)
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(
        str(source),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=ort_backend.disabled_optimizers(config),
    )
    ops = {node.op_type for node in onnx.load(str(optimized)).graph.node}
    assert ("SkipLayerNormalization" in ops) is fused
    assert ("LayerNormalization" in ops) is not fused


def test_backend_passes_disabled_optimizers_to_its_session(tiny_onnx, monkeypatch, triton_model):
    import onnxruntime as ort

    seen = {}
    real = ort.InferenceSession

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    config = {
        "input": [{"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1]}],
        "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [1]}],
        "parameters": {"disabled_optimizers": {"string_value": "SkipLayerNormFusion,GeluFusion"}},
    }
    triton_model(ort_backend, tiny_onnx / "1", config)
    assert seen["disabled_optimizers"] == ["SkipLayerNormFusion", "GeluFusion"]
    # export's measured choice for this graph, in its version directory, adds to them
    (tiny_onnx / "1" / "session.json").write_text(
        json.dumps({"disabled_optimizers": ["GeluFusion", "AttentionFusion"]})
    )
    triton_model(ort_backend, tiny_onnx / "1", config)
    assert seen["disabled_optimizers"] == ["SkipLayerNormFusion", "GeluFusion", "AttentionFusion"]
    del config["parameters"]
    triton_model(ort_backend, tiny_onnx / "1", config)
    assert seen["disabled_optimizers"] == ["GeluFusion", "AttentionFusion"]


def test_large_groups_run_in_runs_of_at_most_max_run_tokens():
    """Window mode: a batch of many full-length window rows runs in pieces, never more
    tokens a run than the largest batch of one-window texts."""
    session = RecordingSession()
    batches = [
        {"input_ids": np.full((40, 16), 1), "attention_mask": np.ones((40, 16), np.int64)},
        {"input_ids": np.full((30, 16), 2), "attention_mask": np.ones((30, 16), np.int64)},
    ]
    results = ort_backend.run_batched(session, batches, ["sum", "mean"], max_run_tokens=512)
    assert [call["input_ids"] for call in session.calls] == [(32, 16), (32, 16), (6, 16)]
    assert [r["sum"].ravel().tolist() for r in results] == [[16] * 40, [32] * 30]
    session.calls.clear()
    ort_backend.run_batched(session, batches, ["sum", "mean"])  # no limit: one run
    assert [call["input_ids"] for call in session.calls] == [(70, 16)]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("BATCH_ELEMENT_COUNT", [[4, 1, 6]]),
        ("BATCH_ACCUMULATED_ELEMENT_COUNT", [[4, 5, 11]]),
        ("BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", [[0, 4, 5, 11]]),
        ("BATCH_ITEM_SHAPE", [[4], [1], [3], [3]]),
        ("BATCH_ITEM_SHAPE_FLATTEN", [[4, 1, 3, 3]]),
    ],
)
def test_batch_inputs_are_computed_as_triton_computes_them(kind, expected):
    """backend src/backend_input_collector.cc: per request (counts) or per batch item
    (shapes without the batch dimension; a request of 2 rows gives 2 items)."""
    shapes = [(1, 4), (1, 1), (2, 3)]
    value = ort_backend.batch_input({"kind": kind, "data_type": "TYPE_INT32"}, shapes)
    assert value.dtype == np.int32
    assert np.atleast_2d(value).tolist() == expected
    shape = ort_backend.batch_input(
        {"kind": "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", "data_type": "TYPE_FP32"}, shapes
    )
    assert shape.shape == (6,) and shape.dtype == np.float32


FLAT_CONFIG = {
    "name": "m",
    "backend": "onnxruntime",
    "max_batch_size": 8,
    "dynamic_batching": {},
    "default_model_filename": "model_flat.onnx",
    "input": [
        {"name": n, "data_type": "TYPE_INT64", "dims": [-1], "allow_ragged_batch": True}
        for n in ("input_ids", "attention_mask")
    ],
    "batch_input": [
        {
            "kind": "BATCH_ITEM_SHAPE",
            "target_name": ["item_shape"],
            "data_type": "TYPE_INT32",
            "source_input": ["input_ids"],
        }
    ],
    "output": [
        {"name": "logits", "data_type": "TYPE_FP32", "dims": [1]},
        {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [1]},
    ],
}


def test_flat_ragged_batches_as_the_native_backend_in_process(tiny_onnx, triton_model, monkeypatch):
    """The container layout's ragged form (export --container-ragged): requests of any
    length in one `session.run`, flattened, with BATCH_ITEM_SHAPE; the strict runner
    (native backend's rules) accepts the configuration."""
    from export.flat_graph import add_flat_front

    add_flat_front(tiny_onnx / "1" / "model.onnx", tiny_onnx / "1" / "model_flat.onnx")
    monkeypatch.setenv("BERTH_RUNNER_STRICT", "1")
    model = triton_model(ort_backend, tiny_onnx / "1", FLAT_CONFIG)
    calls = []
    run = model.session.run
    model.session = type("Recording", (), {"run": lambda s, n, f: calls.append(f) or run(n, f)})()
    requests = [
        fake_pb_utils.InferenceRequest(
            input_ids=np.array([[1, 2, 3, 4]], np.int64), attention_mask=np.ones((1, 4), np.int64)
        ),
        fake_pb_utils.InferenceRequest(
            input_ids=np.array([[7]], np.int64), attention_mask=np.array([[1]], np.int64)
        ),
        fake_pb_utils.InferenceRequest(  # two windows, the second padded within its request
            input_ids=np.array([[4, 5], [1, 0]], np.int64),
            attention_mask=np.array([[1, 1], [1, 0]], np.int64),
        ),
    ]
    responses = model.execute(requests)
    assert [r.output_tensors["logits"].ravel().tolist() for r in responses] == [
        [10.0],
        [7.0],
        [9.0, 1.0],
    ]
    assert len(calls) == 1  # one run, as the native backend
    assert calls[0]["input_ids"].shape == (9,)
    assert calls[0]["item_shape"].ravel().tolist() == [4, 1, 2, 2]
