"""Register replies decoded in one step: what pymodbus decodes, and malformed ones named."""

from __future__ import annotations

import random

import pytest
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from connectors.modbus.replies import HoldingRegisters, InputRegisters


def test_registers_and_wire_bytes_match_pymodbus_own_decode() -> None:
    rng = random.Random(7)
    for count in (1, 2, 60, 125):
        wire = bytes(rng.randrange(256) for _ in range(2 * count))
        ours, theirs = HoldingRegisters(), ReadHoldingRegistersResponse()
        ours.decode(bytes([2 * count]) + wire)
        theirs.decode(bytes([2 * count]) + wire)
        assert ours.registers == theirs.registers
        assert ours.wire == wire
        assert ours.malformed is None


@pytest.mark.parametrize(
    ("data", "registers", "malformed"),
    [
        (b"\x04\x00\x01", [1], "byte count 4, 2 bytes carried"),
        (b"\x04\x00\x01\x00", [1], "byte count 4, 3 bytes carried"),
        (b"\x03\x00\x01\x00", [1], "byte count 3, 3 bytes carried"),
        (b"\x02\x00\x01\x00\x02", [1], "byte count 2, 4 bytes carried"),
    ],
)
def test_a_malformed_reply_says_what_is_wrong_instead_of_raising(
    data: bytes, registers: list[int], malformed: str
) -> None:
    reply = InputRegisters()
    reply.decode(data)
    assert reply.malformed == malformed
    assert reply.registers == registers
    assert "bytes" in str(reply)  # brief: no register dump
