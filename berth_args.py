"""Command lines from configuration dataclasses: one mechanism for every berth stage.

Each dataclass field is one flag, `--field-name`, described by its metadata (`arg(...)`
builds it): help text, argument group, choices, an explicit flag name, a type or action
argparse should use instead of the annotation's. A field whose type is itself a
dataclass is a group of flags composed in: its fields become flags of the same parser
(with `arg(fields={name: arg(...)})` choosing and describing which ones; their defaults
are those of the holder's default instance) and parse back into one instance of it.

    bool            False: --flag (store_true); True: --flag/--no-flag; with
                    flag="--no-name": --no-name (store_true) that turns the field off
    X | None        a value of X, or the default (None) when not given
    Literal[a, b]   choices a, b
    list[X]         one or more values (nargs="+"), or action="append"
    tuple[X, ...]   the same, parsed back to a tuple

`arg(positional=True)` makes the field a positional argument instead of a flag.
`option(default, help, group, ...)` declares such a field in one call: its default (or
`factory=`) and `arg(help, group, ...)` as its metadata. `@groups({...})` on a class
files its fields in argument groups by position, as sections of the class.

Standard library only: serving and loadtest import it without torch or transformers.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def arg(
    help: str = "",
    group: str | None = None,
    *,
    choices: Sequence[object] | None = None,
    flag: str | None = None,
    type: Callable[[str], object] | None = None,
    action: str | None = None,
    metavar: str | None = None,
    required: bool = False,
    cli: bool = True,
    positional: bool = False,
    fields: Mapping[str, dict] | None = None,
) -> dict:
    """Field metadata describing the field's flag (see the module docstring).
    `cli=False` keeps a field off the command line."""
    meta: dict[str, object] = {"help": help, "cli": cli}
    for key, value in (
        ("group", group),
        ("choices", choices),
        ("flag", flag),
        ("type", type),
        ("action", action),
        ("metavar", metavar),
        ("fields", fields),
    ):
        if value is not None:
            meta[key] = value
    if required:
        meta["required"] = True
    if positional:
        meta["positional"] = True
    return meta


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    group: str | None = None,
    *,
    factory: Callable[[], object] | None = None,
    **arg_kwargs: Any,
) -> Any:
    """A configuration field that is one flag: `dataclasses.field` with `default` (or
    `factory`, its default_factory; neither: a required flag) and `arg(help, group,
    **arg_kwargs)` as its metadata."""
    metadata = arg(help, group, **arg_kwargs)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def groups(starts: Mapping[str, str | None]) -> Callable[[type], type]:
    """Class decorator (above `@dataclass`) that files the class's own fields in argument
    groups by position: each group runs from the field `starts` names to the next one
    named (None: argparse's own "options"), so no `option(...)` repeats its group. A
    field given its own group keeps it."""

    def apply(cls: type) -> type:
        declared = list(inspect.get_annotations(cls))
        unknown = set(starts) - set(declared)
        if unknown:
            raise TypeError(f"{cls.__name__} declares no field {sorted(unknown)}")
        group = None
        for name in declared:
            group = starts.get(name, group)
            f = cls.__dataclass_fields__.get(name)
            if f is not None and "group" not in f.metadata and group is not None:
                f.metadata = types.MappingProxyType({**f.metadata, "group": group})
        return cls

    return apply


@dataclasses.dataclass(frozen=True)
class _Option:
    """One flag: the field it fills and how argparse reads it."""

    name: str  # the field's name
    dest: str  # the namespace attribute argparse writes
    invert: bool  # a --no-name flag: the field is `not` the parsed value


def _unwrap(tp) -> tuple[object, str | None]:
    """(element type, container) for X, X | None, list[X], tuple[X, ...], Literal[...]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(args[0])
    if origin in (list, tuple):
        return typing.get_args(tp)[0], origin.__name__
    return tp, None


def _default(f: dataclasses.Field) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _show_default(default: object) -> bool:
    return default not in (None, [], (), "", False)


def _value_kwargs(name: str, base, container: str | None, meta: dict) -> dict[str, Any]:
    """add_argument's choices, type, action, nargs and metavar for a non-bool field."""
    kwargs: dict[str, Any] = {}
    choices = meta.get("choices")
    if typing.get_origin(base) is typing.Literal:
        choices = choices or typing.get_args(base)
        base = type(typing.get_args(base)[0])
    if choices is not None:
        kwargs["choices"] = choices
    kwargs["type"] = meta.get("type", base)
    if meta.get("action"):
        kwargs["action"] = meta["action"]
    elif container:
        kwargs["nargs"] = "+"
        if not meta.get("positional"):
            kwargs["metavar"] = name.upper().rstrip("S")
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    return kwargs


class HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph texts (a description); keeps texts laid out in lines (an
    epilog of examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip("\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class ConfigParser(argparse.ArgumentParser):
    """An ArgumentParser built from a configuration dataclass; `parse_config` returns an
    instance of it."""

    def __init__(self, cls: type, *, show_defaults: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)
        self.config_class = cls
        self.show_defaults = show_defaults
        self._groups: dict[str, argparse._ArgumentGroup] = {}
        self._options: dict[type, list[_Option]] = {}
        # a composed class: its holder's default instance (its flags' defaults)
        self._composed_defaults: dict[type, object] = {}
        self._add_fields(cls, {})

    # --------------------------------------------------------------- building

    def _group(self, name: str | None):
        if name is None:  # argparse's own "options"
            return self
        if name not in self._groups:
            self._groups[name] = self.add_argument_group(name)
        return self._groups[name]

    def _add_fields(
        self, cls: type, described: Mapping[str, dict] | None, defaults: object = None
    ) -> None:
        hints = typing.get_type_hints(cls)
        options = self._options.setdefault(cls, [])
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            meta = dict(f.metadata)
            if described:  # a composed class: only the fields its holder describes
                if f.name not in described:
                    continue
                meta.update(described[f.name])
            if not meta.get("cli", True):
                continue
            if _is_dataclass_type(hints[f.name]):
                inner = _default(f)  # the holder's default instance
                self._composed_defaults[hints[f.name]] = inner
                self._add_fields(hints[f.name], meta.get("fields") or {}, inner)
                continue
            default = _default(f) if defaults is None else getattr(defaults, f.name)
            options.append(self._add_field(f, hints[f.name], meta, default))

    def _add_field(self, f: dataclasses.Field, hint, meta: dict, default: object) -> _Option:
        group = self._group(meta.get("group"))
        flag = str(meta.get("flag") or "--" + f.name.replace("_", "-"))
        required = bool(meta.get("required")) or (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        help_text = str(meta.get("help", ""))
        base, container = _unwrap(hint)
        if base is bool and container is None:
            return self._add_bool(group, f.name, flag, bool(default), help_text)
        kwargs: dict[str, Any] = {"dest": f.name, "default": default}
        if meta.get("positional"):  # argparse: a positional's name is its dest
            flag, kwargs = f.name, {"default": default}
        elif required:
            kwargs["required"] = True
        kwargs.update(_value_kwargs(f.name, base, container, meta))
        if self.show_defaults and _show_default(default) and not required:
            shown = ",".join(map(str, default)) if container else default
            help_text += f" (default: {shown})" if help_text else f"(default: {shown})"
        group.add_argument(flag, help=help_text, **kwargs)
        return _Option(f.name, f.name, invert=False)

    @staticmethod
    def _add_bool(group, name: str, flag: str, default: bool, help_text: str) -> _Option:
        if flag == "--no-" + name.replace("_", "-") and default:
            # the field is on unless --no-<name> is given: one flag, as the field's opposite
            group.add_argument(flag, action="store_true", dest="no_" + name, help=help_text)
            return _Option(name, "no_" + name, invert=True)
        if default:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=True, help=help_text
            )
        else:
            group.add_argument(flag, action="store_true", dest=name, help=help_text)
        return _Option(name, name, invert=False)

    # ---------------------------------------------------------------- parsing

    def config_from(self, namespace: argparse.Namespace, cls: type | None = None):
        """The configuration instance a parsed namespace describes."""
        cls = cls or self.config_class
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for option in self._options.get(cls, []):
            value = getattr(namespace, option.dest)
            if isinstance(value, list) and _unwrap(hints[option.name])[1] == "tuple":
                value = tuple(value)
            values[option.name] = not value if option.invert else value
        for f in dataclasses.fields(cls):
            if f.init and _is_dataclass_type(hints[f.name]) and hints[f.name] in self._options:
                values[f.name] = self.config_from(namespace, hints[f.name])
        if cls in self._composed_defaults:  # the holder's defaults for what has no flag
            return dataclasses.replace(self._composed_defaults[cls], **values)
        return cls(**values)

    def parse_config(self, argv: Sequence[str] | None = None):
        return self.config_from(self.parse_args(argv))


def build_parser(cls: type, prog: str, description: str = "", epilog: str = "", **kwargs: Any):
    """The parser of `cls`'s flags (a ConfigParser)."""
    return ConfigParser(cls, prog=prog, description=description, epilog=epilog, **kwargs)


def parse_config(
    cls: type, argv: Sequence[str] | None, prog: str, description: str = "", epilog: str = ""
):
    """Parse `argv` into an instance of `cls`."""
    return build_parser(cls, prog, description, epilog).parse_config(argv)
