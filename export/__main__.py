"""`python -m export`: see export/pipeline.py and `python -m export --help`.

Exit codes (berth_core.errors): 0 published (or checked with --no-publish), 2 the input
cannot be exported (a bad flag value, a missing checkpoint or held-out file: an
InputError), 3 a gate refused the export (GateError). Anything else is a bug and ends
with its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from berth_core.errors import run_command
    from export.pipeline import parse_args, run_export

    def export() -> None:
        run_export(parse_args(argv))

    return run_command(export)


if __name__ == "__main__":
    sys.exit(main())
