"""Addresses checked against the controller's tag list, and pycomm3 values made plain.

The tag list is what pycomm3 uploads on open (``LogixDriver.tags``): one dict per base tag
with ``data_type`` either an atomic type name or a structure dict whose ``internal_tags``
describe the members. Names are matched case-insensitively, as Logix does, and sent in the
controller's spelling.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.logix.address import Address, Part
from gateway.models import Quality, Sample, Value

# Bytes per element of the atomic types (pycomm3 lists BOOL arrays as DWORD).
ATOMIC_SIZES = {
    "BOOL": 1,
    "SINT": 1,
    "USINT": 1,
    "BYTE": 1,
    "INT": 2,
    "UINT": 2,
    "WORD": 2,
    "DINT": 4,
    "UDINT": 4,
    "DWORD": 4,
    "REAL": 4,
    "LINT": 8,
    "ULINT": 8,
    "LWORD": 8,
    "LREAL": 8,
}
INTEGER_BITS = {"SINT": 8, "USINT": 8, "INT": 16, "UINT": 16, "DINT": 32, "UDINT": 32}
INTEGER_BITS |= {"LINT": 64, "ULINT": 64}

DataType = str | dict[str, Any]  # an atomic type name, or pycomm3's structure description


@dataclass(frozen=True, slots=True)
class Resolved:
    """How one address is read: the request text pycomm3 takes and how to shape the value."""

    request: str  # e.g. ``Program:MainProgram.BottleCount`` or ``Trend{1000}``
    data_type: DataType  # of one element
    elements: int
    size: int  # data bytes the reply carries
    shape: tuple[int, ...] = ()  # a whole multi-dimensional array comes back nested

    @property
    def type_name(self) -> str:
        """``DINT``, ``Recipe``, ``REAL[1000]``..."""
        name = type_name(self.data_type)
        return f"{name}[{self.elements}]" if self.elements > 1 else name


def type_name(data_type: DataType | None) -> str:
    """The Logix name of a type from pycomm3's description."""
    if isinstance(data_type, dict):
        return str(data_type.get("name", "?"))
    return data_type or "?"


def element_size(data_type: DataType) -> int:
    """Bytes one element of the type takes on the wire."""
    if isinstance(data_type, dict):
        return int(data_type.get("template", {}).get("structure_size", 0)) or 1
    return ATOMIC_SIZES.get(data_type, 4)


def dimensions(info: Mapping[str, Any]) -> tuple[int, ...]:
    """A base tag's array dimensions from its tag-list entry (empty for a scalar)."""
    dims = info.get("dimensions") or ()
    return tuple(int(d) for d in dims[: int(info.get("dim", 0))])


class TagTable:
    """The controller's tag list, for resolving configured addresses before reading them."""

    def __init__(self, tags: Mapping[str, Mapping[str, Any]]) -> None:
        self.tags = tags
        self._names = {name.lower(): name for name in tags}
        self._programs = {
            name.split(".", 1)[0][8:].lower() for name in tags if name.startswith("Program:")
        }

    def resolve(self, address: Address) -> Resolved:
        """Find the address in the tag list; LookupError says why it cannot be read."""
        key = self._names.get(address.base.lower())
        if key is None:
            if address.program is not None and address.program.lower() not in self._programs:
                raise LookupError(f"the controller has no program {address.program!r}")
            raise LookupError(f"{address.base} is not in the controller's tag list")
        info = self.tags[key]
        if info.get("external_access") == "None":
            raise LookupError(f"{key} is not readable (External Access: None)")
        data_type: DataType = info["data_type"]
        dims = dimensions(info)
        path, dims, left = self._index(key, address.parts[0], dims)
        for member in address.members:
            if dims:
                raise LookupError(f"{path} is an array: index it before .{member.name}")
            found = self._member(path, data_type, member.name)
            data_type = found["data_type"]
            length = int(found.get("array") or 0)
            member_path = f"{path}.{found['name']}"
            path, dims, left = self._index(member_path, member, (length,) if length else ())
        return self._finish(address, path, data_type, dims, left)

    def _index(
        self, path: str, part: Part, dims: tuple[int, ...]
    ) -> tuple[str, tuple[int, ...], int]:
        """Apply a part's indices: the path so far, dimensions still open, elements left."""
        total = math.prod(dims) if dims else 1
        if not part.indices:
            return path, dims, total
        if not dims:
            raise LookupError(f"{path} is not an array")
        if len(part.indices) != len(dims):
            raise LookupError(f"{path} has {len(dims)} dimension(s), not {len(part.indices)}")
        linear = 0
        for index, size in zip(part.indices, dims, strict=True):
            if index >= size:
                shape = ",".join(map(str, dims))
                raise LookupError(f"{path}{_brackets(part.indices)} is outside [{shape}]")
            linear = linear * size + index
        return f"{path}{_brackets(part.indices)}", (), total - linear

    @staticmethod
    def _member(path: str, data_type: DataType, name: str) -> dict[str, Any]:
        members = data_type.get("internal_tags", {}) if isinstance(data_type, dict) else {}
        for member_name, member in members.items():
            if member_name.lower() == name.lower():
                return {**member, "name": member_name}
        raise LookupError(f"{path} ({type_name(data_type)}) has no member {name!r}")

    def _finish(
        self,
        address: Address,
        path: str,
        data_type: DataType,
        dims: tuple[int, ...],
        left: int,
    ) -> Resolved:
        request = path
        if address.bit is not None:
            if dims:
                raise LookupError(f"{path} is an array: index it before the bit number")
            bits = INTEGER_BITS.get(data_type) if isinstance(data_type, str) else None
            if bits is None:
                raise LookupError(f"{path} is a {type_name(data_type)}: only integers have bits")
            if address.bit >= bits:
                raise LookupError(f"{path} is a {data_type}: its bits are 0 to {bits - 1}")
            return Resolved(f"{path}.{address.bit}", "BOOL", 1, element_size(data_type))
        whole = bool(dims) and address.count is None
        if address.count is not None:
            is_array = bool(dims) or left > 1 or any(p.indices for p in address.parts)
            if not is_array and data_type != "DWORD":
                raise LookupError(f"{path} is not an array: {{{address.count}}} needs one")
            if address.count > left:
                raise LookupError(f"{address}: only {left} element(s) from there to the end")
            elements = address.count
        else:
            elements = left if whole else 1
        if address.count is not None or whole:
            request = f"{path}{{{elements}}}"
        shape = dims if whole and len(dims) > 1 else ()
        if data_type == "DWORD":  # a BOOL array: counted in bits, carried in 32-bit words
            size = 4 * math.ceil(elements / 32)
        else:
            size = element_size(data_type) * elements
        return Resolved(request, data_type, elements, size, shape)


