"""Logix data types: atomic types, UDT layout (packed BOOLs, alignment) and template encoding."""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BOOL",
    "DINT",
    "INT",
    "LINT",
    "LREAL",
    "REAL",
    "SINT",
    "STRING",
    "UDINT",
    "UINT",
    "USINT",
    "AtomicType",
    "DataType",
    "Field",
    "Member",
    "StructType",
    "TagValue",
    "decode_value",
    "define_struct",
    "encode_into",
]

TagValue = bool | int | float | str | list["TagValue"] | dict[str, "TagValue"]

_STRUCT_FLAG = 0x8000
_ARRAY_FLAG = 0x2000  # one array dimension, as Logix marks array members in templates
_HOST_PREFIX = "ZZZZZZZZZZ"  # Logix names the hidden SINT that carries a UDT's BOOL members so
BOOL_CODE = 0xC1


@dataclass(frozen=True, slots=True)
class AtomicType:
    """An elementary Logix type: CIP type code, size in bytes and struct format."""

    name: str
    code: int
    size: int
    fmt: str

    @property
    def alignment(self) -> int:
        """Logix aligns atomic members on their own size."""
        return self.size

    @property
    def is_integer(self) -> bool:
        """Whether the type is an integer (so Read-Modify-Write masks apply)."""
        return self.fmt in "bhiqBHIQ"

    def encode(self, value: TagValue) -> bytes:
        """Pack one Python value."""
        if self.code == BOOL_CODE:
            return b"\x01" if value else b"\x00"
        if isinstance(value, str | list | dict):
            raise TypeError(f"{self.name} cannot hold {type(value).__name__}")
        try:
            return struct.pack("<" + self.fmt, value)
        except struct.error as err:
            raise ValueError(f"{value!r} does not fit {self.name}") from err

    def decode(self, data: bytes) -> bool | int | float:
        """Unpack one value from the start of ``data``."""
        if self.code == BOOL_CODE:
            return data[0] != 0
        value: bool | int | float = struct.unpack_from("<" + self.fmt, data)[0]
        return value


BOOL = AtomicType("BOOL", BOOL_CODE, 1, "B")
SINT = AtomicType("SINT", 0xC2, 1, "b")
INT = AtomicType("INT", 0xC3, 2, "h")
DINT = AtomicType("DINT", 0xC4, 4, "i")
LINT = AtomicType("LINT", 0xC5, 8, "q")
USINT = AtomicType("USINT", 0xC6, 1, "B")
UINT = AtomicType("UINT", 0xC7, 2, "H")
UDINT = AtomicType("UDINT", 0xC8, 4, "I")
REAL = AtomicType("REAL", 0xCA, 4, "f")
LREAL = AtomicType("LREAL", 0xCB, 8, "d")


@dataclass(frozen=True, slots=True)
class Member:
    """A UDT member as the template describes it."""

    name: str
    dtype: DataType
    offset: int
    array_len: int = 0  # 0 for a scalar member
    bit: int | None = None  # BOOL members alias one bit of a hidden host SINT
    hidden: bool = False

    @property
    def type_word(self) -> int:
        """Member type as written in the template: atomic code or struct flag + template id."""
        word = self.dtype.code if isinstance(self.dtype, AtomicType) else self.dtype.type_word
        return word | (_ARRAY_FLAG if self.array_len else 0)

    @property
    def info_word(self) -> int:
        """Template member info: the bit number of BOOL members, else the array length."""
        return self.bit if self.bit is not None else self.array_len


@dataclass(frozen=True, slots=True)
class StructType:
    """A structure (UDT or predefined such as STRING) served through the Template object."""

    name: str
    template_id: int
    handle: int  # structure handle: what read replies and write requests carry
    size: int
    members: tuple[Member, ...]
    template_name: str  # name stored in the template ("ASCIISTRING82" for STRING)
    alignment: int = 4
    string_capacity: int | None = None  # DATA length when this is a Logix string type

    @property
    def type_word(self) -> int:
        """Symbol type bits for a tag of this type (struct flag + template instance id)."""
        return _STRUCT_FLAG | self.template_id

    def member(self, name: str) -> Member | None:
        """Visible member called ``name`` (Logix names are case-insensitive)."""
        wanted = name.lower()
        for m in self.members:
            if not m.hidden and m.name.lower() == wanted:
                return m
        return None

    def template_bytes(self) -> bytes:
        """Template object data: member info records, then the type and member names."""
        info = b"".join(
            struct.pack("<HHI", m.info_word, m.type_word, m.offset) for m in self.members
        )
        # After ';' Logix stores two flag bytes per member; pylogix reads them, pycomm3 skips them.
        flags = b"".join(b"@@" if m.hidden else b"AC" for m in self.members)
        names = self.template_name.encode() + b";n" + flags + b"\x00"
        names += b"".join(m.name.encode() + b"\x00" for m in self.members)
        raw = info + names
        return raw + bytes(-len(raw) % 4)

    @property
    def definition_words(self) -> int:
        """Template attribute 4: clients read ``words * 4 - 23`` bytes of template data."""
        return len(self.template_bytes()) // 4 + 5


