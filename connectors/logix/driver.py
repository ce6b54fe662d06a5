"""pycomm3's LogixDriver, adapted: it counts what it sends, keeps the CIP status of a refused
request, checks replies against declared types, and says plainly when the tag list is refused.

pycomm3 1.2.16 (pinned) is used below its public API here; each override says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pycomm3 import CommError, LogixDriver
from pycomm3.logix_driver import _tag_return_size
from pycomm3.packets.logix import (
    MultiServiceResponsePacket,
    ReadTagFragmentedRequestPacket,
    ReadTagResponsePacket,
)

from connectors.logix.declared import STRING_HANDLE, STRUCTURE_REPLY, TYPE_NAMES, reply_type
from connectors.logix.status import CONNECTED_STATUS_AT, CipStatus, reply_status
from gateway.errors import ConnectionLost

# Connection bytes around a Read Tag reply's data: sequence count (2), reply header (4) and
# data type (2, or 4 with a structure's handle).
READ_REPLY_OVERHEAD = 10
_OK = (0x00, 0x06)  # success, partial transfer (more fragments follow)


class Driver(LogixDriver):
    """pycomm3's driver, counting the packets it sends (one per CIP request or fragment)."""

    packets = 0
    broken = False  # the socket failed: a Forward Close could only fail too, and log a traceback
    refusal: CipStatus | None = None  # the first refused request since it was last cleared
    check_reply_types = False  # on when the tag list was declared, not uploaded

    def _send(self, message: bytes) -> Any:
        self.packets += 1
        return super()._send(message)  # type: ignore[no-untyped-call]

    def _receive(self) -> Any:
        # pycomm3 turns a refusal into text; keep the controller's own status code for messages.
        reply = super()._receive()  # type: ignore[no-untyped-call]
        status = reply_status(reply)
        if self.refusal is None and status is not None and not status.ok:
            self.refusal = status
        return reply

    def send(self, request: Any) -> Any:
        response = super().send(request)
        replies = (
            response.responses if isinstance(response, MultiServiceResponsePacket) else [response]
        )
        for reply in replies:
            if isinstance(reply, ReadTagResponsePacket) and reply.raw:
                self._check_read(reply)
        return response

    def _check_read(self, reply: Any) -> None:
        # pycomm3 words a refused read in its own way ("Extended status out of memory" for a
        # path segment error); say the controller's status code instead, as writes do.
        # Multi-service replies are re-framed by pycomm3 so that the status sits where a
        # connected reply has it.
        if reply.service_status not in _OK:  # pycomm3 has parsed the code: the rest, rarely
            status = reply_status(reply.raw, CONNECTED_STATUS_AT)
            if status is not None:
                reply._error = str(status)
                return
        # A declared type is trusted by pycomm3's decoder: a DINT declared where the controller
        # holds a REAL would decode as a plausible wrong number. The reply says its type: check.
        if self.check_reply_types:
            _check_type(reply)

    def _read_build_single_request(self, parsed_tag: dict[str, Any]) -> Any:
        # A Micro800 gets every read as a lone Read Tag (pycomm3 sends it no Multiple Service
        # Packets), so pairing with a small tag (LONE_READ_MARGIN) cannot help there: size the
        # lone read here, with its reply header, and fragment a reply that would not fit.
        request = super()._read_build_single_request(parsed_tag)  # type: ignore[no-untyped-call]
        if (
            request is not None
            and not isinstance(request, ReadTagFragmentedRequestPacket)
            and _tag_return_size(parsed_tag) + READ_REPLY_OVERHEAD  # type: ignore[no-untyped-call]
            > self.connection_size
        ):
            request = ReadTagFragmentedRequestPacket.from_request(self._sequence, request)
        return request

    def abandon(self) -> None:
        """Close only the socket: the controller drops the CIP connection when it times out."""
        self._target_is_connected = False
        self._session = 0

    def upload_tag_list(self, where: str, untyped: Sequence[str]) -> None:
        """Upload every controller and program tag; ConnectionLost says plainly if refused."""
        self.refusal = None
        try:
            self.get_tag_list(program="*")
        except Exception as exc:
            if _caused_by_comms(exc):
                self.broken = True
                raise ConnectionLost(f"{where}: tag list upload failed: {reason(exc)}") from exc
            raise ConnectionLost(tag_list_refused(where, self.refusal, exc, untyped)) from exc


def tag_list_refused(
    where: str, status: CipStatus | None, exc: BaseException, untyped: Sequence[str]
) -> str:
    """Why the source cannot start, and the three ways out."""
    why = str(status) if status is not None else f"pycomm3: {reason(exc)}"
    needs = ""
    if untyped:
        shown = ", ".join(untyped[:10]) + (
            f" (and {len(untyped) - 10} more)" if untyped[10:] else ""
        )
        needs = f" Tags without a declared type: {shown}."
    return (
        f"{where}: the controller refused the tag list upload ({why}), so tags cannot be "
        f"looked up by name.{needs} Declare each tag's type (type: DINT, type: REAL[100], "
        "type: STRING), or import the tags with their types from the controller's L5X export "
        "(plantgate import project.L5X); a source whose tags all declare a type does not "
        "upload the tag list (tag_list: false says so explicitly)."
    )


def reason(exc: BaseException) -> str:
    """pycomm3 wraps the socket error: say both ("failed to receive reply: timed out")."""
    parts: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(parts) < 3:
        parts.append(str(cause) or type(cause).__name__)
        cause = cause.__cause__
    return ": ".join(parts)


def _caused_by_comms(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, CommError | OSError):
            return True
        cause = cause.__cause__
    return False


def _check_type(reply: Any) -> None:
    expected = reply_type(reply.tag_info)
    data: bytes = reply.data or b""
    got = data[:4] if data[:2] == STRUCTURE_REPLY else data[:2]
    if expected is not None and got != expected:
        reply._error = (
            f"declared {_type_text(expected)}, but the controller holds {_type_text(got)}"
        )
        reply.value = None


def _type_text(type_bytes: bytes) -> str:
    if type_bytes[:2] == STRUCTURE_REPLY:
        if int.from_bytes(type_bytes[2:4], "little") == STRING_HANDLE:
            return "STRING"
        return f"a structure (handle 0x{int.from_bytes(type_bytes[2:4], 'little'):04X})"
    code = int.from_bytes(type_bytes[:2], "little")
    return TYPE_NAMES.get(code, f"type 0x{code:04X}")
