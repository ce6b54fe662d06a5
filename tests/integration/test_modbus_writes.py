"""Modbus writes against the simulator over TCP: the rules decide, the connector writes once,
the registers hold the right bytes, a read-back confirms; refusals never reach the device."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from connectors.modbus.config import ModbusSource, ModbusTag
from connectors.modbus.connector import ModbusConnector
from gateway.errors import DeviceError, WriteUnconfirmed
from gateway.models import Quality, Value
from gateway.writes import Accepted, Refused, Rule
from simulators.modbus import ModbusSimulator
from tests.helpers import async_wait_until
from tests.writing import decide, handle

pytestmark = pytest.mark.integration

FC_WRITE_COIL, FC_WRITE_REGISTER, FC_WRITE_REGISTERS = 5, 6, 16

# (tag spec, value the command sends, registers the device must then hold: written out by
# hand, not by our codec, so a byte order mirrored on both sides still fails).
REGISTER_CASES: list[tuple[dict[str, Any], Value, list[int]]] = [
    ({"type": "int16"}, -1234, [0xFB2E]),
    ({"type": "uint16", "byte_order": "DCBA"}, 0xBEEF, [0xEFBE]),
    ({"type": "int32", "byte_order": "CDAB"}, -123456789, [0x32EB, 0xF8A4]),
    ({"type": "uint32", "byte_order": "BADC"}, 0xDEADBEEF, [0xADDE, 0xEFBE]),
    ({"type": "uint32"}, 2**32 - 1, [0xFFFF, 0xFFFF]),
    ({"type": "int64", "byte_order": "HGFEDCBA"}, -(2**62) + 7, [0x0700, 0, 0, 0x00C0]),
    ({"type": "uint64", "byte_order": "GHEFCDAB"}, 2**64 - 2, [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]),
    ({"type": "float32", "byte_order": "DCBA"}, 12.5, [0x0000, 0x4841]),
    ({"type": "float32", "byte_order": "CDAB"}, 12.5, [0x0000, 0x4148]),
    ({"type": "float32"}, 0.1, [0x3DCC, 0xCCCD]),
    ({"type": "float64", "byte_order": "BADCFEHG"}, -0.1, [0xB9BF, 0x9999, 0x9999, 0x9A99]),
    ({"type": "string", "length": 5}, "SETPOINT", [0x5345, 0x5450, 0x4F49, 0x4E54, 0]),
    ({"type": "string", "length": 1, "byte_order": "BADC"}, "AB", [0x4241]),
    ({"type": "uint16", "scale": {"raw": [0, 10000], "eng": [0, 100]}}, 42.5, [4250]),
    ({"type": "uint16", "scale": {"raw": [0, 27648], "eng": [0, 100]}}, 33.3, [9207]),
    ({"type": "int16", "multiplier": 0.1, "offset": -40}, 21.7, [617]),
    ({"type": "int16", "multiplier": 0.1, "offset": -40}, -50, [0xFF9C]),
    ({"type": "float32", "multiplier": 0.5}, 21.5, [0x422C, 0x0000]),
]


def source(port: int, tags: list[dict[str, Any]], **extra: Any) -> ModbusSource:
    return ModbusSource.model_validate(
        {
            "name": "press1",
            "protocol": "modbus",
            "host": "127.0.0.1",
            "port": port,
            "tags": tags,
            **extra,
        }
    )


@pytest.fixture
async def connect() -> AsyncIterator[Any]:
    """Connect a ModbusConnector to a source; every one opened is closed at the end."""
    opened: list[ModbusConnector] = []

    async def open_connector(src: ModbusSource) -> ModbusConnector:
        conn = ModbusConnector(src)
        await conn.connect()
        opened.append(conn)
        return conn

    yield open_connector
    for conn in opened:
        await conn.close()


async def command(conn: ModbusConnector, tag: ModbusTag, value: Value) -> Accepted:
    """A command the rules accept, written and confirmed by reading the tag back."""
    verdict = await handle(conn, tag, value)
    assert isinstance(verdict, Accepted), verdict
    return verdict


def holding(sim: ModbusSimulator, start: int, count: int, unit: int = 1) -> list[int]:
    """The device's own memory: what the write left there."""
    return sim.context.units[unit].holding[start : start + count]


@pytest.mark.parametrize(
    ("spec", "value", "registers"),
    REGISTER_CASES,
    ids=[f"{c[0]['type']}-{c[0].get('byte_order', 'ABCD')}-{c[1]!r}" for c in REGISTER_CASES],
)
async def test_holding_registers_in_every_type_byte_order_and_scale(
    modbus_sim: ModbusSimulator,
    connect: Any,
    spec: dict[str, Any],
    value: Value,
    registers: list[int],
) -> None:
    src = source(
        modbus_sim.port, [{"name": "sp", "address": "holding:150", "writable": True, **spec}]
    )
    conn = await connect(src)
    verdict = await command(conn, src.tags[0], value)
    assert holding(modbus_sim, 150, len(registers)) == registers
    assert modbus_sim.writes == Counter({(1, FC_WRITE_REGISTERS, 150): 1})
    # A scan reads the same value the read-back did.
    [sample] = await conn.read(conn.plan(src.tags))
    assert verdict.matches(sample.value)


async def test_the_source_byte_order_and_unit_id_apply_to_writes(
    modbus_sim: ModbusSimulator, connect: Any
) -> None:
    src = source(
        modbus_sim.port,
        [{"name": "sp", "address": "holding:150", "type": "float32", "writable": True}],
        byte_order="CDAB",
        unit_id=2,
    )
    conn = await connect(src)
    await command(conn, src.tags[0], 12.5)
    assert holding(modbus_sim, 150, 2, unit=2) == [0x0000, 0x4148]
    assert holding(modbus_sim, 150, 2, unit=1) != [0x0000, 0x4148]


