"""Logix writes: real pycomm3 against the Logix simulator; every kind of tag written, then read
back through the protocol; refusals carry the controller's CIP status; a value the tag cannot
hold never reaches the wire."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.logix.config import LogixSource
from connectors.logix.connector import LogixConnector
from gateway.errors import ConnectionLost, DeviceError
from gateway.models import Quality
from simulators.broker import free_port
from simulators.logix import CipStatus, ExtStatus, LogixSimulator
from simulators.logix.cip import Service
from simulators.logix.identity import Identity
from tests.helpers import PLANT_T, async_wait_until, f32

pytestmark = pytest.mark.integration


@pytest.fixture
async def sim() -> AsyncIterator[LogixSimulator]:
    simulator = LogixSimulator("127.0.0.1", free_port(), clock=lambda: PLANT_T)
    await simulator.start()
    yield simulator
    await simulator.stop()


def source(port: int, address: str, **kw: Any) -> LogixSource:
    tag = {"name": "sp", "address": address, "writable": True}
    return LogixSource.model_validate(
        {"name": "filler", "protocol": "logix", "host": "127.0.0.1", "port": port, "tags": [tag]}
        | kw
    )


@contextlib.asynccontextmanager
async def connected(src: LogixSource) -> AsyncIterator[LogixConnector]:
    conn = LogixConnector(src)
    await conn.connect()
    try:
        yield conn
    finally:
        await conn.close()


TREND = [i * 0.5 for i in range(1000)]
CASES: list[tuple[str, Any]] = [
    ("TestBool", False),
    ("TestSint", -100),
    ("TestInt", 31000),
    ("TestDint", -7654321),
    ("TestLint", -(2**62) + 5),
    ("TestUsint", 255),
    ("TestUint", 65535),
    ("TestUdint", 2**32 - 1),
    ("TestReal", 12.5),
    ("TestLreal", 0.1),
    ("Program:MainProgram.Setpoint", 80.25),
    ("DintArray[3]", 4242),  # an array element
    ("IntMatrix[2,3]", -5),  # an element of a two-dimensional array
    ("CurrentRecipe.BatchSize", 999),  # a UDT member
    ("CurrentRecipe.Limits.High", 200.5),  # a member of a nested UDT
    ("CurrentRecipe.Steps[1]", 77),  # an element of a member array
    ("Line1.Faulted", True),  # a BOOL member: one bit of a hidden host byte
    ("StatusBits.4", True),  # a bit of a DINT (read-modify-write)
    ("LineName", "Line 2"),  # a STRING
    ("LineName", "X" * 82),  # a STRING filled to its capacity
    ("CurrentRecipe.Name", "WATER_2L"),  # a STRING member
    ("Messages[2]", "restarted"),  # an element of a STRING array
    ("DintArray[10]{5}", [1, 2, 3, 4, 5]),  # a slice
    ("IntMatrix", [[r * 100 + c for c in range(5)] for r in range(4)]),  # a whole matrix
]


@pytest.mark.parametrize(("address", "value"), CASES, ids=[c[0] for c in CASES])
async def test_write_then_read_back(sim: LogixSimulator, address: str, value: Any) -> None:
    src = source(sim.port, address)
    before = sim.write_count
    async with connected(src) as conn:
        await conn.write(src.tags[0], value)
        [sample] = await conn.read(conn.plan(src.tags))
    assert sim.write_count == before + 1
    assert sample.quality is Quality.GOOD
    assert sample.value == value
    assert type(sample.value) is type(value)


async def test_a_large_array_is_written_in_fragments(sim: LogixSimulator) -> None:
    # REAL[1000] is 4,000 data bytes: more than a 4,000-byte connection holds with its header.
    src = source(sim.port, "Trend")
    async with connected(src) as conn:
        counts = sim.service_counts
        await conn.write(src.tags[0], TREND)
        fragments = sim.service_counts.get(Service.WRITE_TAG_FRAGMENTED, 0)
        fragments -= counts.get(Service.WRITE_TAG_FRAGMENTED, 0)
        [sample] = await conn.read(conn.plan(src.tags))
    assert fragments >= 2
    assert sample.value == TREND
    assert sim.get_tag("Trend") == [f32(v) for v in TREND]


async def test_a_write_lands_in_controller_memory(sim: LogixSimulator) -> None:
    src = source(sim.port, "CurrentRecipe.Limits.Low")
    async with connected(src) as conn:
        await conn.write(src.tags[0], 150.75)
    assert sim.get_tag("CurrentRecipe.Limits.Low") == 150.75
    assert sim.get_tag("CurrentRecipe.Limits.High") == 192.0  # its neighbour is untouched


@pytest.mark.parametrize(
    ("refuse", "expected"),
    [
        ((CipStatus.PATH_DESTINATION_UNKNOWN,), r"CIP status 0x05 \(path destination unknown\)$"),
        (
            (CipStatus.GENERAL_ERROR, 0x2108),
            r"CIP status 0xFF \(general error\), extended 0x2108 \(controller in upload or "
            r"download mode\)$",
        ),
    ],
    ids=["path-destination-unknown", "general-error-extended"],
)
async def test_a_refused_write_carries_the_cip_status(
    sim: LogixSimulator, refuse: tuple[int, ...], expected: str
) -> None:
    src = source(sim.port, "TestDint")
    async with connected(src) as conn:
        sim.refuse_writes(*refuse, tag="TestDint")
        before = sim.write_count
        with pytest.raises(DeviceError, match=r"^sp \(TestDint\): write refused: " + expected):
            await conn.write(src.tags[0], 5)
        assert sim.write_count == before + 1  # it reached the controller, which said no
        sim.clear_faults()
        [sample] = await conn.read(conn.plan(src.tags))  # the connection lives on
    assert sample.value == 123456


async def test_a_read_only_tag_refuses_writes_with_a_privilege_violation(
    sim: LogixSimulator,
) -> None:
    src = source(sim.port, "SpeedLimit")
    async with connected(src) as conn:
        [before] = await conn.read(conn.plan(src.tags))
        with pytest.raises(DeviceError, match=r"CIP status 0x0F \(privilege violation\)"):
            await conn.write(src.tags[0], 1000)
        [after] = await conn.read(conn.plan(src.tags))
    assert before.value == after.value == 900


async def test_a_type_mismatch_on_the_wire_is_reported(sim: LogixSimulator) -> None:
    # The controller checks the type a write declares; its refusal names the mismatch.
    src = source(sim.port, "TestReal")
    async with connected(src) as conn:
        sim.refuse_writes(CipStatus.GENERAL_ERROR, ExtStatus.TYPE_MISMATCH)
        with pytest.raises(DeviceError, match=r"extended 0x2107 .*does not match"):
            await conn.write(src.tags[0], 1.0)


@pytest.mark.parametrize(
    ("address", "value", "why"),
    [
        ("TestDint", 2**31, r"2147483648 does not fit a DINT \(-2147483648 to 2147483647\)"),
        ("TestUsint", -1, "does not fit a USINT"),
        ("TestInt", 1.5, "not a whole number"),
        ("TestInt", True, "needs a whole number"),
        ("TestReal", 1e39, "does not fit a REAL"),
        ("TestReal", "3.5", "needs a number"),
        ("TestBool", 2, "needs true or false"),
        ("LineName", "X" * 83, "83 characters do not fit a STRING of 82"),
        ("LineName", "Ω", "cannot hold"),
        ("DintArray[10]{5}", [1, 2, 3], r"DINT\[5\] needs a list of 5 values"),
        ("IntMatrix", [1, 2, 3], r"shape \[4, 5\]"),
        ("CurrentRecipe", {"BatchSize": 1}, "is a structure: write its members"),
    ],
    ids=lambda v: str(v)[:20],
)
async def test_a_value_the_tag_cannot_hold_never_reaches_the_wire(
    sim: LogixSimulator, address: str, value: Any, why: str
) -> None:
    src = source(sim.port, address)
    async with connected(src) as conn:
        before = sim.write_count
        with pytest.raises(ValueError, match=why):
            await conn.write(src.tags[0], value)
    assert sim.write_count == before


async def test_an_unknown_tag_is_refused_before_the_wire(sim: LogixSimulator) -> None:
    src = source(sim.port, "NoSuchTag")
    async with connected(src) as conn:
        before = sim.write_count
        with pytest.raises(DeviceError, match="NoSuchTag is not in the controller's tag list"):
            await conn.write(src.tags[0], 1)
    assert sim.write_count == before


async def test_writing_while_not_connected_raises_connection_lost(sim: LogixSimulator) -> None:
    src = source(sim.port, "TestDint")
    conn = LogixConnector(src)
    with pytest.raises(ConnectionLost, match="not connected"):
        await conn.write(src.tags[0], 1)
    assert sim.write_count == 0


async def test_a_write_that_times_out_is_not_retried(sim: LogixSimulator) -> None:
    src = source(sim.port, "TestDint", timeout="300ms")
    conn = LogixConnector(src)
    await conn.connect()
    sim.stall()
    with pytest.raises(ConnectionLost, match="may or may not have been applied"):
        await conn.write(src.tags[0], 42)
    await conn.close()
    sim.resume()
    # The controller applies the queued request late, after the client gave up: why a write
    # that timed out is never sent again blindly.
    await async_wait_until(lambda: sim.get_tag("TestDint") == 42, what="the late write")
    assert sim.write_count == 1


@pytest.mark.parametrize("micro800", [False, True], ids=["controllogix", "micro800"])
async def test_writes_on_a_500_byte_connection_fragment_at_its_size(micro800: bool) -> None:
    # No Large Forward Open: 500-byte packets, so REAL[1000] takes at least nine fragments.
    # A Micro800 gets no slot in its path and every request on its own.
    identity = Identity(product_name="2080-LC50-48QWB", revision=(12, 11)) if micro800 else None
    sim = LogixSimulator(
        "127.0.0.1", free_port(), identity=identity, clock=lambda: PLANT_T,
        large_forward_open=False,
    )  # fmt: skip
    await sim.start()
    try:
        src = source(sim.port, "Trend", slot=None if micro800 else 0)
        async with connected(src) as conn:
            assert conn.connection_size == 500
            counts = sim.service_counts
            await conn.write(src.tags[0], TREND)
            fragments = sim.service_counts.get(Service.WRITE_TAG_FRAGMENTED, 0)
            fragments -= counts.get(Service.WRITE_TAG_FRAGMENTED, 0)
            [sample] = await conn.read(conn.plan(src.tags))
    finally:
        await sim.stop()
    assert fragments >= 9
    assert sample.value == TREND
