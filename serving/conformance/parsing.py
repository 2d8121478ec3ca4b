"""Readers of a configuration dict (dims, reshape, parameters) and the backend's value
parsers (backend_common.cc ParseIntValue, ParseUnsignedLongLongValue, ParseBoolValue)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping


def _shape(dims: Iterable[int]) -> str:
    """ShapeToString (backend_common.cc) and DimsListToString (common model_config.cc)."""
    return "[" + ",".join(str(d) for d in dims) + "]"


def _io_dims(io: Mapping) -> list[int]:
    """The shape the backend validates: `reshape.shape` when a reshape is given."""
    reshape = io.get("reshape")
    return [int(d) for d in (reshape.get("shape") or [])] if reshape is not None else _dims(io)


def _dims(io: Mapping) -> list[int]:
    return [int(d) for d in io.get("dims") or []]


def _parameter(params: Mapping, key: str) -> str:
    value = params[key]
    return value.get("string_value", "") if isinstance(value, Mapping) else str(value)


_C_INTEGER = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def parse_int(value: str) -> tuple[int | None, str | None]:
    """ParseIntValue (backend_common.cc): `std::stoi`, which takes the longest integer
    prefix ("4x" is 4) and fails on none; its std::out_of_range is not caught."""
    match = _C_INTEGER.match(value)
    if match is None:
        return None, f"failed to convert '{value}' to integral number"
    number = int(match.group(1))
    if not -(2**31) <= number < 2**31:
        return None, f"'{value}' is out of range for std::stoi (std::out_of_range, uncaught)"
    return number, None


def parse_unsigned(value: str) -> tuple[int | None, str | None]:
    """ParseUnsignedLongLongValue: `std::stoull` (a leading '-' wraps around)."""
    match = _C_INTEGER.match(value)
    if match is None:
        return None, f"failed to convert '{value}' to unsigned long long integral number"
    number = int(match.group(1))
    if abs(number) >= 2**64:
        return None, f"'{value}' is out of range for std::stoull (std::out_of_range, uncaught)"
    return number % 2**64, None


def parse_bool(value: str) -> tuple[bool | None, str | None]:
    """ParseBoolValue: true/on/1 or false/off/0, any case."""
    lowered = value.lower()
    if lowered in ("true", "on", "1", "false", "off", "0"):
        return lowered in ("true", "on", "1"), None
    return None, f"failed to convert '{value}' to boolean"
