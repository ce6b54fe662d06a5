"""The Modbus connector against the simulator over real TCP with pymodbus on both ends."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes

from connectors.modbus.config import ModbusSource
from connectors.modbus.connector import ModbusConnector
from gateway.errors import ConnectionLost
from gateway.models import Batch, Quality
from gateway.runtime import SourceRunner
from simulators.broker import free_port
from simulators.modbus import ModbusSimulator
from simulators.plant import RECIPES
from tests.helpers import async_wait_until

pytestmark = pytest.mark.integration


def source(port: int, tags: list[dict[str, Any]], **kw: Any) -> ModbusSource:
    return ModbusSource.model_validate(
        {
            "name": "press1",
            "protocol": "modbus",
            "host": "127.0.0.1",
            "port": port,
            "tags": tags,
            **kw,
        }
    )


async def write_registers(port: int, address: int, registers: list[int], unit: int = 1) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    await client.write_registers(address, registers, device_id=unit)
    client.close()


async def read_until_lost(conn: ModbusConnector, src: ModbusSource) -> None:
    """Scan until a dropped connection shows: its close reaches the client in a few loop turns."""
    for _ in range(50):
        await conn.read(conn.plan(src.tags))


async def read(src: ModbusSource) -> dict[str, Any]:
    conn = ModbusConnector(src)
    await conn.connect()
    try:
        samples = await conn.read(conn.plan(src.tags))
    finally:
        await conn.close()
    assert all(s.quality is Quality.GOOD for s in samples), samples
    return {t.name: s.value for t, s in zip(src.tags, samples, strict=True)}


async def test_every_type_and_byte_order_decodes_hand_written_registers(
    modbus_sim: ModbusSimulator,
) -> None:
    # Written by the raw client as hand-encoded words, read back through the connector.
    await write_registers(modbus_sim.port, 100, [0x4148, 0x0000])  # 12.5 float32 ABCD
    await write_registers(modbus_sim.port, 102, [0x0000, 0x4148])  # 12.5 CDAB
    await write_registers(modbus_sim.port, 104, [0x4841, 0x0000])  # 12.5 BADC
    await write_registers(modbus_sim.port, 106, [0x0000, 0x4841])  # 12.5 DCBA
    await write_registers(modbus_sim.port, 108, [0xFFFF, 0xFFFE])  # -2 int32 ABCD
    await write_registers(modbus_sim.port, 110, [0x3344, 0x1122])  # 0x11223344 uint32 CDAB
    await write_registers(modbus_sim.port, 112, [0x0708, 0x0506, 0x0304, 0x0102])  # uint64 GHEFCDAB
    await write_registers(modbus_sim.port, 116, [0x4029, 0, 0, 0])  # 12.5 float64
    await write_registers(modbus_sim.port, 120, [0xFF38])  # -200 int16
    await write_registers(modbus_sim.port, 121, [0x4845, 0x4C4C, 0x4F00])  # "HELLO"
    await write_registers(modbus_sim.port, 124, [0b1000_0000_0000_1001])  # bits 0, 3, 15
    src = source(
        modbus_sim.port,
        [
            {"name": "f_abcd", "address": "holding:100", "type": "float32"},
            {"name": "f_cdab", "address": "holding:102", "type": "float32", "byte_order": "CDAB"},
            {"name": "f_badc", "address": "holding:104", "type": "float32", "byte_order": "BADC"},
            {"name": "f_dcba", "address": "holding:106", "type": "float32", "byte_order": "DCBA"},
            {"name": "i32", "address": "40109", "type": "int32"},
            {"name": "u32", "address": "holding:110", "type": "uint32", "byte_order": "CDAB"},
            {"name": "u64", "address": "holding:112", "type": "uint64", "byte_order": "GHEFCDAB"},
            {"name": "f64", "address": "holding:116", "type": "float64"},
            {"name": "i16", "address": "holding:120", "type": "int16"},
            {
                "name": "scaled",
                "address": "holding:120",
                "type": "int16",
                "multiplier": 0.1,
                "offset": 1,
            },
            {"name": "text", "address": "holding:121", "type": "string", "length": 3},
            {"name": "bit0", "address": "holding:124.0"},
            {"name": "bit1", "address": "holding:124.1"},
            {"name": "bit3", "address": "holding:124.3"},
            {"name": "bit15", "address": "40125.15"},
        ],
    )
    assert await read(src) == {
        "f_abcd": 12.5,
        "f_cdab": 12.5,
        "f_badc": 12.5,
        "f_dcba": 12.5,
        "i32": -2,
        "u32": 0x11223344,
        "u64": 0x0102030405060708,
        "f64": 12.5,
        "i16": -200,
        "scaled": -19.0,
        "text": "HELLO",
        "bit0": True,
        "bit1": False,
        "bit3": True,
        "bit15": True,
    }


async def test_moving_plant_values_agree_across_encodings(modbus_sim: ModbusSimulator) -> None:
    src = source(
        modbus_sim.port,
        [
            {"name": "sine_abcd", "address": "holding:10", "type": "float32"},
            {"name": "sine_cdab", "address": "holding:12", "type": "float32", "byte_order": "CDAB"},
            {"name": "sine_badc", "address": "holding:14", "type": "float32", "byte_order": "BADC"},
            {"name": "sine_dcba", "address": "holding:16", "type": "float32", "byte_order": "DCBA"},
            {
                "name": "sine_x100",
                "address": "holding:3",
                "type": "int16",
                "multiplier": 0.01,
                "offset": 50,
            },
            {"name": "counter32", "address": "holding:20", "type": "uint32"},
            {"name": "neg_counter", "address": "holding:22", "type": "int32", "byte_order": "CDAB"},
            {"name": "counter64", "address": "holding:34", "type": "uint64", "byte_order": "CDAB"},
            {"name": "counter16", "address": "holding:0"},
            {"name": "recipe", "address": "holding:40", "type": "string", "length": 8},
            {"name": "ramp", "address": "holding:1", "scale": {"raw": [0, 10000], "eng": [0, 100]}},
            {"name": "in_counter", "address": "input:0"},
        ],
        max_gap=10,
    )
    v = await read(src)
    assert v["sine_abcd"] == v["sine_cdab"] == v["sine_badc"] == v["sine_dcba"]
    assert 25 <= v["sine_abcd"] <= 75
    assert abs(v["sine_x100"] - v["sine_abcd"]) < 0.011
    assert v["neg_counter"] == -v["counter32"]
    assert v["counter64"] == v["counter32"]
    assert v["counter16"] == v["counter32"] % 65536
    assert v["recipe"] in RECIPES
    assert 0 <= v["ramp"] <= 100
    assert isinstance(v["in_counter"], int)


async def test_coils_and_discrete_inputs(modbus_sim: ModbusSimulator) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=modbus_sim.port)
    await client.connect()
    await client.write_coils(10, [True, False, True])
    client.close()
    src = source(
        modbus_sim.port,
        [
            {"name": "c10", "address": "coil:10"},
            {"name": "c11", "address": "coil:11"},
            {"name": "c12", "address": "00013"},
            {"name": "toggle_coil", "address": "coil:1"},
            {"name": "toggle_di", "address": "discrete:0"},
        ],
    )
    v = await read(src)
    assert (v["c10"], v["c11"], v["c12"]) == (True, False, True)
    assert isinstance(v["toggle_di"], bool)


async def test_adjacent_tags_are_read_in_one_request(modbus_sim: ModbusSimulator) -> None:
    tags = [{"name": f"r{i}", "address": f"holding:{200 + i}"} for i in range(120)]
    tags += [
        {"name": f"f{i}", "address": f"holding:{320 + 2 * i}", "type": "float32"} for i in range(20)
    ]
    src = source(modbus_sim.port, tags)
    conn = ModbusConnector(src)
    await conn.connect()
    before = modbus_sim.requests
    await conn.read(conn.plan(src.tags))
    await conn.close()
    assert modbus_sim.requests - before == 2  # 160 contiguous registers: 125 + 35


async def test_a_refused_request_marks_only_its_own_tags_bad(modbus_sim: ModbusSimulator) -> None:
    src = source(
        modbus_sim.port,
        [
            {"name": "a", "address": "holding:0"},
            {"name": "b", "address": "holding:500"},
            {"name": "c", "address": "coil:0"},
        ],
    )
    modbus_sim.faults.exception = ExcCodes.DEVICE_BUSY
    modbus_sim.faults.exception_range = ("holding", 500, 501)
    conn = ModbusConnector(src)
    await conn.connect()
    plan = conn.plan(src.tags)
    samples = await conn.read(plan)
    assert [s.quality for s in samples] == [Quality.GOOD, Quality.BAD, Quality.GOOD]
    assert [s.reason for s in samples] == [
        None,
        "read holding:500+1: Modbus exception 6 (server device busy)",
        None,
    ]
    modbus_sim.faults.exception = None
    samples = await conn.read(plan)  # the connection survived the exception
    assert [s.quality for s in samples] == [Quality.GOOD] * 3
    await conn.close()


async def test_illegal_address_and_unknown_unit_are_bad_not_fatal(
    modbus_sim: ModbusSimulator,
) -> None:
    src = source(
        modbus_sim.port, [{"name": "beyond", "address": "holding:49999", "type": "float32"}]
    )
    conn = ModbusConnector(src)
    await conn.connect()
    assert [s.quality for s in await conn.read(conn.plan(src.tags))] == [Quality.BAD]
    await conn.close()
    src = source(modbus_sim.port, [{"name": "x", "address": "holding:0"}], unit_id=9)
    conn = ModbusConnector(src)
    await conn.connect()
    assert [s.quality for s in await conn.read(conn.plan(src.tags))] == [Quality.BAD]
    await conn.close()


async def test_unreachable_device_raises_connection_lost() -> None:
    src = source(free_port(), [{"name": "x", "address": "holding:0"}], connect_timeout="1s")
    with pytest.raises(ConnectionLost, match=r"cannot connect to 127\.0\.0\.1"):
        await ModbusConnector(src).connect()


async def test_dropped_connection_raises_connection_lost(modbus_sim: ModbusSimulator) -> None:
    src = source(modbus_sim.port, [{"name": "x", "address": "holding:0"}])
    conn = ModbusConnector(src)
    await conn.connect()
    await conn.read(conn.plan(src.tags))
    await modbus_sim.stop()

    with pytest.raises(ConnectionLost):
        await read_until_lost(conn, src)
    await conn.close()


async def test_a_thousand_scattered_tags_make_the_expected_requests(
    modbus_sim: ModbusSimulator,
) -> None:
    # 1,000 tags in 40 clusters of 25, each cluster 300 registers from the next, mixed types
    # (holding and input, two unit ids): counted at the server, one request per cluster.
    tags = []
    for cluster in range(40):
        table = "holding" if cluster % 2 == 0 else "input"
        base = 1000 + cluster * 300
        for i in range(25):
            spec: dict[str, Any] = {"name": f"c{cluster}_{i}", "address": f"{table}:{base + 2 * i}"}
            spec["type"] = "float32" if i % 2 else "int32"
            if cluster >= 20:
                spec["unit_id"] = 2
            tags.append(spec)
    src = source(modbus_sim.port, tags)
    conn = ModbusConnector(src)
    await conn.connect()
    before = modbus_sim.requests
    samples = await conn.read(conn.plan(src.tags))
    await conn.close()
    assert modbus_sim.requests - before == 40
    assert all(s.quality is Quality.GOOD for s in samples)


async def test_connections_share_a_scan_and_read_what_one_connection_reads(
    modbus_sim: ModbusSimulator,
) -> None:
    # The bulk area holds a fixed pattern: the same registers must decode the same either way.
    tags = [
        {"name": f"t{i}", "address": f"holding:{1000 + 2 * i}", "type": t}
        for i, t in enumerate(["float32", "int32", "uint32"] * 100)
    ]
    one = source(modbus_sim.port, tags, max_registers_per_read=20)
    three = source(modbus_sim.port, tags, max_registers_per_read=20, connections=3)
    conn = ModbusConnector(three)
    await conn.connect()
    try:
        assert modbus_sim.clients == 3
        before = modbus_sim.requests
        samples = await conn.read(conn.plan(three.tags))
        assert modbus_sim.requests - before == 30  # 600 registers, 20 per request
        spread = {t.name: repr(s.value) for t, s in zip(three.tags, samples, strict=True)}
        assert all(s.quality is Quality.GOOD for s in samples)
    finally:
        await conn.close()
    assert spread == {name: repr(value) for name, value in (await read(one)).items()}  # NaN too


async def test_losing_one_of_several_connections_names_it_and_reconnecting_recovers(
    modbus_sim: ModbusSimulator,
) -> None:
    tags = [{"name": f"r{i}", "address": f"holding:{2000 + i}"} for i in range(400)]
    src = source(modbus_sim.port, tags, connections=2)
    conn = ModbusConnector(src)
    await conn.connect()
    await conn.read(conn.plan(src.tags))
    modbus_sim.drop_connections(1)

    with pytest.raises(ConnectionLost, match=r"\(connection [12] of 2\)"):
        await read_until_lost(conn, src)
    await conn.close()
    await conn.connect()  # what the runtime does next
    samples = await conn.read(conn.plan(src.tags))
    assert all(s.quality is Quality.GOOD for s in samples)
    # The server forgets the closed connection within a few loop turns.
    await async_wait_until(lambda: modbus_sim.clients == 2, 2, "two client connections")
    await conn.close()


async def test_a_malformed_reply_marks_its_tags_bad_and_the_next_scan_reads_again(
    modbus_sim: ModbusSimulator,
) -> None:
    # The reply's byte count claims two bytes more than it carries: that request's tags go
    # bad, the connection stays (pymodbus alone would drop it and every tag with it).
    src = source(modbus_sim.port, [{"name": "a", "address": "holding:0"}])
    conn = ModbusConnector(src)
    await conn.connect()
    plan = conn.plan(src.tags)
    modbus_sim.faults.garble = True
    try:
        (sample,) = await conn.read(plan)
    finally:
        modbus_sim.faults.garble = False
    assert sample.quality is Quality.BAD
    assert sample.reason == "read holding:0+1: malformed reply: byte count 4, 2 bytes carried"
    assert modbus_sim.clients == 1
    (sample,) = await conn.read(plan)
    assert sample.quality is Quality.GOOD
    await conn.close()


async def test_a_refused_tag_is_logged_once_by_the_runtime_and_never_by_the_connector(
    modbus_sim: ModbusSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    src = source(
        modbus_sim.port,
        [{"name": "a", "address": "holding:0"}, {"name": "b", "address": "holding:500"}],
        scan="20ms",
    )
    modbus_sim.faults.exception = ExcCodes.DEVICE_BUSY
    modbus_sim.faults.exception_range = ("holding", 500, 501)
    batches: list[Batch] = []
    runner = SourceRunner(src, src.tags, ModbusConnector(src), batches.append)
    task = asyncio.create_task(runner.run())

    def b_good() -> bool:
        return any(r.tag == "b" and r.quality is Quality.GOOD for b in batches for r in b.readings)

    try:
        await async_wait_until(lambda: runner.stats.scans >= 5, what="five scans, b refused")
        modbus_sim.faults.exception = None
        await async_wait_until(b_good, what="b readable again")
        scans = runner.stats.scans
        await async_wait_until(lambda: runner.stats.scans >= scans + 3, what="three more scans")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.quality"] == [
        "press1: tag(s) not good: b (read holding:500+1: Modbus exception 6 (server device busy))",
        "press1: tag(s) good again: b",
    ]
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("connectors")]