def bad_sample(resolved: Resolved, reason: str) -> Sample:
    """A bad reading, and why; a UDT keeps its members' names, so each member's topic turns bad
    too."""
    if resolved.elements == 1 and not resolved.shape:
        skeleton = _skeleton(resolved.data_type, 0)
        if isinstance(skeleton, dict):
            return Sample(skeleton, Quality.BAD, reason=reason)
    return Sample(None, Quality.BAD, reason=reason)


def _skeleton(data_type: DataType | None, depth: int) -> Value:
    if not isinstance(data_type, dict) or "string" in data_type or depth > 8:
        return None
    members: dict[str, Any] = data_type.get("internal_tags") or {}
    names = [n for n in data_type.get("attributes") or members if n in members]
    return {
        n: None if members[n].get("array") else _skeleton(members[n].get("data_type"), depth + 1)
        for n in names
    }


def _brackets(indices: tuple[int, ...]) -> str:
    return f"[{','.join(map(str, indices))}]"


def plain_value(value: Any, resolved: Resolved) -> Value:
    """A pycomm3 value as JSON-friendly data: REALs shortest, UDTs dicts, arrays lists."""
    if isinstance(value, int | float | str) and resolved.data_type != "REAL":
        return value  # most tags: an atomic value pycomm3 already decoded as we publish it
    cleaned = clean(value, resolved.data_type)
    if resolved.shape and isinstance(cleaned, list):
        return reshape(cleaned, resolved.shape)
    return cleaned


def clean(value: Any, data_type: DataType | None) -> Value:
    """Recursively turn a decoded value into plain data, typed by the Logix data type."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return shortest_real(value) if data_type == "REAL" else value
    if isinstance(value, list | tuple):
        return [clean(v, data_type) for v in value]
    if isinstance(value, dict):
        members = data_type.get("internal_tags", {}) if isinstance(data_type, dict) else {}
        return {str(k): clean(v, members.get(k, {}).get("data_type")) for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        return value.hex()  # a type pycomm3 could not decode: raw, but still publishable
    return str(value)


def shortest_real(value: float) -> float:
    """The shortest decimal that is the same 32-bit REAL (175.11391, not 175.11390686035156)."""
    if len(repr(value)) < 9 or value != value or value in (float("inf"), float("-inf")):
        return value  # already short (3.5, 0.25), or not a number
    packed = struct.pack("<f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


def reshape(flat: list[Value], dims: tuple[int, ...]) -> list[Value]:
    """Row-major nesting of a flat element list (Logix stores the last index fastest)."""
    if len(dims) <= 1:
        return flat
    step = math.prod(dims[1:])
    return [reshape(flat[i * step : (i + 1) * step], dims[1:]) for i in range(dims[0])]
