"""Why an export stops: the user's input, or a gate. `python -m export` maps them to
exit codes 2 and 3 (berth_core.errors)."""

from __future__ import annotations

from berth_core.errors import GateError, InputError


class ExportRefused(GateError):
    """A gate (parity, accuracy) refused the export; nothing was published."""


class ExportInputError(InputError):
    """What the user asked for cannot be exported: a bad flag value, a missing or
    unreadable checkpoint or held-out file. `python -m export` exits 2 on it."""
