"""No function in the product's packages is longer than 80 lines.

ruff (pyproject.toml) bounds statements (PLR0915) and branches (C901) but has no
line count; this walks the sources with `ast` and names each function over the limit.
The Python-backend model.py sources under serving/ are walked with the rest; their
published copies (model_repository/*/<n>/) are not.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("training", "export", "serving", "loadtest")
MAX_LINES = 80


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def long_functions(path: Path, root: Path = ROOT, max_lines: int = MAX_LINES) -> list[str]:
    """'file:line name (N lines)' for each function in `path` longer than `max_lines`,
    its decorators included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = node.end_lineno - start + 1
            if lines > max_lines:
                found.append(f"{path.relative_to(root)}:{start} {node.name} ({lines} lines)")
    return found


def test_every_package_is_walked():
    walked = {path.relative_to(ROOT).parts[0] for path in sources()}
    assert walked == set(PACKAGES)
    assert ROOT / "serving" / "onnx_runner" / "model.py" in sources()


def test_no_function_over_80_lines():
    too_long = [entry for path in sources() for entry in long_functions(path)]
    assert not too_long, f"functions over {MAX_LINES} lines: " + "; ".join(too_long)


def test_a_long_function_is_named(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 1))
    source = tmp_path / "long.py"
    source.write_text(
        f"def fits():\n{body}\n\n\n@staticmethod\ndef too_long():\n{body}\n    return 0\n"
    )
    assert long_functions(source, tmp_path) == ["long.py:83 too_long (82 lines)"]
