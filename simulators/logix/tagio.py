"""Tag data services: Read Tag (fragmented), Write Tag (fragmented) and Read-Modify-Write."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from simulators.logix.cip import CipError, CipStatus, ExtStatus, Reader
from simulators.logix.types import BOOL, AtomicType

if TYPE_CHECKING:
    from simulators.logix.tags import Location, TagDatabase

__all__ = ["read_modify_write", "read_tag", "write_tag"]

_STRUCT_TYPE = 0xA0
_REPLY_HEADER = 4  # reply service, reserved, general status, extended status size


def _type_header(loc: Location) -> bytes:
    """Type that prefixes read data and must prefix write data."""
    dtype = loc.dtype
    if loc.bit is not None:
        return struct.pack("<H", BOOL.code)
    if isinstance(dtype, AtomicType):
        return struct.pack("<H", dtype.code)
    return struct.pack("<BBH", _STRUCT_TYPE, 2, dtype.handle)


def _check_elements(loc: Location, elements: int) -> None:
    if elements == 0:
        raise CipError(CipStatus.INVALID_PARAMETER)
    available = 1 if loc.bit is not None else loc.count
    if elements > available:
        raise CipError(CipStatus.GENERAL_ERROR, ExtStatus.BEYOND_END_OF_OBJECT)


def read_tag(
    db: TagDatabase, loc: Location, request: bytes, limit: int, *, fragmented: bool
) -> tuple[int, bytes]:
    """Serve 0x4C/0x52: as much of the value as fits ``limit``, status 0x06 when more is left."""
    reader = Reader(request)
    elements = reader.u16()
    offset = reader.u32() if fragmented else 0
    _check_elements(loc, elements)
    raw = db.read_bytes(loc, elements)
    if offset > len(raw) or (offset == len(raw) and offset):
        raise CipError(CipStatus.GENERAL_ERROR, ExtStatus.OFFSET_OUT_OF_RANGE)
    header = _type_header(loc)
    room = limit - _REPLY_HEADER - len(header)
    chunk = raw[offset:]
    if len(chunk) <= room:
        return CipStatus.SUCCESS, header + chunk
    # Split on element boundaries so element-wise decoders (pylogix) never see half a value.
    size = loc.element_size
    cut = room - room % size if size <= room else room
    if cut <= 0:
        raise CipError(CipStatus.REPLY_DATA_TOO_LARGE)
    return CipStatus.PARTIAL_TRANSFER, header + chunk[:cut]


def _check_type(loc: Location, reader: Reader) -> None:
    type_code = reader.u8()
    extra = reader.take(reader.u8())
    dtype = loc.dtype
    if loc.bit is not None:
        ok = type_code == BOOL.code and not extra
    elif isinstance(dtype, AtomicType):
        ok = type_code == dtype.code and not extra
    else:
        ok = type_code == _STRUCT_TYPE and extra == struct.pack("<H", dtype.handle)
    if not ok:
        raise CipError(CipStatus.GENERAL_ERROR, ExtStatus.TYPE_MISMATCH)


def write_tag(db: TagDatabase, loc: Location, request: bytes, *, fragmented: bool) -> None:
    """Serve 0x4D/0x53: the declared type must match the tag, then the data lands in memory."""
    reader = Reader(request)
    _check_type(loc, reader)
    elements = reader.u16()
    offset = reader.u32() if fragmented else 0
    _check_elements(loc, elements)
    total = 1 if loc.bit is not None else elements * loc.element_size
    payload = reader.rest()
    if fragmented:
        if not payload:
            raise CipError(CipStatus.NOT_ENOUGH_DATA)
        if offset >= total:
            raise CipError(CipStatus.GENERAL_ERROR, ExtStatus.OFFSET_OUT_OF_RANGE)
        if offset + len(payload) > total:
            raise CipError(CipStatus.TOO_MUCH_DATA)
        db.write_bytes(loc, payload, offset)
        return
    if len(payload) < total:
        raise CipError(CipStatus.NOT_ENOUGH_DATA)
    # Surplus bytes are ignored, as the controller does: pycomm3 1.2.16 sends its single-tag
    # write request twice in one message (sequence count + request repeated after the data).
    db.write_bytes(loc, payload[:total])


def read_modify_write(db: TagDatabase, loc: Location, request: bytes) -> None:
    """Serve 0x4E: new = (old AND and_mask) OR or_mask, on an integer tag of the mask's size."""
    reader = Reader(request)
    size = reader.u16()
    or_mask = int.from_bytes(reader.take(size), "little")
    and_mask = int.from_bytes(reader.take(size), "little")
    # pycomm3 1.2.16 slices its AND mask by value, not size, so it usually sends 8 bytes:
    # anything after the declared mask size is ignored.
    dtype = loc.dtype
    if (
        loc.bit is not None
        or loc.is_array
        or not isinstance(dtype, AtomicType)
        or not dtype.is_integer
        or size != dtype.size
    ):
        raise CipError(CipStatus.GENERAL_ERROR, ExtStatus.TYPE_MISMATCH)
    old = int.from_bytes(db.read_bytes(loc, 1), "little")
    new = (old & and_mask) | or_mask
    db.write_bytes(loc, new.to_bytes(size, "little"))
