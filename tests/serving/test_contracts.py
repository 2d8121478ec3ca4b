"""The served models import the names and helpers they share (`berth_contracts.py`)
from their own directory, as the Triton stub loads them, and nothing else of berth's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serving import berth_contracts as contracts

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("tokenizer_model", "aggregate_model", "onnxruntime_backend")

# The stub appends the model's directory to sys.path and imports `model` from there,
# with berth's source tree nowhere on the path.
STUB = """
import sys
sys.path = [p for p in sys.path if p not in ("", {root!r})]
sys.path.append({directory!r})
import model
print(model.contracts.__file__)
"""


@pytest.mark.parametrize("name", MODELS)
def test_model_imports_the_contracts_copied_next_to_it(tmp_path, name):
    version = tmp_path / "1"
    version.mkdir()
    shutil.copy(ROOT / "serving" / name / "model.py", version / "model.py")
    shutil.copy(ROOT / "serving/berth_contracts.py", version / "berth_contracts.py")
    code = STUB.format(root=str(ROOT), directory=str(version))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert Path(out.stdout.strip()) == version / "berth_contracts.py"


def test_model_names():
    assert contracts.tokenizer_model_name("news") == "news_tokenizer"
    assert contracts.classifier_model_name("news", "int8") == "news_onnx_int8"
    assert contracts.aggregate_model_name("news") == "news_aggregate"
    pattern = contracts.classifier_model_pattern("news")
    assert pattern.fullmatch("news_onnx_fp16")
    assert not pattern.fullmatch("news_tokenizer") and not pattern.fullmatch("newsy_onnx_int8")


def test_parameter_reads_the_backend_json():
    config = {"parameters": {"a": {"string_value": "1"}, "b": {"string_value": ""}, "c": "x"}}
    assert contracts.parameter(config, "a") == "1"
    assert contracts.parameter(config, "b", "default") == "default"
    assert contracts.parameter(config, "c") == "x"
    assert contracts.parameter({}, "missing") is None


def test_the_client_spells_the_public_tensors_as_the_contracts_do():
    """berth-client installs alone (no berth packages), so it keeps its own copy of the
    public tensor names; the load test's locustfile uses the client's."""
    from berth_client import model as client_model

    assert client_model.DEFAULT_INPUT == contracts.TEXT
    assert client_model.PROBABILITIES == contracts.PROBABILITIES
    assert client_model.LOGITS == contracts.LOGITS
