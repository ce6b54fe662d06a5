"""One client's protocol state: encapsulation commands, its session and its CIP connections."""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING

from simulators.logix.cip import (
    CipError,
    CipReply,
    CipStatus,
    ExtStatus,
    LogicalKind,
    Service,
    parse_request,
)
from simulators.logix.connmgr import (
    CONNECTION_MANAGER_CLASS,
    CipConnection,
    ForwardClose,
    ForwardOpen,
    UnconnectedSend,
    check_route,
)
from simulators.logix.encap import (
    Command,
    CpfItem,
    EncapHeader,
    EncapStatus,
    ItemType,
    decode_cpf,
    encode_cpf,
    encode_item_list,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from simulators.logix.identity import Identity
    from simulators.logix.router import MessageRouter

__all__ = ["UCMM_LIMIT", "Session"]

_log = logging.getLogger(__name__)

UCMM_LIMIT = 504  # largest unconnected (UCMM) reply a Logix controller sends
_PROTOCOL_VERSION = 1
_COMMS_CAPABILITIES = 0x0120  # CIP over TCP + class 0/1 over UDP
_COMMS_NAME = b"Communications\x00\x00"


class Session:
    """Answers the encapsulation frames of one TCP client; owns its CIP connections."""

    def __init__(
        self,
        router: MessageRouter,
        identity: Identity,
        local_address: tuple[str, int],
        handles: Iterator[int],
        connection_ids: Iterator[int],
        *,
        slot: int,
        large_forward_open: bool,
    ) -> None:
        self._router = router
        self._identity = identity
        self._local_address = local_address
        self._handles = handles
        self._connection_ids = connection_ids
        self._slot = slot
        self._large_forward_open = large_forward_open
        self.handle = 0  # encapsulation session handle, 0 until RegisterSession
        self.connections: dict[int, CipConnection] = {}  # by the O->T id we chose

    def reply(self, header: EncapHeader, payload: bytes) -> bytes | None:
        """Reply frame for one request frame (None: the command has no reply)."""
        command = header.command
        if command == Command.NOP:
            return None
        if command == Command.LIST_IDENTITY:
            # Report the address the client reached us on, as a device reports its own IP.
            item = self._identity.list_identity_item(*self._local_address)
            return header.reply(encode_item_list(CpfItem(ItemType.LIST_IDENTITY, item)))
        if command == Command.LIST_SERVICES:
            body = struct.pack("<HH", _PROTOCOL_VERSION, _COMMS_CAPABILITIES) + _COMMS_NAME
            return header.reply(encode_item_list(CpfItem(ItemType.LIST_SERVICES, body)))
        if command == Command.LIST_INTERFACES:
            return header.reply(encode_item_list())
        if command == Command.REGISTER_SESSION:
            return self._register(header, payload)
        if command not in (Command.SEND_RR_DATA, Command.SEND_UNIT_DATA):
            return header.reply(status=EncapStatus.INVALID_COMMAND)
        if not self.handle or header.session != self.handle:
            return header.reply(status=EncapStatus.INVALID_SESSION)
        try:
            items = decode_cpf(payload)
        except ValueError:
            return header.reply(status=EncapStatus.INCORRECT_DATA)
        if command == Command.SEND_RR_DATA:
            data = self._send_rr_data(items)
        else:
            data = self._send_unit_data(items)
        if data is None:
            return header.reply(status=EncapStatus.INCORRECT_DATA)
        return header.reply(data)

    def _register(self, header: EncapHeader, payload: bytes) -> bytes:
        if len(payload) != 4:
            return header.reply(status=EncapStatus.INVALID_LENGTH)
        version, _options = struct.unpack("<HH", payload)
        if version != _PROTOCOL_VERSION:
            return header.reply(payload, status=EncapStatus.UNSUPPORTED_PROTOCOL)
        if self.handle:
            return header.reply(payload, status=EncapStatus.INVALID_COMMAND)
        self.handle = next(self._handles)
        return header.reply(struct.pack("<HH", _PROTOCOL_VERSION, 0), session=self.handle)

    # -- SendRRData / SendUnitData ---------------------------------------------------------

    def _send_rr_data(self, items: list[CpfItem]) -> bytes | None:
        if len(items) < 2 or items[1].type_id != ItemType.UNCONNECTED_DATA:
            return None
        reply = self._unconnected(items[1].data)
        return encode_cpf(CpfItem(ItemType.NULL_ADDRESS), CpfItem(ItemType.UNCONNECTED_DATA, reply))

    def _send_unit_data(self, items: list[CpfItem]) -> bytes | None:
        if (
            len(items) < 2
            or items[0].type_id != ItemType.CONNECTED_ADDRESS
            or len(items[0].data) != 4
            or items[1].type_id != ItemType.CONNECTED_DATA
            or len(items[1].data) < 2
        ):
            return None
        (connection_id,) = struct.unpack("<I", items[0].data)
        sequence = items[1].data[:2]
        message = items[1].data[2:]
        conn = self.connections.get(connection_id)
        if conn is None:
            service = message[0] if message else 0
            err = CipError(CipStatus.CONNECTION_FAILURE, ExtStatus.CONNECTION_NOT_FOUND)
            reply, to_id = CipReply.error(service, err).encode(), 0
        else:
            seq = int.from_bytes(sequence, "little")
            if conn.last_sequence == seq and conn.last_reply:
                # Same sequence count = a retransmission: answer again, do not execute twice.
                reply = conn.last_reply
            else:
                reply = self._router.handle(message, conn.reply_limit)
                conn.last_sequence, conn.last_reply = seq, reply
            to_id = conn.to_id
        return encode_cpf(
            CpfItem(ItemType.CONNECTED_ADDRESS, struct.pack("<I", to_id)),
            CpfItem(ItemType.CONNECTED_DATA, sequence + reply),
        )

    # -- connection manager ----------------------------------------------------------------

    def _unconnected(self, message: bytes) -> bytes:
        """An unconnected request: Connection Manager services, or straight to the router."""
        try:
            req = parse_request(message)
        except CipError as err:
            return CipReply.error(message[0] if message else 0, err).encode()
        if req.logical(LogicalKind.CLASS) != CONNECTION_MANAGER_CLASS or len(req.path) != 2:
            return self._router.execute(req, UCMM_LIMIT).encode()
        if req.logical(LogicalKind.INSTANCE) != 1:
            unknown = CipError(CipStatus.PATH_DESTINATION_UNKNOWN, 0)
            return CipReply.error(req.service, unknown).encode()
        if req.service == Service.READ_TAG_FRAGMENTED:  # Unconnected Send on this class
            return self._unconnected_send(req.service, req.data)
        if req.service in (Service.FORWARD_OPEN, Service.LARGE_FORWARD_OPEN):
            return self._forward_open(req.service, req.data)
        if req.service == Service.READ_MODIFY_WRITE:  # Forward Close on this class
            return self._forward_close(req.service, req.data)
        return CipReply.error(req.service, CipError(CipStatus.SERVICE_NOT_SUPPORTED)).encode()

    def _unconnected_send(self, service: int, data: bytes) -> bytes:
        try:
            send = UnconnectedSend.decode(data)
            check_route(send.route, self._slot)
        except CipError as err:
            # Routing errors carry the remaining path size after the extended status.
            return CipReply(service, err.status, err.extended, b"\x00").encode()
        # A Logix answers with the embedded service's reply itself, not an 0xD2 wrapper.
        return self._unconnected(send.message)

    def _forward_open(self, service: int, data: bytes) -> bytes:
        large = service == Service.LARGE_FORWARD_OPEN
        if large and not self._large_forward_open:
            # What a controller older than v20 says; clients fall back to a 500-byte connection.
            return CipReply(service, CipStatus.SERVICE_NOT_SUPPORTED).encode()
        try:
            request = ForwardOpen.decode(data, large=large)
        except CipError as err:
            return CipReply.error(service, err).encode()
        try:
            request.validate(large=large, slot=self._slot)
            if any(c.request.key == request.key for c in self.connections.values()):
                raise CipError(CipStatus.CONNECTION_FAILURE, ExtStatus.CONNECTION_IN_USE)
        except CipError as err:
            return CipReply(service, err.status, err.extended, request.failure_data()).encode()
        conn = CipConnection(next(self._connection_ids), request)
        self.connections[conn.ot_id] = conn
        _log.debug("forward open: O->T 0x%08X, %d bytes", conn.ot_id, request.size)
        return CipReply(service, data=conn.open_reply()).encode()

    def _forward_close(self, service: int, data: bytes) -> bytes:
        try:
            request = ForwardClose.decode(data)
        except CipError as err:
            return CipReply.error(service, err).encode()
        for ot_id, conn in list(self.connections.items()):
            if conn.request.key == request.key:
                del self.connections[ot_id]
                return CipReply(service, data=request.reply()).encode()
        ext = (ExtStatus.CONNECTION_NOT_FOUND,)
        return CipReply(service, CipStatus.CONNECTION_FAILURE, ext, request.reply()).encode()