DataType = AtomicType | StructType


@dataclass(frozen=True, slots=True)
class Field:
    """A member declaration in source order, before layout."""

    name: str
    dtype: DataType
    array_len: int = 0


def _align(offset: int, alignment: int) -> int:
    return offset + (-offset % alignment)


def define_struct(
    name: str, template_id: int, fields: Sequence[Field], *, handle: int | None = None
) -> StructType:
    """Lay out a UDT the way Logix does: natural alignment, consecutive BOOLs share a host SINT."""
    members: list[Member] = []
    offset = 0
    host: int | None = None
    next_bit = 0
    alignment = 4
    for f in fields:
        if f.dtype == BOOL and not f.array_len:
            if host is None or next_bit == 8:
                host, next_bit = offset, 0
                members.append(Member(f"{_HOST_PREFIX}{name}{host}", SINT, host, hidden=True))
                offset += 1
            members.append(Member(f.name, BOOL, host, bit=next_bit))
            next_bit += 1
            continue
        host = None
        offset = _align(offset, f.dtype.alignment)
        alignment = max(alignment, f.dtype.alignment)
        members.append(Member(f.name, f.dtype, offset, f.array_len))
        offset += f.dtype.size * max(1, f.array_len)
    layout = tuple(members)
    if handle is None:
        # Logix derives the handle from the definition (a CRC); any stable 16-bit value works.
        digest = b"".join(struct.pack("<HHI", m.info_word, m.type_word, m.offset) for m in layout)
        handle = binascii.crc_hqx(name.encode() + digest, 0)
    return StructType(
        name=name,
        template_id=template_id,
        handle=handle,
        size=_align(offset, alignment),
        members=layout,
        template_name=name,
        alignment=alignment,
    )


def _make_string() -> StructType:
    base = define_struct("STRING", 0x0FCE, [Field("LEN", DINT), Field("DATA", SINT, 82)])
    # 0x0FCE is the real STRING template id and handle; pylogix recognises strings by it.
    return StructType(
        name="STRING",
        template_id=0x0FCE,
        handle=0x0FCE,
        size=base.size,
        members=base.members,
        template_name="ASCIISTRING82",
        string_capacity=82,
    )


STRING = _make_string()


def decode_value(dtype: DataType, data: bytes, offset: int = 0) -> TagValue:
    """One value of ``dtype`` stored at ``offset`` of ``data`` (structs become dicts)."""
    if isinstance(dtype, AtomicType):
        return dtype.decode(data[offset : offset + dtype.size])
    if dtype.string_capacity is not None:
        declared = int.from_bytes(data[offset : offset + 4], "little", signed=True)
        length = max(0, min(declared, dtype.string_capacity))
        return data[offset + 4 : offset + 4 + length].decode("latin-1")
    out: dict[str, TagValue] = {}
    for m in dtype.members:
        if m.hidden:
            continue
        start = offset + m.offset
        if m.bit is not None:
            out[m.name] = bool(data[start] >> m.bit & 1)
        elif m.array_len:
            size = m.dtype.size
            out[m.name] = [
                decode_value(m.dtype, data, start + i * size) for i in range(m.array_len)
            ]
        else:
            out[m.name] = decode_value(m.dtype, data, start)
    return out


def encode_into(dtype: DataType, value: TagValue, buf: bytearray, offset: int = 0) -> None:
    """Write ``value`` over the ``dtype`` stored at ``offset``; dict keys left out keep theirs."""
    if isinstance(dtype, AtomicType):
        buf[offset : offset + dtype.size] = dtype.encode(value)
        return
    if dtype.string_capacity is not None:
        if not isinstance(value, str):
            raise TypeError(f"{dtype.name} needs a str, not {type(value).__name__}")
        raw = value.encode("latin-1")
        if len(raw) > dtype.string_capacity:
            raise ValueError(f"string longer than {dtype.string_capacity} characters")
        buf[offset : offset + dtype.size] = bytes(dtype.size)
        buf[offset : offset + 4] = DINT.encode(len(raw))
        buf[offset + 4 : offset + 4 + len(raw)] = raw
        return
    if not isinstance(value, dict):
        raise TypeError(f"{dtype.name} needs a dict, not {type(value).__name__}")
    for key, item in value.items():
        m = dtype.member(key)
        if m is None:
            raise KeyError(f"{dtype.name} has no member {key!r}")
        start = offset + m.offset
        if m.bit is not None:
            mask = 1 << m.bit
            buf[start] = (buf[start] | mask) if item else (buf[start] & ~mask & 0xFF)
        elif m.array_len:
            if not isinstance(item, list) or len(item) != m.array_len:
                raise ValueError(f"{dtype.name}.{m.name} needs a list of {m.array_len} values")
            for i, element in enumerate(item):
                encode_into(m.dtype, element, buf, start + i * m.dtype.size)
        else:
            encode_into(m.dtype, item, buf, start)
