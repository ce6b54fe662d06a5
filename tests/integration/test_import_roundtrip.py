"""``plantgate import`` round trips: each sample file in tests/data describes a simulator's real
tags; the YAML imported from it validates, and a source built from that YAML reads, over the
real protocol, the values the file describes."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.logix.config import LogixSource
from connectors.logix.connector import LogixConnector
from connectors.modbus.config import ModbusSource
from connectors.modbus.connector import ModbusConnector
from gateway.cli import main
from gateway.config import load_config
from gateway.models import Quality
from simulators.broker import free_port
from simulators.logix import LogixSimulator
from simulators.modbus import ModbusSimulator, words
from simulators.plant import snapshot
from tests.helpers import PLANT_T, f32

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data"
PLANT = snapshot(PLANT_T)
COUNT = PLANT.counter


@pytest.fixture
def frozen_modbus(modbus_sim: ModbusSimulator) -> ModbusSimulator:
    """The Modbus simulator's plant held at PLANT_T, and the setpoints the files describe."""
    for unit in modbus_sim.context.units.values():
        unit.refresh(PLANT_T)
        unit.refreshed = math.inf  # never refreshed again: the values hold still
    holding = modbus_sim.context.units[1].holding
    holding[100:102] = words(struct.pack(">f", 72.5), "CDAB")
    holding[102:104] = words(struct.pack(">i", -40000), "ABCD")
    holding[110:115] = words(b"LINE2".ljust(10, b"\0"), "ABCD")
    holding[120] = struct.unpack(">H", struct.pack(">h", -25))[0]
    holding[130:135] = words(b"PLANT".ljust(10, b"\0"), "BADC")  # low byte first
    return modbus_sim


@pytest.fixture
async def logix_sim() -> AsyncIterator[LogixSimulator]:
    simulator = LogixSimulator("127.0.0.1", free_port(), clock=lambda: PLANT_T)
    await simulator.start()
    yield simulator
    await simulator.stop()


def imported(tmp_path: Path, file: str, port: int, *extra: str) -> Any:
    """Run ``plantgate import`` and load the source it wrote, through the config loader."""
    out = tmp_path / "imported.yaml"
    args = ["import", str(DATA / file), "--source", "plant", "--host", "127.0.0.1"]
    assert main([*args, "--port", str(port), "-o", str(out), *extra]) == 0
    head = "gateway: {name: edge}\nmqtt: {url: 'mqtt://127.0.0.1:1883', topic_prefix: t}\n"
    config = tmp_path / "config.yaml"
    config.write_text(head + out.read_text())
    [source] = load_config(config).sources
    return source


async def read_modbus(src: ModbusSource) -> dict[str, Any]:
    conn = ModbusConnector(src)
    await conn.connect()
    try:
        samples = list(await conn.read(conn.plan(src.tags)))
    finally:
        await conn.close()
    assert [s.quality for s in samples] == [Quality.GOOD] * len(samples)
    return {t.name: s.value for t, s in zip(src.tags, samples, strict=True)}


def near(value: float) -> Any:
    return pytest.approx(value, rel=1e-6, abs=1e-9)


async def test_the_simple_csv_reads_the_modbus_simulators_registers(
    frozen_modbus: ModbusSimulator, tmp_path: Path
) -> None:
    src = imported(tmp_path, "press1.csv", frozen_modbus.port)
    values = await read_modbus(src)
    assert values == {
        "bottle_count": COUNT % 65536,
        "fill_level": near(round(PLANT.ramp * 100) / 100),
        "oven_temp": near(round(PLANT.temperature * 10) / 10),
        "sine": near(round((PLANT.sine - 50) * 100) / 100 + 50),
        "line_state": PLANT.state,
        "line_speed": PLANT.speed,
        "alarm_0": bool(PLANT.alarm_word & 1),
        "alarm_3": bool(PLANT.alarm_word >> 3 & 1),
        "sine_abcd": near(f32(PLANT.sine)),
        "sine_cdab": near(f32(PLANT.sine)),
        "sine_badc": near(f32(PLANT.sine)),
        "sine_dcba": near(f32(PLANT.sine)),
        "total_bottles": COUNT,
        "negative_count": -COUNT,
        "pressure": PLANT.pressure,
        "count64": COUNT,
        "recipe": PLANT.recipe,
        "input_count": COUNT % 65536,
        "unit2_count": (COUNT + 1000) % 65536,
        "running": PLANT.running,
        "toggle": PLANT.toggle,
        "speed_setpoint": 72.5,
        "batch_setpoint": -40000,
        "recipe_setpoint": "LINE2",
    }
    assert values["alarm_0"] != values["alarm_3"]  # the file's bit numbers are kept apart


