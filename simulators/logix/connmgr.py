"""Connection Manager object: Forward Open/Close, Unconnected Send and route checks."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simulators.logix.cip import (
    CipError,
    CipStatus,
    ExtStatus,
    LogicalKind,
    LogicalSegment,
    PortSegment,
    Reader,
    Segment,
    parse_path,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CONNECTION_MANAGER_CLASS",
    "MAX_LARGE_SIZE",
    "MAX_SMALL_SIZE",
    "CipConnection",
    "ForwardClose",
    "ForwardOpen",
    "UnconnectedSend",
    "check_route",
]

CONNECTION_MANAGER_CLASS = 0x06
MAX_LARGE_SIZE = 4002  # the largest Large Forward Open a Logix controller grants
MAX_SMALL_SIZE = 511  # what fits the 9-bit size field of a plain Forward Open
_BACKPLANE = 1
_ROUTER_PATH = (LogicalSegment(LogicalKind.CLASS, 0x02), LogicalSegment(LogicalKind.INSTANCE, 1))
_CLASS3_MASK = 0x0F
_CLASS3 = 0x03
_API_US = 2_000_000  # actual packet interval echoed for both directions; class 3 ignores it


def check_route(segments: Sequence[Segment], slot: int) -> tuple[Segment, ...]:
    """Strip the backplane hop to our slot; any other hop is an unreachable link address."""
    hops = 0
    for hop in segments:
        if not isinstance(hop, PortSegment):
            break
        if hop.port != _BACKPLANE or hop.link != bytes((slot,)):
            raise CipError(CipStatus.CONNECTION_FAILURE, ExtStatus.LINK_ADDRESS_NOT_AVAILABLE)
        hops += 1
    rest = tuple(segments[hops:])
    if any(isinstance(s, PortSegment) for s in rest):
        raise CipError(CipStatus.CONNECTION_FAILURE, ExtStatus.INVALID_SEGMENT_TYPE)
    return rest


@dataclass(frozen=True, slots=True)
class ForwardOpen:
    """A (Large) Forward Open request, reduced to what a class 3 target needs."""

    to_id: int  # connection id the originator wants on our replies
    serial: int
    vendor: int
    originator_serial: int
    size: int  # T->O connection size in bytes
    transport: int
    path: tuple[Segment, ...]

    @property
    def key(self) -> tuple[int, int, int]:
        """Connection triad that identifies the connection for Forward Close."""
        return (self.serial, self.vendor, self.originator_serial)

    @classmethod
    def decode(cls, data: bytes, *, large: bool) -> ForwardOpen:
        """Parse the request data (priority/ticks onwards)."""
        r = Reader(data)
        r.take(2)  # priority/tick time, timeout ticks
        r.u32()  # O->T id proposed by the originator: the target chooses its own
        to_id = r.u32()
        serial, vendor = r.u16(), r.u16()
        originator_serial = r.u32()
        r.take(4)  # timeout multiplier + 3 reserved bytes
        r.u32()  # O->T RPI
        r.take(4 if large else 2)  # O->T parameters
        r.u32()  # T->O RPI
        params = r.u32() if large else r.u16()
        transport = r.u8()
        path = parse_path(r.take(r.u8() * 2))
        size = params & (0xFFFF if large else 0x01FF)
        return cls(to_id, serial, vendor, originator_serial, size, transport, path)

    def validate(self, *, large: bool, slot: int) -> None:
        """Refuse what a Logix controller refuses: other transports, sizes, targets."""
        limit = MAX_LARGE_SIZE if large else MAX_SMALL_SIZE
        if self.size > limit or self.size < 8:
            raise CipError(CipStatus.CONNECTION_FAILURE, ExtStatus.INVALID_CONNECTION_SIZE, limit)
        if self.transport & _CLASS3_MASK != _CLASS3:
            raise CipError(CipStatus.CONNECTION_FAILURE, ExtStatus.TRANSPORT_NOT_SUPPORTED)
        if check_route(self.path, slot) != _ROUTER_PATH:
            raise CipError(CipStatus.CONNECTION_FAILURE, ExtStatus.INVALID_SEGMENT_TYPE)

    def failure_data(self) -> bytes:
        """Data of an unsuccessful Forward Open reply."""
        return struct.pack("<HHIBB", self.serial, self.vendor, self.originator_serial, 0, 0)


@dataclass(slots=True)
class CipConnection:
    """An open class 3 connection and the last reply, kept to answer retransmissions."""

    ot_id: int  # id we chose: the originator sends requests with it
    request: ForwardOpen
    last_sequence: int | None = None
    last_reply: bytes = b""

    @property
    def to_id(self) -> int:
        """Id carried by our replies."""
        return self.request.to_id

    @property
    def reply_limit(self) -> int:
        """Largest CIP reply: the connection size includes the 2-byte sequence count."""
        return self.request.size - 2

    def open_reply(self) -> bytes:
        """Data of the successful Forward Open reply."""
        req = self.request
        return struct.pack(
            "<IIHHIIIBB",
            self.ot_id,
            req.to_id,
            req.serial,
            req.vendor,
            req.originator_serial,
            _API_US,
            _API_US,
            0,
            0,
        )


@dataclass(frozen=True, slots=True)
class ForwardClose:
    """A Forward Close request: the triad names the connection to drop."""

    key: tuple[int, int, int]
    path: tuple[Segment, ...]

    @classmethod
    def decode(cls, data: bytes) -> ForwardClose:
        """Parse the request data (priority/ticks onwards)."""
        r = Reader(data)
        r.take(2)
        key = (r.u16(), r.u16(), r.u32())
        words = r.u8()
        r.u8()  # reserved
        return cls(key, parse_path(r.take(words * 2)))

    def reply(self) -> bytes:
        """Data of the Forward Close reply (success or failure)."""
        return struct.pack("<HHIBB", *self.key, 0, 0)


@dataclass(frozen=True, slots=True)
class UnconnectedSend:
    """Unconnected Send: an embedded request and the route it should take."""

    message: bytes
    route: tuple[Segment, ...]

    @classmethod
    def decode(cls, data: bytes) -> UnconnectedSend:
        """Parse priority/ticks, embedded message (padded to even length) and route path."""
        r = Reader(data)
        r.take(2)
        size = r.u16()
        message = r.take(size)
        if size % 2:
            r.take(1)
        words = r.u8()
        r.u8()  # reserved
        return cls(message, parse_path(r.take(words * 2)))
