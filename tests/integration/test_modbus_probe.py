"""``plantgate probe`` against the simulator: the right reading is among the interpretations."""

from __future__ import annotations

import pytest
from pymodbus.client import AsyncModbusTcpClient

from connectors.modbus.probe import interpretations, parse_target, probe
from simulators.modbus import ModbusSimulator

pytestmark = pytest.mark.integration


def test_interpretations_show_12_5_under_the_matching_order() -> None:
    table = interpretations([0x0000, 0x4148, 0x0000, 0x0000]).splitlines()
    header, float32 = table[0], next(line for line in table if line.startswith("float32"))
    column = header.index("CDAB")
    assert float32[column:].split()[0] == "12.5"


def test_targets() -> None:
    assert parse_target("modbus://10.0.0.7:1502") == ("10.0.0.7", 1502)
    assert parse_target("10.0.0.7") == ("10.0.0.7", 502)
    with pytest.raises(ValueError, match="modbus://HOST"):
        parse_target("opc.tcp://x:4840")


async def test_probe_reads_the_device(modbus_sim: ModbusSimulator) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=modbus_sim.port)
    await client.connect()
    await client.write_registers(170, [0x4841, 0x0000], device_id=2)  # 12.5 in BADC
    client.close()
    out = await probe(f"modbus://127.0.0.1:{modbus_sim.port}", "40171", unit=2, count=2)
    assert out.startswith(f"holding:170..171 on 127.0.0.1:{modbus_sim.port}, unit 2")
    assert "hex:   4841 0000" in out
    assert "12.5" in next(line for line in out.splitlines() if line.startswith("float32"))
    refused = await probe(f"modbus://127.0.0.1:{modbus_sim.port}", "holding:49999", count=4)
    assert refused.endswith("exception 2 (illegal data address)")
