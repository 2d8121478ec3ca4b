"""Every stage's command-line flags keep their names, kinds and defaults.

The golden record, tests/data/cli_flags.json, lists for each CLI every option string
with its dest, action kind, nargs, type, default, choices and whether it is required.
Help texts may change freely; anything else that changes fails here. After an
intended change of a flag, rewrite the record and review its diff:

    .venv/bin/python -m tests.test_cli_flags --write
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path
from typing import Literal
from unittest import mock

import pytest

from berth_args import ConfigParser, arg, groups, option

GOLDEN = Path(__file__).parent / "data" / "cli_flags.json"

# name → (module whose main(argv) parses the command line, argv before the flags)
CLIS: dict[str, tuple[str, list[str]]] = {
    "python -m training": ("training.cli", []),
    "python -m training mlm": ("training.cli", ["mlm"]),
    "python -m training seeds": ("training.cli", ["seeds"]),
    "python -m training distill": ("training.cli", ["distill"]),
    "python -m training.predict": ("training.predict", []),
    "python -m export.agreement": ("export.agreement", []),
    "python -m export": ("export.__main__", []),
    "python -m export.long_texts": ("export.long_texts", []),
    "python -m serving": ("serving.__main__", []),
    "python -m serving.check_repository": ("serving.check_repository", []),
    "python -m loadtest": ("loadtest.run", []),
    "python -m loadtest.compare": ("loadtest.compare", []),
    "python -m loadtest.gpu_model": ("loadtest.gpu_model", []),
    "python -m loadtest.outside_texts": ("loadtest.outside_texts", []),
    "python -m loadtest.reference_service": ("loadtest.reference_service", []),
}


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def capture_parser(module: str, argv: list[str]) -> argparse.ArgumentParser:
    """The parser `module.main(argv)` builds: caught when it starts parsing."""

    def parse_known_args(self, args=None, namespace=None):
        raise _Captured(self)

    main = importlib.import_module(module).main
    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", parse_known_args):
        try:
            main(list(argv))
        except _Captured as captured:
            return captured.parser
    raise AssertionError(f"{module}.main({argv}) parsed no command line")


def _value(value):
    if isinstance(value, Path):
        return {"path": str(value)}
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    if isinstance(value, list):
        return [_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _kind(action: argparse.Action) -> str:
    names = {
        argparse._StoreAction: "store",
        argparse._StoreTrueAction: "store_true",
        argparse._StoreFalseAction: "store_false",
        argparse._StoreConstAction: "store_const",
        argparse._AppendAction: "append",
        argparse.BooleanOptionalAction: "boolean_optional",
    }
    return names.get(type(action), type(action).__name__)


def describe(parser: argparse.ArgumentParser) -> dict[str, dict]:
    """Option string (or positional dest) → what it means to the parser."""
    flags: dict[str, dict] = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        record = {
            "option_strings": sorted(action.option_strings),
            "dest": action.dest,
            "action": _kind(action),
            "nargs": action.nargs,
            # no type: the string as given, the same as type=str
            "type": ("str" if action.nargs != 0 else None)
            if action.type is None
            else getattr(action.type, "__name__", "?"),
            "default": _value(action.default),
            "choices": None if action.choices is None else _value(list(action.choices)),
            "required": bool(action.required),
        }
        key = action.option_strings[0] if action.option_strings else action.dest
        flags[key] = record
    return dict(sorted(flags.items()))


def current() -> dict[str, dict]:
    return {name: describe(capture_parser(module, argv)) for name, (module, argv) in CLIS.items()}


def golden_text(record: dict[str, dict]) -> str:
    """JSON with one line per flag, so that a diff shows which flag changed."""
    lines = ["{"]
    for i, (name, flags) in enumerate(record.items()):
        lines.append(f" {json.dumps(name)}: {{")
        for j, (flag, info) in enumerate(flags.items()):
            comma = "," if j < len(flags) - 1 else ""
            lines.append(f"  {json.dumps(flag)}: {json.dumps(info, ensure_ascii=False)}{comma}")
        lines.append(" }" + ("," if i < len(record) - 1 else ""))
    return "\n".join([*lines, "}"]) + "\n"


@pytest.fixture(scope="module")
def golden() -> dict[str, dict]:
    return json.loads(GOLDEN.read_text())


def test_every_cli_is_recorded(golden):
    assert sorted(golden) == sorted(CLIS)


@pytest.mark.parametrize("name", sorted(CLIS))
def test_flags_unchanged(name, golden):
    module, argv = CLIS[name]
    now = describe(capture_parser(module, argv))
    was = golden[name]
    assert sorted(now) == sorted(was), f"{name}: flags added or removed"
    for flag, record in was.items():
        assert now[flag] == record, f"{name} {flag}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_cli_flags --write")
    GOLDEN.write_text(golden_text(current()))
    print(f"wrote {GOLDEN}")


def test_export_exits_2_only_on_input_errors(tmp_path, monkeypatch):
    """Bad flag values and a missing checkpoint are the user's (exit 2); any other
    exception is a bug and propagates with its traceback."""
    import export.pipeline
    from export.__main__ import main

    assert main(["--variants", "fp16"]) == 2
    assert main(["--max-batch-size", "0"]) == 2
    assert main(["--checkpoint", str(tmp_path / "missing")]) == 2

    def broken(cfg):
        raise ValueError("an internal bug")

    monkeypatch.setattr(export.pipeline, "run_export", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["--checkpoint", str(tmp_path)])


@dataclasses.dataclass
class _Inner:
    on: bool = True
    size: int = 4
    hidden: str = "kept"


@dataclasses.dataclass
class _Outer:
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)
    inner: _Inner = dataclasses.field(
        default_factory=_Inner,
        metadata=arg(fields={"on": arg("", flag="--no-on"), "size": arg("size")}),
    )


def test_config_parser_types():
    """berth_args: Literal → choices, tuple → nargs+ back to a tuple, a composed
    dataclass → its described fields, --no-<name> → the field switched off."""
    parser = ConfigParser(_Outer, prog="t")
    assert parser.parse_config([]) == _Outer()
    got = parser.parse_config(["--mode", "b", "--sizes", "3", "--no-on", "--size", "9"])
    assert got == _Outer("b", (3,), _Inner(on=False, size=9))
    with pytest.raises(SystemExit):
        parser.parse_args(["--hidden", "x"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])


@groups({"first": "one", "third": "two", "fifth": None})
@dataclasses.dataclass
class _Sectioned:
    first: int = option(1)
    second: int = option(2, group="own")
    third: int = option(3)
    fourth: int = option(4)
    fifth: int = option(5)


@dataclasses.dataclass
class _SectionedChild(_Sectioned):
    sixth: int = option(6, group="child")


def _groups_of(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    return {
        g.title: [a.dest for a in g._group_actions if a.dest != "help"]
        for g in parser._action_groups
        if g._group_actions
    }


def test_groups_file_fields_by_position():
    """berth_args.groups: a section runs to the next named field (None: no group), an
    explicit group wins, a subclass keeps its base's sections, and a misspelt field name
    fails when the class is defined."""
    got = _groups_of(ConfigParser(_SectionedChild, prog="t"))
    assert got["one"] == ["first"]
    assert got["own"] == ["second"]
    assert got["two"] == ["third", "fourth"]
    assert got["child"] == ["sixth"]
    assert "fifth" in got["options"]
    with pytest.raises(TypeError, match=r"declares no field \['thrid'\]"):
        groups({"thrid": "x"})(_Sectioned)
