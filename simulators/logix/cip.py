"""CIP message encoding: statuses, request paths, request parsing and reply framing."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "CipError",
    "CipReply",
    "CipRequest",
    "CipStatus",
    "ExtStatus",
    "LogicalKind",
    "LogicalSegment",
    "PortSegment",
    "Reader",
    "Segment",
    "Service",
    "SymbolSegment",
    "parse_path",
    "parse_request",
]


class CipStatus(IntEnum):
    """CIP general status codes the simulator answers with."""

    SUCCESS = 0x00
    CONNECTION_FAILURE = 0x01
    PATH_SEGMENT_ERROR = 0x04
    PATH_DESTINATION_UNKNOWN = 0x05
    PARTIAL_TRANSFER = 0x06
    SERVICE_NOT_SUPPORTED = 0x08
    PRIVILEGE_VIOLATION = 0x0F
    ATTRIBUTE_LIST_ERROR = 0x0A
    DEVICE_STATE_CONFLICT = 0x10
    REPLY_DATA_TOO_LARGE = 0x11
    NOT_ENOUGH_DATA = 0x13
    ATTRIBUTE_NOT_SUPPORTED = 0x14
    TOO_MUCH_DATA = 0x15
    EMBEDDED_SERVICE_ERROR = 0x1E
    INVALID_PARAMETER = 0x20
    GENERAL_ERROR = 0xFF


class ExtStatus(IntEnum):
    """Extended status words (connection manager and Logix 0xFF general errors)."""

    CONNECTION_IN_USE = 0x0100
    TRANSPORT_NOT_SUPPORTED = 0x0103
    CONNECTION_NOT_FOUND = 0x0107
    INVALID_CONNECTION_SIZE = 0x0109
    LINK_ADDRESS_NOT_AVAILABLE = 0x0312
    INVALID_SEGMENT_TYPE = 0x0315
    OFFSET_OUT_OF_RANGE = 0x2104
    BEYOND_END_OF_OBJECT = 0x2105
    TYPE_MISMATCH = 0x2107


class Service(IntEnum):
    """CIP and Rockwell-specific service codes."""

    GET_ATTRIBUTES_ALL = 0x01
    GET_ATTRIBUTE_LIST = 0x03
    SET_ATTRIBUTE_LIST = 0x04
    MULTIPLE_SERVICE_PACKET = 0x0A
    GET_ATTRIBUTE_SINGLE = 0x0E
    READ_TAG = 0x4C
    WRITE_TAG = 0x4D
    READ_MODIFY_WRITE = 0x4E  # also Forward Close when addressed to the Connection Manager
    READ_TAG_FRAGMENTED = 0x52  # also Unconnected Send on the Connection Manager
    WRITE_TAG_FRAGMENTED = 0x53
    FORWARD_OPEN = 0x54
    GET_INSTANCE_ATTRIBUTE_LIST = 0x55
    LARGE_FORWARD_OPEN = 0x5B


class CipError(Exception):
    """A request failed with a CIP general status (and optional extended status words)."""

    def __init__(self, status: int, *extended: int) -> None:
        super().__init__(f"CIP status 0x{status:02X} {[f'0x{e:04X}' for e in extended]}")
        self.status = status
        self.extended = extended


class Reader:
    """Little-endian cursor over a CIP byte string; running short is a CIP error."""

    def __init__(self, data: bytes, short: int = CipStatus.NOT_ENOUGH_DATA) -> None:
        self._data = data
        self._pos = 0
        self._short = short

    @property
    def remaining(self) -> int:
        """Bytes not consumed yet."""
        return len(self._data) - self._pos

    def take(self, size: int) -> bytes:
        """Consume ``size`` raw bytes."""
        if size < 0 or self._pos + size > len(self._data):
            raise CipError(self._short)
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def rest(self) -> bytes:
        """Consume everything left."""
        return self.take(self.remaining)

    def u8(self) -> int:
        """Consume a USINT."""
        return self.take(1)[0]

    def u16(self) -> int:
        """Consume a UINT."""
        return int.from_bytes(self.take(2), "little")

    def u32(self) -> int:
        """Consume a UDINT."""
        return int.from_bytes(self.take(4), "little")


class LogicalKind(IntEnum):
    """Logical segment types (bits 2-4 of the segment byte)."""

    CLASS = 0
    INSTANCE = 1
    MEMBER = 2  # Logix uses member ids as array element indices
    CONNECTION_POINT = 3
    ATTRIBUTE = 4


@dataclass(frozen=True, slots=True)
class PortSegment:
    """Route hop: leave through ``port`` towards ``link`` (slot number or address)."""

    port: int
    link: bytes


@dataclass(frozen=True, slots=True)
class LogicalSegment:
    """Class, instance, member (element), connection point or attribute id."""

    kind: LogicalKind
    value: int


@dataclass(frozen=True, slots=True)
class SymbolSegment:
    """ANSI extended symbol segment (0x91): a tag, program or member name."""

    name: str


Segment = PortSegment | LogicalSegment | SymbolSegment

_SEGMENT_TYPE_MASK = 0xE0
_PORT_TYPE = 0x00
_LOGICAL_TYPE = 0x20
_ANSI_SYMBOL = 0x91
_PORT_EXTENDED_LINK = 0x10
_PORT_ID_MASK = 0x0F


def _parse_port(reader: Reader, first: int) -> PortSegment:
    port = first & _PORT_ID_MASK
    if port == _PORT_ID_MASK:  # port id does not fit the nibble: it follows as a UINT
        port = reader.u16()
    if first & _PORT_EXTENDED_LINK:
        size = reader.u8()
        link = reader.take(size)
        if size % 2:
            reader.take(1)
        return PortSegment(port, link)
    return PortSegment(port, reader.take(1))


def _parse_logical(reader: Reader, first: int) -> LogicalSegment:
    kind_bits = (first >> 2) & 0x07
    if kind_bits > LogicalKind.ATTRIBUTE:
        raise CipError(CipStatus.PATH_SEGMENT_ERROR)
    fmt = first & 0x03
    if fmt == 0:
        value = reader.u8()
    elif fmt == 1:
        reader.take(1)  # pad byte of the padded EPATH
        value = reader.u16()
    else:
        # 0b10 is the spec's 32-bit format; pycomm3 encodes 32-bit ids as 0b11, accept both.
        reader.take(1)
        value = reader.u32()
    return LogicalSegment(LogicalKind(kind_bits), value)


def parse_path(data: bytes) -> tuple[Segment, ...]:
    """Decode a padded EPATH; any malformed or unsupported segment is a path segment error."""
    reader = Reader(data, short=CipStatus.PATH_SEGMENT_ERROR)
    segments: list[Segment] = []
    while reader.remaining:
        first = reader.u8()
        if first == _ANSI_SYMBOL:
            size = reader.u8()
            raw = reader.take(size)
            if size % 2:
                reader.take(1)
            try:
                segments.append(SymbolSegment(raw.decode("ascii")))
            except UnicodeDecodeError as err:
                raise CipError(CipStatus.PATH_SEGMENT_ERROR) from err
        elif first & _SEGMENT_TYPE_MASK == _PORT_TYPE:
            segments.append(_parse_port(reader, first))
        elif first & _SEGMENT_TYPE_MASK == _LOGICAL_TYPE:
            segments.append(_parse_logical(reader, first))
        else:
            raise CipError(CipStatus.PATH_SEGMENT_ERROR)
    return tuple(segments)


@dataclass(frozen=True, slots=True)
class CipRequest:
    """One explicit message: service code, decoded request path and request data."""

    service: int
    path: tuple[Segment, ...]
    data: bytes

    def logical(self, kind: LogicalKind) -> int | None:
        """Value of the first logical segment of ``kind`` in the path, if any."""
        for seg in self.path:
            if isinstance(seg, LogicalSegment) and seg.kind == kind:
                return seg.value
        return None


def parse_request(message: bytes) -> CipRequest:
    """Split a Message Router request into service, path and data."""
    reader = Reader(message, short=CipStatus.PATH_SEGMENT_ERROR)
    service = reader.u8()
    words = reader.u8()
    path = parse_path(reader.take(words * 2))
    return CipRequest(service, path, reader.rest())


@dataclass(frozen=True, slots=True)
class CipReply:
    """Message Router reply: echoes the service with the reply bit set."""

    service: int
    status: int = CipStatus.SUCCESS
    extended: tuple[int, ...] = ()
    data: bytes = b""

    @classmethod
    def error(cls, service: int, err: CipError) -> CipReply:
        """Reply carrying the status of ``err``."""
        return cls(service, err.status, err.extended)

    @property
    def ok(self) -> bool:
        """Whether the status means the service succeeded (fully or partially)."""
        return self.status in (CipStatus.SUCCESS, CipStatus.PARTIAL_TRANSFER)

    def encode(self) -> bytes:
        """Bytes on the wire: reply service, reserved, status, extended size in words, data."""
        ext = b"".join(struct.pack("<H", word) for word in self.extended)
        header = bytes((self.service | 0x80, 0, self.status, len(self.extended)))
        return header + ext + self.data
