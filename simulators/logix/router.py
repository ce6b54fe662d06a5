"""Message Router: runs explicit messages against the controller's objects and tags."""

from __future__ import annotations

import itertools
import logging
import struct
from collections import Counter
from typing import TYPE_CHECKING

from simulators.logix import symbols, tagio
from simulators.logix.cip import (
    CipError,
    CipReply,
    CipRequest,
    CipStatus,
    LogicalKind,
    LogicalSegment,
    Reader,
    Service,
    SymbolSegment,
    parse_request,
)
from simulators.logix.tags import SYMBOL_CLASS, Location, TagDatabase
from simulators.plant import snapshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.logix.faults import FaultPlan
    from simulators.logix.identity import Identity

__all__ = ["MessageRouter"]

_log = logging.getLogger(__name__)

IDENTITY_CLASS = 0x01
ROUTER_CLASS = 0x02
PROGRAM_NAME_CLASS = 0x64
WALL_CLOCK_CLASS = 0x8B
_CLOCK_MICROSECONDS = frozenset({6, 11})  # local and UTC time, ULINT microseconds
_CLOCK_ATTRIBUTES = {6: 8, 10: 1, 11: 8}  # attribute -> size; 10 is the DST flag
_REPLY_HEADER = 4
_WRITE_SERVICES = frozenset(
    {Service.WRITE_TAG, Service.WRITE_TAG_FRAGMENTED, Service.READ_MODIFY_WRITE}
)
_TAG_SERVICES = frozenset(
    {
        Service.READ_TAG,
        Service.READ_TAG_FRAGMENTED,
        Service.WRITE_TAG,
        Service.WRITE_TAG_FRAGMENTED,
        Service.READ_MODIFY_WRITE,
    }
)


