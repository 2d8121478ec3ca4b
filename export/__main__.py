"""`python -m export`: see export/pipeline.py and `python -m export --help`.

Exit codes: 0 published (or checked with --no-publish), 2 the input cannot be exported
(a bad flag value, a missing checkpoint or held-out file: ExportInputError), 3 a gate
refused the export (ExportRefused). Anything else is a bug and ends with its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from export.pipeline import ExportInputError, ExportRefused, parse_args, run_export

    try:
        run_export(parse_args(argv))
    except ExportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
