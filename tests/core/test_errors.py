"""berth_core.errors: one hierarchy, one exit-code table, one way every CLI reports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from berth_client.errors import InvalidInputError, ModelNotFoundError, ServerOverloadedError
from berth_core.errors import (
    EXIT_FAILED,
    EXIT_GATE,
    EXIT_INPUT,
    EXIT_OK,
    BerthError,
    CheckpointError,
    DataError,
    GateError,
    InputError,
    ServingError,
    run_command,
)
from export.errors import ExportInputError, ExportRefused
from serving.server import TritonServerError
from training.rundir import RunDirError


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InputError, EXIT_INPUT),
        (DataError, EXIT_INPUT),
        (CheckpointError, EXIT_INPUT),
        (RunDirError, EXIT_INPUT),
        (ExportInputError, EXIT_INPUT),
        (InvalidInputError, EXIT_INPUT),
        (GateError, EXIT_GATE),
        (ExportRefused, EXIT_GATE),
        (ServingError, EXIT_FAILED),
        (TritonServerError, EXIT_FAILED),
        (ServerOverloadedError, EXIT_FAILED),
        (BerthError, EXIT_FAILED),
    ],
)
def test_every_error_ends_a_command_with_its_tables_code(capsys, error, code):
    def fails() -> int:
        raise error("what to change")

    assert run_command(fails, "prog") == code
    assert capsys.readouterr().err == "prog: error: what to change\n"


def test_bad_input_is_still_a_value_error_and_a_bug_keeps_its_traceback():
    assert issubclass(InputError, ValueError) and issubclass(DataError, InputError)
    assert issubclass(ModelNotFoundError, ServingError)
    assert run_command(lambda: None) == EXIT_OK and run_command(lambda: 7) == 7

    def bug() -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_command(bug)


def test_the_client_side_of_the_contract_needs_no_tokenizer():
    """berth-client installs berth_core without `tokenizers`: the names, the rule, the
    errors and berth.json import without it."""
    code = (
        "import sys; sys.modules['tokenizers'] = None\n"
        "import berth_client, berth_core.checkpoint, berth_core.rule, berth_core.names\n"
        "from berth_core import encoding\n"
        "try:\n    encoding.load_tokenizer('x')\nexcept ImportError:\n    print('lazy')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lazy"