class MessageRouter:
    """Dispatches CIP requests by class (or symbol) and keeps every reply within ``limit``."""

    def __init__(
        self,
        db: TagDatabase,
        identity: Identity,
        program_name: str,
        faults: FaultPlan,
        clock: Callable[[], float],
    ) -> None:
        self._db = db
        self._identity = identity
        self._program_name = program_name
        self._faults = faults
        self._clock = clock
        self._clock_offset_us = 0
        self.served: Counter[int] = Counter()  # service code -> requests executed
        self.writes = 0  # write requests that reached the tag services, refused ones included

    def handle(self, message: bytes, limit: int) -> bytes:
        """Execute one encoded request; the reply is encoded and never longer than ``limit``."""
        try:
            request = parse_request(message)
        except CipError as err:
            service = message[0] if message else 0
            return CipReply.error(service, err).encode()
        return self.execute(request, limit).encode()

    def execute(self, req: CipRequest, limit: int) -> CipReply:
        """Execute a decoded request; failures become error replies."""
        self.served[req.service] += 1
        try:
            return self._dispatch(req, limit)
        except CipError as err:
            return CipReply.error(req.service, err)

    def _dispatch(self, req: CipRequest, limit: int) -> CipReply:
        head = req.path[0] if req.path else None
        if isinstance(head, SymbolSegment):
            if req.service == Service.GET_INSTANCE_ATTRIBUTE_LIST:
                self._check_tag_list()
                return self._symbol_list(req, head.name, limit)
            return self._tag_service(req, limit)
        if not isinstance(head, LogicalSegment) or head.kind != LogicalKind.CLASS:
            raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
        cls = head.value
        instance = req.logical(LogicalKind.INSTANCE)
        if cls == SYMBOL_CLASS:
            if req.service == Service.GET_INSTANCE_ATTRIBUTE_LIST:
                self._check_tag_list()
                return self._symbol_list(req, None, limit)
            return self._tag_service(req, limit)
        if cls == ROUTER_CLASS and req.service == Service.MULTIPLE_SERVICE_PACKET:
            return self._multiple_service(req, limit)
        if cls == symbols.TEMPLATE_CLASS:
            return self._template(req, instance, limit)
        if cls == IDENTITY_CLASS:
            self._require(req, Service.GET_ATTRIBUTES_ALL, instance)
            return CipReply(req.service, data=self._identity.attributes_all())
        if cls == PROGRAM_NAME_CLASS:
            self._require(req, Service.GET_ATTRIBUTES_ALL, instance)
            name = self._program_name.encode("ascii")
            return CipReply(req.service, data=struct.pack("<H", len(name)) + name)
        if cls == WALL_CLOCK_CLASS:
            return self._wall_clock(req, instance)
        raise CipError(CipStatus.PATH_DESTINATION_UNKNOWN, 0)

    @staticmethod
    def _require(req: CipRequest, service: int, instance: int | None) -> None:
        if instance != 1:
            raise CipError(CipStatus.PATH_DESTINATION_UNKNOWN, 0)
        if req.service != service:
            raise CipError(CipStatus.SERVICE_NOT_SUPPORTED)

    # -- tags ------------------------------------------------------------------------------

    def _check_tag_list(self) -> None:
        """Some controllers and protocol gateways refuse the tag list upload."""
        if self._faults.tag_list_refusal is not None:
            raise self._faults.tag_list_refusal

    def _symbol_list(self, req: CipRequest, program: str | None, limit: int) -> CipReply:
        if program is not None:
            if not program.lower().startswith("program:"):
                raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
            program = program[len("program:") :]
        start = req.logical(LogicalKind.INSTANCE) or 0
        status, data = symbols.instance_attribute_list(self._db, program, start, req.data, limit)
        return CipReply(req.service, status, data=data)

    def _locate(self, req: CipRequest) -> Location:
        try:
            loc = self._db.resolve(req.path)
        except CipError:
            injected = self._faults.take(None)
            if injected is not None:
                raise injected from None
            raise
        injected = self._faults.take(loc.tag.full_name)
        if injected is not None:
            raise injected
        return loc

    def _tag_service(self, req: CipRequest, limit: int) -> CipReply:
        if req.service not in _TAG_SERVICES:
            raise CipError(CipStatus.SERVICE_NOT_SUPPORTED)
        writing = req.service in _WRITE_SERVICES
        if writing:
            self.writes += 1
        # Values follow the plant model at the moment a request arrives.
        self._db.refresh(snapshot(self._clock()))
        loc = self._locate(req)
        if writing:
            refused = self._faults.refused_write(loc.tag.full_name)
            if refused is not None:
                raise refused
        access = loc.tag.access
        if access == "None" or (writing and access == "Read Only"):
            # External access is enforced per request, as a Logix controller does.
            raise CipError(CipStatus.PRIVILEGE_VIOLATION)
        service = req.service
        if service in (Service.READ_TAG, Service.READ_TAG_FRAGMENTED):
            fragmented = service == Service.READ_TAG_FRAGMENTED
            status, data = tagio.read_tag(self._db, loc, req.data, limit, fragmented=fragmented)
            return CipReply(service, status, data=data)
        if service == Service.READ_MODIFY_WRITE:
            tagio.read_modify_write(self._db, loc, req.data)
        else:
            fragmented = service == Service.WRITE_TAG_FRAGMENTED
            tagio.write_tag(self._db, loc, req.data, fragmented=fragmented)
        _log.debug("write to %s", loc.tag.full_name)
        return CipReply(service)

    def _template(self, req: CipRequest, instance: int | None, limit: int) -> CipReply:
        if req.service == Service.GET_ATTRIBUTE_LIST:
            data = symbols.template_attributes(self._db, instance, req.data)
            return CipReply(req.service, data=data)
        if req.service == Service.READ_TAG:
            status, data = symbols.template_read(self._db, instance, req.data, limit)
            return CipReply(req.service, status, data=data)
        raise CipError(CipStatus.SERVICE_NOT_SUPPORTED)

    # -- other objects ---------------------------------------------------------------------

    def _wall_clock(self, req: CipRequest, instance: int | None) -> CipReply:
        if instance != 1:
            raise CipError(CipStatus.PATH_DESTINATION_UNKNOWN, 0)
        if req.service not in (Service.GET_ATTRIBUTE_LIST, Service.SET_ATTRIBUTE_LIST):
            raise CipError(CipStatus.SERVICE_NOT_SUPPORTED)
        setting = req.service == Service.SET_ATTRIBUTE_LIST
        reader = Reader(req.data)
        count = reader.u16()
        out = [struct.pack("<H", count)]
        for _ in range(count):
            attr = reader.u16()
            size = _CLOCK_ATTRIBUTES.get(attr)
            if size is None:
                out.append(struct.pack("<HH", attr, CipStatus.ATTRIBUTE_NOT_SUPPORTED))
                if setting:
                    break  # the value's size is unknown, so the rest of the list is unreadable
                continue
            if setting:
                value = int.from_bytes(reader.take(size), "little")
                if attr in _CLOCK_MICROSECONDS:
                    self._clock_offset_us = value - int(self._clock() * 1_000_000)
                out.append(struct.pack("<HH", attr, CipStatus.SUCCESS))
                continue
            # Local and UTC time are the same here; DST (attribute 10) reads as 0.
            now = int(self._clock() * 1_000_000) + self._clock_offset_us
            value = now if attr in _CLOCK_MICROSECONDS else 0
            out.append(struct.pack("<HH", attr, CipStatus.SUCCESS) + value.to_bytes(size, "little"))
        return CipReply(req.service, data=b"".join(out))

    def _multiple_service(self, req: CipRequest, limit: int) -> CipReply:
        reader = Reader(req.data)
        count = reader.u16()
        offsets = [reader.u16() for _ in range(count)]
        bounds = [*offsets, len(req.data)]
        replies: list[bytes] = []
        failed = False
        for start, end in itertools.pairwise(bounds):
            body = req.data[start:end]
            if start > end or not body:
                raise CipError(CipStatus.NOT_ENOUGH_DATA)
            try:
                inner = parse_request(body)
                if inner.service == Service.MULTIPLE_SERVICE_PACKET:
                    raise CipError(CipStatus.SERVICE_NOT_SUPPORTED)
                reply = self.execute(inner, limit)
            except CipError as err:
                reply = CipReply.error(body[0], err)
            failed |= not reply.ok
            replies.append(reply.encode())
        # Replies that would overflow the connection become "reply data too large" (4 bytes),
        # keeping room for an error reply to every service after them.
        budget = limit - _REPLY_HEADER - 2 - 2 * count
        if budget < _REPLY_HEADER * count:
            raise CipError(CipStatus.REPLY_DATA_TOO_LARGE)
        used = 0
        for i, reply_bytes in enumerate(replies):
            if used + len(reply_bytes) + _REPLY_HEADER * (count - i - 1) > budget:
                service = reply_bytes[0] & 0x7F
                replies[i] = CipReply(service, CipStatus.REPLY_DATA_TOO_LARGE).encode()
                failed = True
            used += len(replies[i])
        table = [struct.pack("<H", count)]
        pos = 2 + 2 * count
        for reply_bytes in replies:
            table.append(struct.pack("<H", pos))
            pos += len(reply_bytes)
        status = CipStatus.EMBEDDED_SERVICE_ERROR if failed else CipStatus.SUCCESS
        return CipReply(req.service, status, data=b"".join(table + replies))
