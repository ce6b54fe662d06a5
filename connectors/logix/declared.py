"""Tag types declared in the YAML (``type: DINT``, ``type: REAL[100]``), for reading without
the controller's tag list.

Some controllers and protocol gateways refuse the tag-list upload (CIP service 0x55), and a
large controller's upload makes start-up slow. When the tags say their types, the connector
builds the tag list pycomm3 would have uploaded from the declarations instead: one entry per
base tag, with a stub structure holding only the declared members of a UDT.

A declared type is the type of the last *name* in the address, as Studio 5000 declares it,
dimensions included: ``Trend`` and ``Trend[3]`` are both ``REAL[1000]``, ``Recipe.Steps[2]``
is ``INT[4]`` (the member), ``StatusBits.5`` is ``DINT`` (the bit's host).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pycomm3.cip import DataTypes
from pycomm3.cip.data_types import Array
from pycomm3.custom_types import FixedSizeString

from connectors.logix.address import Address, Part

ATOMIC = ("BOOL", "SINT", "INT", "DINT", "LINT", "USINT", "UINT", "UDINT", "ULINT", "REAL", "LREAL")
STRING_CAPACITY = 82  # the predefined STRING: LEN (DINT) and DATA (SINT[82])
STRING_SIZE = 88
STRING_HANDLE = 0x0FCE  # the structure handle every Logix controller gives STRING
STRUCTURE_REPLY = b"\xa0\x02"  # a Read Tag reply's type for a structure: then its handle
# Read Tag replies name their type by code: these are the names a reply check can report.
TYPE_NAMES = {DataTypes[name].code: name for name in (*ATOMIC, "BYTE", "WORD", "DWORD", "LWORD")}
_TYPE = re.compile(r"^\s*([A-Za-z]+)\s*(?:\[\s*(\d+(?:\s*,\s*\d+){0,2})\s*\])?\s*$")


@dataclass(frozen=True, slots=True)
class LogixType:
    """A declared Logix type: ``DINT``, ``REAL[100]``, ``INT[4,5]``, ``STRING``."""

    name: str
    dims: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"{self.name}[{','.join(map(str, self.dims))}]" if self.dims else self.name


def parse_type(text: object) -> LogixType:
    """Parse a declared type; ValueError says what is wrong."""
    if isinstance(text, LogixType):
        return text
    match = _TYPE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"{text!r} is not a Logix type; write e.g. DINT, REAL[100], INT[4,5] or STRING"
        )
    name = match.group(1).upper()
    dims = tuple(int(d) for d in match.group(2).split(",")) if match.group(2) else ()
    if name not in (*ATOMIC, "STRING"):
        raise ValueError(
            f"{text!r}: declared types are the atomic types ({', '.join(ATOMIC)}) and STRING; "
            "a UDT is declared member by member (address: Recipe.Speed, type: REAL)"
        )
    if name == "BOOL" and dims:
        raise ValueError(f"{text!r}: BOOL arrays travel as DWORDs and need the tag list")
    if any(d < 1 for d in dims):
        raise ValueError(f"{text!r}: array dimensions start at 1")
    return LogixType(name, dims)


class DeclaredTags:
    """The tag list built from declarations, shaped like pycomm3's upload.

    ``add`` raises ValueError when a declaration contradicts an earlier one.
    """

    def __init__(self) -> None:
        self.tags: dict[str, dict[str, Any]] = {}
        self._spelled: dict[str, str] = {}  # lower-case base tag -> its key in ``tags``
        self._declared: dict[tuple[str, ...], LogixType] = {}  # lower-case name path -> type
        self._parents: set[tuple[str, ...]] = set()  # paths that have declared members
        self._indices: dict[tuple[str, ...], list[int]] = {}  # stub path -> largest index + 1

    def add(self, address: Address, declared: LogixType) -> None:
        """Declare the type of the last name in ``address``."""
        names = [address.base, *(m.name for m in address.members)]
        path = tuple(n.lower() for n in names)
        earlier = self._declared.get(path)
        if earlier is not None and earlier != declared:
            raise ValueError(f"{_dotted(names)} is declared both {earlier} and {declared}")
        for depth in range(1, len(path)):
            if path[:depth] in self._declared:
                whole = _dotted(names[:depth])
                raise ValueError(f"{whole} is declared {self._declared[path[:depth]]}: no members")
        if path in self._parents:
            raise ValueError(f"{_dotted(names)} is declared with members, so it is a UDT")
        if address.members and len(declared.dims) > 1:
            raise ValueError(f"{_dotted(names)}: a UDT member array has one dimension")
        self._declared[path] = declared
        self._parents.update(path[:depth] for depth in range(1, len(path)))
        parts: list[Part] = list(address.parts)
        for depth, part in enumerate(parts[:-1], 1):  # the UDTs on the way are stubs
            sizes = self._indices.setdefault(path[:depth], [])
            for i, index in enumerate(part.indices):
                if i == len(sizes):
                    sizes.append(0)
                sizes[i] = max(sizes[i], index + 1)
        self._build(names, declared)

    def _build(self, names: Sequence[str], declared: LogixType) -> None:
        base, members = names[0], names[1:]
        key = self._spelled.setdefault(base.lower(), base)
        if not members:
            self.tags[key] = _entry(key, _type_info(declared), declared.dims)
            return
        entry = self.tags.get(key)
        if entry is None:
            entry = self.tags[key] = _entry(key, _stub_info(), ())
        entry["dim"], entry["dimensions"] = _dims_fields(self._stub_dims(names[:1]))
        data_type: dict[str, Any] = entry["data_type"]
        for depth, name in enumerate(members[:-1], 2):
            inner = _member(data_type, name)
            if inner is None:
                inner = _insert(data_type, name, _stub_info())
            sizes = self._stub_dims(names[:depth])
            inner["array"] = sizes[0] if sizes else 0
            data_type = inner["data_type"]
        leaf = _type_info(declared) | {"offset": 0, "array": 0}
        if declared.dims:  # a member array: one dimension
            leaf["array"] = declared.dims[0]
            leaf["type_class"] = _array(declared.dims[0], leaf["type_class"])
        _insert(data_type, members[-1], leaf)

    def _stub_dims(self, names: Sequence[str]) -> tuple[int, ...]:
        return tuple(self._indices.get(tuple(n.lower() for n in names), ()))


def declare(tags: Iterable[tuple[Address, LogixType]]) -> DeclaredTags:
    """The tag list for these declarations; ValueError names the first contradiction."""
    table = DeclaredTags()
    for address, declared in tags:
        table.add(address, declared)
    return table


def _dotted(names: Sequence[str]) -> str:
    return ".".join(names)


def _member(data_type: dict[str, Any], name: str) -> dict[str, Any] | None:
    for member, info in data_type["internal_tags"].items():
        if member.lower() == name.lower():
            found: dict[str, Any] = info
            return found
    return None


def _insert(data_type: dict[str, Any], name: str, info: dict[str, Any]) -> dict[str, Any]:
    members: dict[str, Any] = data_type["internal_tags"]
    spelled = next((m for m in members if m.lower() == name.lower()), None)
    if spelled is None:
        data_type["attributes"].append(name)
        spelled = name
    members[spelled] = info
    return info


def _stub_info() -> dict[str, Any]:
    """A structure known only by its declared members: never read whole."""
    stub = {"name": "(declared members)", "attributes": [], "internal_tags": {}}
    return {"data_type": stub, "data_type_name": "", "tag_type": "struct", "type_class": None}


def _string_type() -> dict[str, Any]:
    dint, sint = DataTypes["DINT"], DataTypes["SINT"]
    return {
        "name": "STRING",
        "attributes": ["LEN", "DATA"],
        "internal_tags": {
            "LEN": {"data_type": "DINT", "data_type_name": "DINT", "tag_type": "atomic",
                    "type_class": dint, "offset": 0, "array": 0},
            "DATA": {"data_type": "SINT", "data_type_name": "SINT", "tag_type": "atomic",
                     "type_class": _array(STRING_CAPACITY, sint),
                     "offset": 4, "array": STRING_CAPACITY},
        },
        "template": {"structure_handle": STRING_HANDLE, "structure_size": STRING_SIZE},
        "string": STRING_CAPACITY,
        "type_class": FixedSizeString(STRING_SIZE - 4),
    }  # fmt: skip


def _type_info(declared: LogixType) -> dict[str, Any]:
    """The data-type keys of a tag or member entry, as pycomm3 describes one element."""
    if declared.name == "STRING":
        string = _string_type()
        return {
            "data_type": string,
            "data_type_name": "STRING",
            "tag_type": "struct",
            "type_class": string["type_class"],
        }
    return {
        "data_type": declared.name,
        "data_type_name": declared.name,
        "tag_type": "atomic",
        "type_class": DataTypes[declared.name],
    }


@functools.cache
def _array(length: int, element: Any) -> Any:
    """pycomm3's array type (a class made per call: one per length and element, made once)."""
    return Array(length_=length, element_type_=element)


def _dims_fields(dims: tuple[int, ...]) -> tuple[int, list[int]]:
    return len(dims), [*dims, 0, 0, 0][:3]


def _entry(name: str, info: dict[str, Any], dims: tuple[int, ...]) -> dict[str, Any]:
    """A base tag's entry in the tag list."""
    dim, dimensions = _dims_fields(dims)
    entry = {
        "tag_name": name,
        "dim": dim,
        "dimensions": dimensions,
        "alias": False,
        "instance_id": None,  # no symbol instance: pycomm3 then addresses the tag by name
        "external_access": "Read/Write",
        **info,
    }
    if dims:
        entry["type_class"] = _array(math.prod(dims), info["type_class"])
    return entry


def reply_type(tag_info: dict[str, Any]) -> bytes | None:
    """The type bytes a Read Tag reply for this entry starts with (None: a stub, never read)."""
    if tag_info.get("tag_type") == "struct":
        template = tag_info["data_type"].get("template")
        if template is None:
            return None
        return STRUCTURE_REPLY + int(template["structure_handle"]).to_bytes(2, "little")
    code: int = DataTypes[tag_info["data_type_name"]].code
    return code.to_bytes(2, "little")
