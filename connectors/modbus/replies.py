"""Register replies decoded in one step, registered on each pymodbus client we open.

pymodbus unpacks a reply one register at a time and formats the whole reply into a debug
string whether or not debug logging is on: at 10,000 tags a scan that was a third of the
connector's CPU. These classes keep the reply's wire bytes (the decoder needs exactly
those), unpack the registers with one ``struct`` call, describe themselves briefly, and
report a malformed reply instead of raising.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse


class _Fast:
    """The decode shared by both register tables."""

    function_code: int
    registers: Sequence[int]
    wire: bytes  # the registers as they came off the wire, big-endian words
    malformed: str | None  # what is wrong with the reply, if anything

    def decode(self, data: bytes) -> None:
        """Decode a register reply: a byte count, then that many bytes of registers."""
        # pymodbus raises on a bad byte count, and its framer then drops the connection. The
        # frame's length came from its header, so the stream is still in step: keep the
        # connection and let the connector refuse just this reply.
        size, carried = data[0], len(data) - 1
        self.malformed = None
        if size != carried or size % 2:
            self.malformed = f"byte count {size}, {carried} bytes carried"
        self.wire = bytes(data[1 : 1 + min(size, carried) // 2 * 2])
        self.registers = list(struct.unpack(f">{len(self.wire) // 2}H", self.wire))

    def __str__(self) -> str:
        return f"{type(self).__name__}(function_code={self.function_code}, {len(self.wire)} bytes)"


class HoldingRegisters(_Fast, ReadHoldingRegistersResponse):
    """A function 3 reply."""


class InputRegisters(_Fast, ReadInputRegistersResponse):
    """A function 4 reply."""


REPLIES = (HoldingRegisters, InputRegisters)
