"""EtherNet/IP encapsulation: the 24-byte header and Common Packet Format items."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "HEADER_SIZE",
    "Command",
    "CpfItem",
    "EncapHeader",
    "EncapStatus",
    "ItemType",
    "decode_cpf",
    "encode_cpf",
    "encode_item_list",
]

HEADER_SIZE = 24
_HEADER = struct.Struct("<HHII8sI")
_ITEM = struct.Struct("<HH")


class Command(IntEnum):
    """Encapsulation commands served over TCP."""

    NOP = 0x0000
    LIST_SERVICES = 0x0004
    LIST_IDENTITY = 0x0063
    LIST_INTERFACES = 0x0064
    REGISTER_SESSION = 0x0065
    UNREGISTER_SESSION = 0x0066
    SEND_RR_DATA = 0x006F
    SEND_UNIT_DATA = 0x0070


class EncapStatus(IntEnum):
    """Encapsulation header status codes."""

    SUCCESS = 0x0000
    INVALID_COMMAND = 0x0001
    INCORRECT_DATA = 0x0003
    INVALID_SESSION = 0x0064
    INVALID_LENGTH = 0x0065
    UNSUPPORTED_PROTOCOL = 0x0069


class ItemType(IntEnum):
    """Common Packet Format item type ids."""

    NULL_ADDRESS = 0x0000
    LIST_IDENTITY = 0x000C
    CONNECTED_ADDRESS = 0x00A1
    CONNECTED_DATA = 0x00B1
    UNCONNECTED_DATA = 0x00B2
    LIST_SERVICES = 0x0100


@dataclass(frozen=True, slots=True)
class EncapHeader:
    """Encapsulation header; ``context`` is opaque to the target and echoed in the reply."""

    command: int
    length: int
    session: int
    status: int
    context: bytes
    options: int

    @classmethod
    def decode(cls, raw: bytes) -> EncapHeader:
        """Parse the first 24 bytes of a frame."""
        return cls(*_HEADER.unpack(raw[:HEADER_SIZE]))

    def reply(self, data: bytes = b"", *, session: int | None = None, status: int = 0) -> bytes:
        """A reply frame: same command and sender context, ``data`` as payload."""
        sess = self.session if session is None else session
        head = _HEADER.pack(self.command, len(data), sess, status, self.context, 0)
        return head + data


@dataclass(frozen=True, slots=True)
class CpfItem:
    """One Common Packet Format item."""

    type_id: int
    data: bytes = b""


def decode_cpf(payload: bytes) -> list[CpfItem]:
    """Parse SendRRData/SendUnitData payload: interface handle, timeout, then the items."""
    if len(payload) < 8:
        raise ValueError("CPF payload too short")
    (count,) = struct.unpack_from("<H", payload, 6)
    pos = 8
    items: list[CpfItem] = []
    for _ in range(count):
        if pos + _ITEM.size > len(payload):
            raise ValueError("truncated CPF item header")
        type_id, size = _ITEM.unpack_from(payload, pos)
        pos += _ITEM.size
        if pos + size > len(payload):
            raise ValueError("truncated CPF item data")
        items.append(CpfItem(type_id, payload[pos : pos + size]))
        pos += size
    return items


def encode_item_list(*items: CpfItem) -> bytes:
    """Item count followed by the items (the ListIdentity/ListServices reply body)."""
    out = [struct.pack("<H", len(items))]
    for item in items:
        out.append(_ITEM.pack(item.type_id, len(item.data)))
        out.append(item.data)
    return b"".join(out)


def encode_cpf(*items: CpfItem) -> bytes:
    """Build a SendRRData/SendUnitData payload around ``items`` (interface 0, timeout 0)."""
    return struct.pack("<IH", 0, 0) + encode_item_list(*items)