async def test_coils_and_register_bits(modbus_sim: ModbusSimulator, connect: Any) -> None:
    src = source(
        modbus_sim.port,
        [
            {"name": "valve", "address": "coil:15", "writable": True},
            {"name": "word", "address": "holding:160", "writable": True},
            {"name": "bit2", "address": "holding:160.2", "writable": True},
            {"name": "bit9", "address": "holding:160.9", "writable": True},
        ],
    )
    conn = await connect(src)
    valve, word, bit2, bit9 = src.tags
    await command(conn, valve, True)
    await command(conn, word, 0b1)
    await command(conn, bit2, True)
    await command(conn, bit9, True)
    await command(conn, bit2, False)
    # Setting and clearing bits left the register's other bits as they were.
    assert holding(modbus_sim, 160, 1) == [0b10_0000_0001]
    assert modbus_sim.context.units[1].coil[15] is True
    await command(conn, valve, False)
    assert modbus_sim.context.units[1].coil[15] is False
    samples = await conn.read(conn.plan(src.tags))
    assert [s.value for s in samples] == [False, 0b10_0000_0001, False, True]
    assert modbus_sim.writes == Counter(
        {
            (1, FC_WRITE_COIL, 15): 2,
            (1, FC_WRITE_REGISTERS, 160): 1,
            (1, FC_WRITE_REGISTER, 160): 3,  # one whole register per bit change
        }
    )


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ({"type": "int16"}, 70000),
        ({"type": "uint32"}, 2**32),
        ({"type": "int16"}, 1.5),
        ({"type": "uint16", "scale": {"raw": [0, 10000], "eng": [0, 100]}}, 700),
        ({"type": "string", "length": 2}, "TOO LONG"),
    ],
    ids=repr,
)
async def test_a_value_out_of_the_plc_range_never_reaches_the_device(
    modbus_sim: ModbusSimulator, connect: Any, spec: dict[str, Any], value: Value
) -> None:
    src = source(
        modbus_sim.port, [{"name": "sp", "address": "holding:150", "writable": True, **spec}]
    )
    conn = await connect(src)
    verdict = await handle(conn, src.tags[0], value)
    assert isinstance(verdict, Refused)
    assert verdict.rule is Rule.RANGE
    # The device answers reads (the connection is fine), and saw no write at all.
    assert (await conn.read_back(src.tags[0])).quality is Quality.GOOD
    assert modbus_sim.writes == Counter()
    assert conn.writes_sent == 0


async def test_a_modbus_exception_is_passed_through_with_its_code(
    modbus_sim: ModbusSimulator, connect: Any
) -> None:
    src = source(
        modbus_sim.port,
        [
            # holding 0-99 and coils 0-9 are the plant's own values: read-only on the device
            {"name": "counter", "address": "holding:0", "writable": True},
            {"name": "running", "address": "coil:0", "writable": True},
            {"name": "alarm_bit", "address": "holding:6.3", "writable": True},
            {"name": "sp", "address": "holding:150", "writable": True},
        ],
    )
    conn = await connect(src)
    counter, running, alarm_bit, sp = src.tags
    for tag, value in ((counter, 7), (running, True), (alarm_bit, True)):
        verdict = decide(conn, tag, value)
        assert isinstance(verdict, Accepted)
        with pytest.raises(DeviceError, match=r"write refused: Modbus exception 2 \(illegal data"):
            await conn.write(tag, verdict.value)
    modbus_sim.faults.write_exception = ExcCodes.DEVICE_FAILURE
    with pytest.raises(
        DeviceError, match=r"^sp \(holding:150\): write refused: Modbus exception 4 \(server dev"
    ):
        await conn.write(sp, 1)
    modbus_sim.faults.write_exception = None
    await command(conn, sp, 2)  # the connection lived through the refusals
    assert sum(modbus_sim.writes.values()) == 5  # each sent exactly once


async def test_a_write_without_an_answer_is_not_sent_again(
    modbus_sim: ModbusSimulator, connect: Any
) -> None:
    # retries: 2 makes reads try three times; a write must still go out once, because the
    # device may apply it after all.
    src = source(
        modbus_sim.port,
        [{"name": "sp", "address": "holding:150", "type": "int32", "writable": True}],
        timeout="300ms",
        retries=2,
    )
    conn = await connect(src)
    modbus_sim.faults.write_stall = 1.5
    with pytest.raises(WriteUnconfirmed, match="it may have been applied"):
        await conn.write(src.tags[0], 123456)
    await async_wait_until(
        lambda: holding(modbus_sim, 150, 2) == [0x0001, 0xE240], what="the late write to land"
    )
    modbus_sim.faults.write_stall = 0.0
    # The caller's move: read back to learn the outcome.
    sample = await conn.read_back(src.tags[0])
    assert sample.value == 123456
    assert modbus_sim.writes == Counter({(1, FC_WRITE_REGISTERS, 150): 1})


async def test_a_read_without_an_answer_is_asked_again(
    modbus_sim: ModbusSimulator, connect: Any
) -> None:
    # The other half of the bargain: a read changes nothing, so retries still apply to it.
    src = source(
        modbus_sim.port,
        [{"name": "sp", "address": "holding:150", "writable": True}],
        timeout="300ms",
        retries=2,
    )
    conn = await connect(src)
    await command(conn, src.tags[0], 77)
    modbus_sim.faults.stall, modbus_sim.faults.stall_count = 0.6, 1
    assert (await conn.read_back(src.tags[0])).value == 77
    assert modbus_sim.faults.stall_count == 0  # the first try was the one left unanswered
