"""Writes: every type and byte order round-trips through the simulator; the guard stops the rest."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.modbus.config import ModbusSource
from connectors.modbus.connector import ModbusConnector
from gateway.errors import DeviceError
from gateway.models import Quality
from simulators.modbus import ModbusSimulator

pytestmark = pytest.mark.integration

CASES: list[tuple[dict[str, Any], Any]] = [
    ({"type": "int16"}, -1234),
    ({"type": "uint16", "byte_order": "DCBA"}, 0xBEEF),
    ({"type": "int32", "byte_order": "CDAB"}, -123456789),
    ({"type": "uint32", "byte_order": "BADC"}, 0xDEADBEEF),
    ({"type": "int64", "byte_order": "HGFEDCBA"}, -(2**62) + 7),
    ({"type": "uint64", "byte_order": "GHEFCDAB"}, 2**64 - 2),
    ({"type": "float32", "byte_order": "DCBA"}, 12.5),
    ({"type": "float64", "byte_order": "BADCFEHG"}, -0.1),
    ({"type": "string", "length": 5}, "SETPOINT"),
    ({"type": "uint16", "scale": {"raw": [0, 10000], "eng": [0, 100]}}, 42.5),
    ({"type": "int16", "multiplier": 0.1, "offset": -40}, 21.7),
]


def source(port: int, tags: list[dict[str, Any]]) -> ModbusSource:
    return ModbusSource.model_validate(
        {"name": "press1", "protocol": "modbus", "host": "127.0.0.1", "port": port, "tags": tags}
    )


@pytest.mark.parametrize(("spec", "value"), CASES, ids=[f"{c[0]['type']}-{c[1]!r}" for c in CASES])
async def test_write_then_read_back(
    modbus_sim: ModbusSimulator, spec: dict[str, Any], value: Any
) -> None:
    src = source(
        modbus_sim.port, [{"name": "sp", "address": "holding:150", "writable": True, **spec}]
    )
    conn = ModbusConnector(src)
    await conn.connect()
    await conn.write(src.tags[0], value)
    [sample] = await conn.read(src.tags)
    await conn.close()
    assert sample.quality is Quality.GOOD
    assert (
        sample.value == pytest.approx(value) if isinstance(value, float) else sample.value == value
    )


async def test_coils_and_register_bits(modbus_sim: ModbusSimulator) -> None:
    src = source(
        modbus_sim.port,
        [
            {"name": "valve", "address": "coil:15", "writable": True},
            {"name": "word", "address": "holding:160"},
            {"name": "bit2", "address": "holding:160.2", "writable": True},
            {"name": "bit9", "address": "holding:160.9", "writable": True},
        ],
    )
    conn = ModbusConnector(src)
    await conn.connect()
    valve, word, bit2, bit9 = src.tags
    await conn.write(valve, True)
    await conn.write(word, 0b1)  # the writable check is the guard's job, not the connector's
    await conn.write(bit2, True)
    await conn.write(bit9, True)
    await conn.write(bit2, False)
    values = [s.value for s in await conn.read(src.tags)]
    await conn.close()
    assert values == [True, 0b10_0000_0001, False, True]


async def test_input_registers_are_read_only(modbus_sim: ModbusSimulator) -> None:
    src = source(modbus_sim.port, [{"name": "x", "address": "input:5", "writable": True}])
    conn = ModbusConnector(src)
    await conn.connect()
    with pytest.raises(DeviceError, match="read-only"):
        await conn.write(src.tags[0], 1)
    await conn.close()


async def test_a_value_that_does_not_fit_is_refused_before_the_wire(
    modbus_sim: ModbusSimulator,
) -> None:
    src = source(modbus_sim.port, [{"name": "x", "address": "holding:150", "type": "int16"}])
    conn = ModbusConnector(src)
    await conn.connect()
    before = modbus_sim.requests
    with pytest.raises(ValueError, match="does not fit int16"):
        await conn.write(src.tags[0], 40000)
    with pytest.raises(ValueError, match="not a whole number"):
        await conn.write(src.tags[0], 1.5)
    assert modbus_sim.requests == before
    await conn.close()
