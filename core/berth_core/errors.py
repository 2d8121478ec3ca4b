"""One error hierarchy for berth, and the exit code each kind of error ends a command with.

    BerthError                      anything berth refuses on purpose      exit 1
    ├── InputError (ValueError)     a flag, file or text berth cannot take  exit 2
    │   ├── DataError               a data file: names the file, row, fix  exit 2
    │   └── CheckpointError         not a berth checkpoint / bad berth.json exit 2
    ├── GateError                   an export gate refused; nothing published exit 3
    └── ServingError                a server did not start, answer or stay up exit 1

berth-client's errors (`berth_client.errors`) derive from these: its bad-input error is
an `InputError`, its server errors are `ServingError`s. Anything else that escapes a
command is a bug and ends with its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILED = 1  # a check failed (SLO, health, a seed run) or the server failed
EXIT_INPUT = 2
EXIT_GATE = 3


class BerthError(Exception):
    """Base of every error berth raises on purpose. `transient`: worth retrying."""

    transient = False
    exit_code = EXIT_FAILED


class InputError(BerthError, ValueError):
    """What the user gave cannot be used; the message says what to change."""

    exit_code = EXIT_INPUT


class DataError(InputError):
    """Bad input data: the message names the file, the row and the fix."""


class CheckpointError(InputError):
    """A directory is not a berth checkpoint, or its berth.json is inconsistent."""


class GateError(BerthError):
    """An export gate (parity, accuracy) refused the export; nothing was published."""

    exit_code = EXIT_GATE


class ServingError(BerthError):
    """A server could not be started, did not become ready, or failed a request."""


def report(exc: BerthError, prog: str = "") -> int:
    """Print `exc` as one `error: …` line on stderr; → its exit code."""
    prefix = f"{prog}: " if prog else ""
    print(f"{prefix}error: {exc}", file=sys.stderr)
    return exc.exit_code


def run_command(command: Callable[[], int | None], prog: str = "") -> int:
    """Run a CLI's body (→ its exit code; None is 0). A `BerthError` becomes one
    `error: …` line and its exit code; anything else propagates with its traceback."""
    try:
        code = command()
    except BerthError as exc:
        return report(exc, prog)
    return EXIT_OK if code is None else code