async def test_the_kepware_export_reads_the_modbus_simulators_registers(
    frozen_modbus: ModbusSimulator, tmp_path: Path
) -> None:
    # Kepware keeps word order in its device settings: here "first word low", i.e. CDAB.
    src = imported(tmp_path, "press1_kepware.csv", frozen_modbus.port, "--byte-order", "CDAB")
    assert src.byte_order == "CDAB"
    values = await read_modbus(src)
    assert values == {
        "Line.BottleCount": COUNT % 65536,
        "Line.FillLevel": near(round(PLANT.ramp * 100) / 100),
        "Line.OvenTemp": near(round(PLANT.temperature * 10) / 10),
        "Line.Sine": near(round((PLANT.sine - 50) * 100) / 100 + 50),
        "Line.State": PLANT.state,
        "Line.Speed": PLANT.speed,
        "Alarms.Bit0": bool(PLANT.alarm_word & 1),
        "Alarms.Bit3": bool(PLANT.alarm_word >> 3 & 1),
        "Vibration": near(f32(PLANT.sine)),
        "NegativeCount": -COUNT,
        "Count64": COUNT,
        "Recipe": PLANT.recipe,
        "Running": PLANT.running,
        "Toggle": PLANT.toggle,
        "Input.Count": COUNT % 65536,
        "Setpoint.Speed": 72.5,
        "Setpoint.Recipe": "PLANT",
        "Setpoint.Offset": 25,
    }


def flat(value: Any) -> Any:
    if isinstance(value, list):
        return [v for item in value for v in (flat(item) if isinstance(item, list) else [item])]
    return value


async def test_the_l5x_export_reads_the_logix_simulator_without_its_tag_list(
    logix_sim: LogixSimulator, tmp_path: Path
) -> None:
    src: LogixSource = imported(tmp_path, "line1.L5X", logix_sim.port)
    assert all(t.type is not None for t in src.tags)
    assert not src.uploads_tag_list
    # Every tag of the controller is in the file (member by member for the UDTs).
    bases = {t.address.base for t in src.tags}
    assert bases == {tag.full_name for tag in logix_sim.database.tags()}
    logix_sim.refuse_tag_list()  # the types come from the file, not from the controller
    conn = LogixConnector(src)
    await conn.connect()
    try:
        samples = await conn.read(conn.plan(src.tags))
    finally:
        await conn.close()
    bad = [t.name for t, s in zip(src.tags, samples, strict=True) if s.quality is not Quality.GOOD]
    assert bad == []
    for tag, sample in zip(src.tags, samples, strict=True):
        expected = flat(logix_sim.get_tag(str(tag.address)))
        got = flat(sample.value)
        if isinstance(expected, list):
            assert got == [near(v) if isinstance(v, float) else v for v in expected], tag.name
        else:
            assert got == (near(expected) if isinstance(expected, float) else expected), tag.name
    values = {t.name: s.value for t, s in zip(src.tags, samples, strict=True)}
    # Spot checks against the values the file's Data elements hold.
    assert values["TestDint"] == 123456
    assert values["LineName"] == "Bottling Line 1"
    assert values["MainProgram.Setpoint"] == 72.5
    assert values["Recipes_1.Name"] == "COLA_500"
    assert values["Line1.Faulted"] is False
