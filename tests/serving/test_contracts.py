"""The served models import berth's runtime contract (`berth_core`) from the copy next to
them, as the Triton stub loads them in the container, and nothing else of berth's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import berth_core
from berth_core import names as contracts

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("tokenizer_model", "aggregate_model", "onnx_runner")

# The stub appends the model's directory to sys.path and imports `model` from there. As
# in the container, berth is not installed: `python -S` skips the .pth files (the
# editable installs), site-packages is added for numpy alone.
STUB = """
import sys, sysconfig
sys.path = [p for p in sys.path if p not in ("", {root!r})]
sys.path.append(sysconfig.get_paths()["purelib"])
sys.path.append({directory!r})
import model
print(model.contracts.__file__, model.encoding.__file__)
"""


@pytest.mark.parametrize("name", MODELS)
def test_model_imports_the_contracts_copied_next_to_it(tmp_path, name):
    version = tmp_path / "1"
    version.mkdir()
    shutil.copy(ROOT / "serving" / name / "model.py", version / "model.py")
    berth_core.copy_to(version)
    code = STUB.format(root=str(ROOT), directory=str(version))
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    names, encoding = (Path(p) for p in out.stdout.split())
    assert (names, encoding) == (
        version / "berth_core/names.py",
        version / "berth_core/encoding.py",
    )


def test_without_the_copy_the_stub_cannot_import_berth(tmp_path):
    """The check above is real: without `berth_core` next to it, model.py fails there."""
    version = tmp_path / "1"
    version.mkdir()
    shutil.copy(ROOT / "serving/tokenizer_model/model.py", version / "model.py")
    code = STUB.format(root=str(ROOT), directory=str(version))
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "No module named 'berth_core'" in out.stderr


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


def test_number_parameter_parses_or_names_the_parameter():
    config = {"parameters": {"rate": {"string_value": "2.5"}, "n": {"string_value": "x"}}}
    assert contracts.number_parameter(config, "rate", "0", float) == 2.5
    assert contracts.number_parameter(config, "missing", "7") == 7
    with pytest.raises(ValueError, match="parameter 'n' must be an integer, got 'x'"):
        contracts.number_parameter(config, "n", "0")


def test_the_client_spells_the_public_tensors_as_the_contracts_do():
    """berth-client reads the public tensor names from berth_core; the load test's
    locustfile uses the client's."""
    from berth_client import model as client_model

    assert client_model.DEFAULT_INPUT == contracts.TEXT
    assert client_model.PROBABILITIES == contracts.PROBABILITIES
    assert client_model.LOGITS == contracts.LOGITS
