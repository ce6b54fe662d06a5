"""Values to write, checked against the tag's Logix type before anything reaches the wire."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from connectors.logix.resolve import INTEGER_BITS, Resolved, type_name
from gateway.models import Value
from gateway.writes import PlcType, boolean, floating, integer, string, unsupported

REAL_MAX = 3.4028234663852886e38  # the largest finite 32-bit float


def plc_type_of(resolved: Resolved) -> PlcType:
    """What the write rules need to know of a resolved tag's Logix type."""
    data_type = resolved.data_type
    if isinstance(data_type, dict):
        if "string" not in data_type:
            return unsupported(type_name(data_type))  # a structure: its members are written
        plc = string("STRING", length=int(data_type["string"]), charset="latin-1")
    elif data_type == "BOOL":
        plc = boolean("BOOL")
    elif data_type in INTEGER_BITS:
        plc = integer(data_type, INTEGER_BITS[data_type], not data_type.startswith("U"))
    elif data_type in ("REAL", "LREAL"):
        plc = floating(data_type, 32 if data_type == "REAL" else 64)
    else:
        return unsupported(str(data_type))
    if resolved.elements > 1 and len(resolved.shape) <= 1:
        return replace(plc, array=True, array_length=resolved.elements)
    if resolved.elements > 1:
        return unsupported(f"{resolved.type_name} (several dimensions)")
    return plc


def write_value(resolved: Resolved, value: Value) -> Any:
    """What pycomm3 writes for ``value``; ValueError says why the tag's type cannot hold it."""
    data_type = resolved.data_type
    if isinstance(data_type, dict) and "string" not in data_type:
        raise ValueError(f"{type_name(data_type)} is a structure: write its members one at a time")
    if data_type == "DWORD":
        raise ValueError("BOOL arrays are not written (pycomm3 writes them 32 bits at a time)")
    if resolved.elements == 1 and not resolved.shape:
        return _element(data_type, value)
    flat = _flatten(value, resolved.shape) if resolved.shape else value
    if not isinstance(flat, list) or len(flat) != resolved.elements:
        raise ValueError(f"{resolved.type_name} needs a list of {resolved.elements} values")
    return [_element(data_type, v) for v in flat]


def _flatten(value: Value, shape: tuple[int, ...]) -> list[Value]:
    """Nested lists in the shape reads return (row-major), flattened; ValueError otherwise."""
    if not isinstance(value, list) or len(value) != shape[0]:
        raise ValueError(f"needs nested lists of shape {list(shape)}")
    if len(shape) == 1:
        return value
    return [v for row in value for v in _flatten(row, shape[1:])]


def _element(data_type: str | dict[str, Any], value: Value) -> Any:
    if isinstance(data_type, dict):  # a STRING
        capacity = int(data_type["string"])
        if not isinstance(value, str):
            raise ValueError(f"a STRING needs text, not {value!r}")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{value!r} has characters a Logix STRING cannot hold") from exc
        if len(value) > capacity:
            raise ValueError(f"{len(value)} characters do not fit a STRING of {capacity}")
        return value
    if data_type == "BOOL":
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise ValueError(f"a BOOL needs true or false, not {value!r}")
    if data_type in INTEGER_BITS:
        return _integer(data_type, value)
    if data_type in ("REAL", "LREAL"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"a {data_type} needs a number, not {value!r}")
        number = float(value)
        if data_type == "REAL" and math.isfinite(number) and abs(number) > REAL_MAX:
            raise ValueError(f"{value!r} does not fit a REAL")
        return number
    raise ValueError(f"{data_type} tags are not written")


def _integer(data_type: str, value: Value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a {data_type} needs a whole number, not {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number for a {data_type}")
        value = int(value)
    bits = INTEGER_BITS[data_type]
    low, high = (
        (0, 2**bits - 1) if data_type.startswith("U") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    if not low <= value <= high:
        raise ValueError(f"{value} does not fit a {data_type} ({low} to {high})")
    return value
