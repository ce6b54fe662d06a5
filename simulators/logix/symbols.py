"""Tag list upload (Symbol object 0x55) and UDT definitions (Template object 0x6C)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from simulators.logix.cip import CipError, CipStatus, ExtStatus, Reader

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.logix.tags import SymbolRow, TagDatabase
    from simulators.logix.types import StructType

__all__ = ["TEMPLATE_CLASS", "instance_attribute_list", "template_attributes", "template_read"]

TEMPLATE_CLASS = 0x6C
_REPLY_HEADER = 4
_ACCESS_CODES = {"Read/Write": 0, "Read Only": 2, "None": 3}  # symbol attribute 10


def _dims(row: SymbolRow) -> bytes:
    padded = (*row.dims, 0, 0, 0)[:3]
    return struct.pack("<III", *padded)


_SYMBOL_ATTRIBUTES: dict[int, Callable[[SymbolRow], bytes]] = {
    1: lambda r: struct.pack("<H", len(r.name)) + r.name.encode("ascii"),
    2: lambda r: struct.pack("<H", r.symbol_type),
    3: lambda r: struct.pack("<I", r.address),
    5: lambda r: struct.pack("<I", r.object_address),
    6: lambda r: struct.pack("<I", r.software_control),
    7: lambda r: struct.pack("<H", r.element_size),
    8: _dims,
    10: lambda r: struct.pack("<B", _ACCESS_CODES[r.access]),
}


def instance_attribute_list(
    db: TagDatabase, program: str | None, start: int, request: bytes, limit: int
) -> tuple[int, bytes]:
    """Rows from instance ``start`` on, with the requested attributes, paged by ``limit``."""
    reader = Reader(request)
    wanted = [reader.u16() for _ in range(reader.u16())]
    encoders = []
    for attr in wanted:
        encoder = _SYMBOL_ATTRIBUTES.get(attr)
        if encoder is None:
            raise CipError(CipStatus.ATTRIBUTE_LIST_ERROR)
        encoders.append(encoder)
    rows = [r for r in db.symbols(program) if r.instance_id >= start]
    room = limit - _REPLY_HEADER
    out = bytearray()
    for done, row in enumerate(rows):
        entry = struct.pack("<I", row.instance_id) + b"".join(enc(row) for enc in encoders)
        if len(out) + len(entry) > room:
            if not done:
                raise CipError(CipStatus.REPLY_DATA_TOO_LARGE)
            # The client asks again from the last instance it got + 1.
            return CipStatus.PARTIAL_TRANSFER, bytes(out)
        out += entry
    return CipStatus.SUCCESS, bytes(out)


def _template(db: TagDatabase, instance: int | None) -> StructType:
    template = db.structs.get(instance) if instance is not None else None
    if template is None:
        raise CipError(CipStatus.PATH_DESTINATION_UNKNOWN, 0)
    return template


def template_attributes(db: TagDatabase, instance: int | None, request: bytes) -> bytes:
    """Get_Attribute_List on a template: handle, member count, definition and structure size."""
    template = _template(db, instance)
    values = {
        1: struct.pack("<H", template.handle),
        2: struct.pack("<H", len(template.members)),
        # Attribute 3 is undocumented; pylogix asks for it and expects a UINT.
        3: struct.pack("<H", template.definition_words & 0xFFFF),
        4: struct.pack("<I", template.definition_words),
        5: struct.pack("<I", template.size),
    }
    reader = Reader(request)
    wanted = [reader.u16() for _ in range(reader.u16())]
    out = [struct.pack("<H", len(wanted))]
    for attr in wanted:
        value = values.get(attr)
        if value is None:
            out.append(struct.pack("<HH", attr, CipStatus.ATTRIBUTE_NOT_SUPPORTED))
        else:
            out.append(struct.pack("<HH", attr, CipStatus.SUCCESS) + value)
    return b"".join(out)


def template_read(
    db: TagDatabase, instance: int | None, request: bytes, limit: int
) -> tuple[int, bytes]:
    """Read (0x4C) of template data: ``offset`` UDINT and byte count UINT, paged by ``limit``."""
    template = _template(db, instance)
    reader = Reader(request)
    offset = reader.u32()
    count = reader.u16()
    raw = template.template_bytes()
    if offset > len(raw):
        raise CipError(CipStatus.GENERAL_ERROR, ExtStatus.OFFSET_OUT_OF_RANGE)
    chunk = raw[offset : offset + count]
    room = limit - _REPLY_HEADER
    if len(chunk) > room:
        return CipStatus.PARTIAL_TRANSFER, chunk[: room - room % 4]
    return CipStatus.SUCCESS, chunk
