"""Arrows run one way: a package imports only from the layers below it.

    berth_core, berth_args   the runtime contract; the flag parser
    berth_client             talks to a served model
    training                 checkpoints
    export                   ONNX graphs, the published repository
    serving                  tritonserver and the served models
    loadtest, demo           drive all of the above

Function-level (lazy) imports count as much as module-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "berth_core": 0,
    "berth_args": 0,
    "berth_client": 1,
    "training": 2,
    "export": 3,
    "serving": 4,
    "loadtest": 5,
    "demo": 6,
}
SOURCES = {
    "berth_core": ROOT / "core/berth_core",
    "berth_args": ROOT / "berth_args.py",
    "berth_client": ROOT / "client/berth_client",
    "training": ROOT / "training",
    "export": ROOT / "export",
    "serving": ROOT / "serving",
    "loadtest": ROOT / "loadtest",
    "demo": ROOT / "demo.py",
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every import in a file that names a berth layer."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in LAYERS}
    return found


def shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def violations(package: str) -> list[str]:
    source = SOURCES[package]
    files = [source] if source.is_file() else sorted(source.rglob("*.py"))
    return [
        f"{shown(path)}:{line} imports {target} (layer {LAYERS[target]}) "
        f"from {package} (layer {LAYERS[package]})"
        for path in files
        for target, line in sorted(imported_packages(path))
        if target != package and LAYERS[target] >= LAYERS[package]
    ]


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_import_from_a_layer_above(package):
    assert violations(package) == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """A training module that imports export (even inside a function) is reported."""
    bad = tmp_path / "training"
    bad.mkdir()
    (bad / "m.py").write_text("def f():\n    from export.evaluate import OnnxClassifier\n")
    monkeypatch.setitem(SOURCES, "training", bad)
    expected = f"{bad}/m.py:2 imports export (layer 3) from training (layer 2)"
    assert violations("training") == [expected]
