"""Unit tests (no server): config parsing, input validation, chunking, the decision rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from berth_client import BerthError, InvalidInputError, ModelInfo, decide
from berth_client.client import normalize_url
from berth_client.model import (
    chunks,
    encode_texts,
    parse_id2label,
    parse_thresholds,
    validate_texts,
)
from berth_core.checkpoint import BerthConfig
from berth_core.rule import probabilities


def http_config(
    id2label, problem_type="single_label_classification", thresholds=None, n=2, max_batch_size=8
):
    params = {
        "id2label": {"string_value": json.dumps(id2label)},
        "problem_type": {"string_value": problem_type},
    }
    if thresholds is not None:
        params["thresholds"] = {"string_value": json.dumps(thresholds)}
    return {
        "name": "sentiment",
        "max_batch_size": max_batch_size,
        "input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}],
        "output": [
            {"name": "LOGITS", "data_type": "TYPE_FP32", "dims": [n]},
            {"name": "PROBABILITIES", "data_type": "TYPE_FP32", "dims": [n]},
        ],
        "parameters": params,
    }


def test_parse_http_config_with_list_labels():
    info = ModelInfo.from_config(http_config(["negative", "positive"]))
    assert info.labels == ["negative", "positive"]
    assert not info.multi_label
    assert info.max_batch_size == 8 and info.chunk_size == 8
    assert info.input_name == "TEXT"


def test_parse_grpc_json_config_with_object_labels_and_thresholds():
    config = http_config(
        {"2": "c", "0": "a", "1": "b"}, "multi_label_classification", [0.3, 0.5, 0.7], n=3
    )
    config["output"][1]["dims"] = ["3"]  # gRPC JSON renders int64 dims as strings
    info = ModelInfo.from_config({"config": config})
    assert info.labels == ["a", "b", "c"]
    assert info.multi_label
    assert info.decision_thresholds() == [0.3, 0.5, 0.7]


def test_missing_parameters_fall_back_to_defaults():
    config = http_config(["x"], n=3)
    config["parameters"] = {}
    info = ModelInfo.from_config(config)
    assert info.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert info.problem_type == "single_label_classification"
    assert info.decision_thresholds() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    "raw, message",
    [
        ("not json", "not JSON"),
        ('{"a": "x"}', "integers"),
        ('{"0": "a", "2": "b"}', "0..n-1"),
        ('["a", "b", "c"]', "3 labels"),
        ("42", "list or an object"),
    ],
)
def test_bad_id2label_is_reported(raw, message):
    with pytest.raises(BerthError, match=message):
        parse_id2label(raw, 2, "m")


def test_thresholds_parsing():
    assert parse_thresholds("", 2) == []
    assert parse_thresholds("[]", 2) == []
    assert parse_thresholds("0.4", 2) == [0.4, 0.4]
    with pytest.raises(BerthError, match="expected 2 thresholds"):
        parse_thresholds("[0.1]", 2)


def test_config_without_probabilities_is_not_a_berth_model():
    config = http_config(["a", "b"])
    config["output"] = config["output"][:1]
    with pytest.raises(BerthError, match="no PROBABILITIES output"):
        ModelInfo.from_config(config)


def test_unknown_problem_type():
    with pytest.raises(BerthError, match="problem_type"):
        ModelInfo.from_config(http_config(["a", "b"], "regression"))


def test_validate_texts():
    assert validate_texts("one") == (["one"], True)
    assert validate_texts(["a", "b"]) == (["a", "b"], False)
    assert validate_texts(("a",)) == (["a"], False)
    assert validate_texts(t for t in ["g"]) == (["g"], False)
    assert validate_texts([]) == ([], False)
    with pytest.raises(InvalidInputError, match=r"texts\[1\] must be a str, got int"):
        validate_texts(["a", 3])
    with pytest.raises(InvalidInputError, match=r"texts\[0\] must be a str, got NoneType"):
        validate_texts([None])
    with pytest.raises(InvalidInputError, match="bytes"):
        validate_texts(b"abc")
    with pytest.raises(InvalidInputError, match="got int"):
        validate_texts(5)
    with pytest.raises(InvalidInputError, match="got dict"):
        validate_texts({"text": "a"})


def test_encode_texts_is_utf8_rows():
    data = encode_texts(["héllo", ""])
    assert data.shape == (2, 1) and data.dtype == object
    assert data[0, 0] == "héllo".encode()
    with pytest.raises(InvalidInputError, match="not valid Unicode"):
        encode_texts(["ok", "\ud800"])


def test_chunks():
    assert [list(c) for c in chunks(list("abcdefg"), 3)] == [
        ["a", "b", "c"],
        ["d", "e", "f"],
        ["g"],
    ]
    assert list(chunks([], 4)) == []
    with pytest.raises(ValueError):
        list(chunks(["a"], 0))


def test_normalize_url():
    assert normalize_url("localhost:8000", "http") == "localhost:8000"
    assert normalize_url("http://host:9000/", "http") == "host:9000"
    assert normalize_url("host", "grpc") == "host:8001"
    assert normalize_url(None, "http") == "localhost:8000"
    with pytest.raises(ValueError, match="protocol"):
        normalize_url("h:1", "ftp")


def test_decide_single_label():
    info = ModelInfo(name="m", labels=["negative", "positive"])
    [record] = decide(np.array([[0.2, 0.8]], dtype=np.float32), info)
    assert record["label"] == "positive"
    assert record["confidence"] == pytest.approx(0.8)
    assert set(record) == {"label", "confidence", "probabilities"}
    assert record["probabilities"] == pytest.approx({"negative": 0.2, "positive": 0.8})


def test_decide_multi_label():
    info = ModelInfo(
        name="m",
        labels=["a", "b", "c"],
        problem_type="multi_label_classification",
        thresholds=[0.5, 0.9, 0.3],
    )
    rows = np.array([[0.6, 0.85, 0.4], [0.1, 0.2, 0.25], [0.5, 0.95, 0.0]], dtype=np.float32)
    first, none, edge = decide(rows, info)
    assert first["labels"] == ["a", "c"] and first["label"] == "a"
    assert first["confidence"] == pytest.approx(0.6)
    assert none["labels"] == [] and none["label"] is None
    assert none["confidence"] == pytest.approx(0.25)  # the highest probability
    assert edge["labels"] == ["a", "b"] and edge["label"] == "b"  # >= threshold counts


@pytest.mark.parametrize("multi", [False, True])
def test_decide_matches_the_reference_predictor(multi):
    labels = ["w", "x", "y", "z"]
    problem = "multi_label_classification" if multi else "single_label_classification"
    thresholds = [0.3, 0.5, 0.6, 0.9] if multi else None
    config = BerthConfig(labels=labels, problem_type=problem, thresholds=thresholds)
    params = {"id2label": json.dumps(labels), "problem_type": problem}
    if thresholds:
        params["thresholds"] = json.dumps(thresholds)
    served = {
        "name": "m",
        "parameters": {k: {"string_value": v} for k, v in params.items()},
        "output": [{"name": "PROBABILITIES", "dims": [4]}],
    }
    info = ModelInfo.from_config(served)  # what the client learns from the server
    rng = np.random.default_rng(0)
    probs = probabilities(rng.normal(size=(64, 4)).astype(np.float32) * 3, multi)
    assert decide(probs, info) == decide(probs, config)  # berth.json and served config agree
    if multi:
        assert decide(probs, info) != decide(
            probs, BerthConfig(labels=labels, problem_type=problem)
        )
