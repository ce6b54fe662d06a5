"""Real pycomm3 and pylogix clients against the Logix simulator on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
import time
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from pycomm3 import CommError, LogixDriver
from pylogix import PLC

from simulators.logix import CipStatus, ExtStatus, LogixSimulator, serve_logix
from simulators.logix.cip import Service
from simulators.plant import snapshot
from tests.helpers import PLANT_T, f32

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

pytestmark = pytest.mark.integration

T = TypeVar("T")

CALL_TIMEOUT = 20.0


class FakeClock:
    """Wall clock the tests move by hand."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking client call off the event loop the simulator lives on."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), CALL_TIMEOUT)


def _close_quietly(driver: LogixDriver) -> None:
    with contextlib.suppress(CommError):
        driver.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(PLANT_T)


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[LogixSimulator]:
    simulator = LogixSimulator("127.0.0.1", 0, clock=clock)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def plc(sim: LogixSimulator) -> AsyncIterator[LogixDriver]:
    driver = LogixDriver(f"127.0.0.1:{sim.port}")
    await blocking(driver.open)
    yield driver
    await blocking(_close_quietly, driver)


@pytest.fixture
async def pylogix_plc(sim: LogixSimulator) -> AsyncIterator[PLC]:
    comm = PLC("127.0.0.1", port=sim.port, timeout=5.0)
    yield comm
    # Close() waits for the Forward Close reply: never block the simulator's loop with it.
    await blocking(comm.Close)
    comm.conn.msg_socket.close()  # pylogix 1.1.6 never closes its (unused) listener socket


async def wait_for(predicate: Callable[[], bool], deadline: float = 5.0) -> None:
    """Poll ``predicate`` until it holds or the deadline passes."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


# -- connection and tag list ---------------------------------------------------------------


async def test_open_with_defaults_identifies_a_controllogix(
    sim: LogixSimulator, plc: LogixDriver
) -> None:
    assert plc.connected
    assert plc.connection_size == 4000  # the Large Forward Open was granted
    assert plc.info["product_name"] == "1756-L83E/B"
    assert plc.info["revision"] == {"major": 33, "minor": 11}
    assert plc.info["keyswitch"] == "REMOTE RUN"
    assert plc.info["name"] == "PlantGate_Line1"
    assert plc._cfg["use_instance_ids"]  # revision >= 21: reads go by symbol instance
    assert sim.session_count == 1
    assert sim.connection_count == 1


async def test_close_releases_the_connection_and_session(
    sim: LogixSimulator, plc: LogixDriver
) -> None:
    await blocking(plc.close)
    await wait_for(lambda: sim.session_count == 0 and sim.connection_count == 0)


async def test_tag_list_has_controller_and_program_tags(plc: LogixDriver) -> None:
    tags = plc.tags
    for name in ("TestDint", "Trend", "CurrentRecipe", "LineName", "Line1"):
        assert name in tags
    assert tags["Program:MainProgram.BottleCount"]["data_type"] == "DINT"
    assert "Program:MainProgram.Setpoint" in tags
    assert "Program:Packaging.CaseCount" in tags
    assert set(plc.info["programs"]) == {"MainProgram", "Packaging"}
    assert plc.info["programs"]["Packaging"]["routines"] == ["Pack", "Palletise"]
    assert "MainTask" in plc.info["tasks"]
    assert tags["IntMatrix"]["dim"] == 2
    assert tags["IntMatrix"]["dimensions"] == [4, 5, 0]
    assert tags["RealCube"]["dim"] == 3
    assert tags["RealCube"]["dimensions"] == [2, 3, 4]
    assert tags["Trend"]["dimensions"] == [1000, 0, 0]
    assert not tags["TestDint"]["alias"]
    assert tags["TestDint"]["external_access"] == "Read/Write"


async def test_tag_list_carries_udt_definitions(plc: LogixDriver) -> None:
    recipe = plc.data_types["Recipe"]
    assert recipe["attributes"] == [
        "Name",
        "BatchSize",
        "FillVolume",
        "OvenTemp",
        "Limits",
        "Steps",
    ]
    members = recipe["internal_tags"]
    assert members["Name"]["data_type_name"] == "STRING"
    assert members["Limits"]["data_type_name"] == "Limits"
    assert members["Limits"]["data_type"]["attributes"] == ["Low", "High"]
    assert members["Steps"]["data_type_name"] == "INT"
    assert members["Steps"]["array"] == 4
    assert plc.tags["CurrentRecipe"]["data_type_name"] == "Recipe"

    status = plc.data_types["MachineStatus"]
    # The hidden host SINT is not an attribute; the BOOLs point at its bits.
    assert status["attributes"] == [
        "Running", "Faulted", "Blocked", "Starved", "State", "Speed", "AlarmWord", "Count"
    ]  # fmt: skip
    host = next(n for n in status["internal_tags"] if n.startswith("ZZZZZZZZZZ"))
    assert status["internal_tags"][host]["data_type_name"] == "SINT"
    running = status["internal_tags"]["Running"]
    faulted = status["internal_tags"]["Faulted"]
    assert running["data_type_name"] == "BOOL"
    assert (running["bit"], faulted["bit"]) == (0, 1)
    assert running["offset"] == status["internal_tags"][host]["offset"]
    assert plc.data_types["STRING"]["string"] == 82


# -- reads ---------------------------------------------------------------------------------

ATOMIC_VALUES = [
    ("TestBool", True, "BOOL"),
    ("TestSint", -12, "SINT"),
    ("TestInt", -1234, "INT"),
    ("TestDint", 123456, "DINT"),
    ("TestLint", 9_000_000_000, "LINT"),
    ("TestUsint", 200, "USINT"),
    ("TestUint", 60000, "UINT"),
    ("TestUdint", 4_000_000_000, "UDINT"),
    ("TestReal", 3.5, "REAL"),
    ("TestLreal", 2.718281828459045, "LREAL"),
]


@pytest.mark.parametrize(("tag", "value", "type_name"), ATOMIC_VALUES)
async def test_reads_every_atomic_type(
    plc: LogixDriver, tag: str, value: object, type_name: str
) -> None:
    result = await blocking(plc.read, tag)
    assert result.error is None
    assert result.value == value
    assert result.type == type_name


async def test_multi_tag_read_in_one_request(sim: LogixSimulator, plc: LogixDriver) -> None:
    before = sim.service_counts.get(0x0A, 0)
    names = [tag for tag, _, _ in ATOMIC_VALUES]
    results = await blocking(plc.read, *names, "Program:MainProgram.Setpoint", "LineName")
    assert [r.value for r in results[:-2]] == [value for _, value, _ in ATOMIC_VALUES]
    assert results[-2].value == 72.5
    assert results[-1].value == "Bottling Line 1"
    assert sim.service_counts[0x0A] == before + 1  # one Multiple Service Packet


async def test_array_element_slice_and_whole_array(plc: LogixDriver) -> None:
    element, part, whole = await blocking(
        plc.read, "DintArray[3]", "DintArray[10]{5}", "DintArray{20}"
    )
    assert element.value == 30
    assert part.value == [100, 110, 120, 130, 140]
    assert part.type == "DINT[5]"
    assert whole.value == [i * 10 for i in range(20)]


async def test_multi_dimensional_arrays(plc: LogixDriver) -> None:
    cell, matrix, cube_cell, cube = await blocking(
        plc.read, "IntMatrix[1,2]", "IntMatrix{20}", "RealCube[1,2,3]", "RealCube[1,0,0]{12}"
    )
    assert cell.value == 12
    assert matrix.value == [r * 10 + c for r in range(4) for c in range(5)]  # row-major
    assert cube_cell.value == 123.0
    assert cube.value == [100.0 + b * 10 + c for b in range(3) for c in range(4)]


async def test_large_array_is_read_in_fragments(sim: LogixSimulator, plc: LogixDriver) -> None:
    trend, other = await blocking(plc.read, "Trend{1000}", "TestDint")
    assert trend.error is None
    assert trend.value == [i * 0.25 for i in range(1000)]
    assert other.value == 123456
    # 4,000 bytes of data do not fit one 4,000-byte connection reply.
    assert sim.service_counts[Service.READ_TAG_FRAGMENTED] >= 2


async def test_single_read_too_large_for_the_connection_answers_partial(
    plc: LogixDriver,
) -> None:
    # pycomm3 1.2.16 sizes a lone read without the reply overhead, so it sends a plain Read
    # Tag for 4,000 bytes of data. Reply header, type and sequence count make that 4,008 bytes
    # on a 4,000-byte connection: like a controller, the simulator answers 0x06 with partial
    # data, which pycomm3 reports as an error for a plain Read Tag.
    result = await blocking(plc.read, "Trend{1000}")
    assert result.value is None
    assert "Insufficient Packet Space" in str(result.error)
    fits = await blocking(plc.read, "Trend{990}")  # 3,960 data bytes + 8 overhead fit
    assert fits.value == [i * 0.25 for i in range(990)]


async def test_udt_whole_and_members(plc: LogixDriver) -> None:
    snap = snapshot(PLANT_T)
    recipe, high, step, other_name, line = await blocking(
        plc.read,
        "CurrentRecipe",
        "CurrentRecipe.Limits.High",
        "CurrentRecipe.Steps[2]",
        "Recipes[1].Name",
        "Line1",
    )
    assert recipe.type == "Recipe"
    assert recipe.value["Name"] == snap.recipe
    assert recipe.value["OvenTemp"] == f32(snap.temperature)
    assert recipe.value["Limits"] == {"Low": 172.0, "High": 192.0}
    assert recipe.value["Steps"] == [10, 20, 30, 40]
    assert high.value == 192.0
    assert step.value == 30
    assert other_name.value == "COLA_500"
    assert set(line.value) == {
        "Running", "Faulted", "Blocked", "Starved", "State", "Speed", "AlarmWord", "Count"
    }  # fmt: skip
    assert line.value["Running"] is snap.running
    assert line.value["Count"] == snap.counter
    member = await blocking(plc.read, "Line1.Running")
    assert (member.value, member.type) == (snap.running, "BOOL")


async def test_array_of_udts(plc: LogixDriver) -> None:
    result = await blocking(plc.read, "Recipes{3}")
    assert [r["Name"] for r in result.value] == ["COLA_330", "COLA_500", "WATER_1L"]
    assert result.value[2]["FillVolume"] == 1000.0


async def test_bits_of_a_dint(sim: LogixSimulator, plc: LogixDriver) -> None:
    bit5, bit4 = await blocking(plc.read, "StatusBits.5", "StatusBits.4")
    assert (bit5.value, bit4.value) == (True, False)
    assert (await blocking(plc.write, "StatusBits.4", True)).error is None
    assert (await blocking(plc.write, "StatusBits.5", False)).error is None
    assert sim.get_tag("StatusBits") == 0b1001_0000
    assert (await blocking(plc.read, "StatusBits.4")).value is True


async def test_string_read_and_write(sim: LogixSimulator, plc: LogixDriver) -> None:
    assert (await blocking(plc.read, "LineName")).value == "Bottling Line 1"
    assert (await blocking(plc.write, "LineName", "Line 7, night shift")).error is None
    assert (await blocking(plc.read, "LineName")).value == "Line 7, night shift"
    assert sim.get_tag("LineName") == "Line 7, night shift"
    assert (await blocking(plc.write, "Messages[1]", "jam at filler")).error is None
    assert (await blocking(plc.read, "Messages{3}")).value == ["ok", "jam at filler", "stopped"]


# -- writes --------------------------------------------------------------------------------

WRITES = [
    ("TestBool", False),
    ("TestSint", 100),
    ("TestInt", -32000),
    ("TestDint", -2_000_000_000),
    ("TestLint", -(2**62)),
    ("TestUsint", 255),
    ("TestUint", 65535),
    ("TestUdint", 4_294_967_295),
    ("TestReal", -0.75),
    ("TestLreal", math.pi),
    ("DintArray[4]", 4444),
    ("IntMatrix[2,3]", -23),
    ("RealCube[1,2,3]", 0.5),
    ("Line1.Faulted", True),
    ("CurrentRecipe.Limits.Low", 150.25),
    ("CurrentRecipe.BatchSize", 999),
    ("Program:MainProgram.Setpoint", 80.5),
    ("Program:Packaging.Enabled", False),
]


@pytest.mark.parametrize(("tag", "value"), WRITES)
async def test_write_then_read_back(plc: LogixDriver, tag: str, value: object) -> None:
    written = await blocking(plc.write, tag, value)
    assert written.error is None
    assert (await blocking(plc.read, tag)).value == value


async def test_multi_tag_write_and_slice_write(sim: LogixSimulator, plc: LogixDriver) -> None:
    results = await blocking(
        plc.write, ("TestInt", 11), ("TestReal", 1.5), ("DintArray[0]{3}", [7, 8, 9])
    )
    assert all(r.error is None for r in results)
    assert sim.get_tag("TestInt") == 11
    assert sim.get_tag("TestReal") == 1.5
    assert sim.get_tag("DintArray[2]") == 9
    assert (await blocking(plc.read, "DintArray{4}")).value == [7, 8, 9, 30]


async def test_whole_udt_write(plc: LogixDriver) -> None:
    recipe = {
        "Name": "JUICE_250",
        "BatchSize": 321,
        "FillVolume": 250.0,
        "OvenTemp": 170.0,
        "Limits": {"Low": 160.0, "High": 180.0},
        "Steps": [1, 2, 3, 4],
    }
    assert (await blocking(plc.write, "Recipes[2]", recipe)).error is None
    assert (await blocking(plc.read, "Recipes[2]")).value == recipe


async def test_large_array_write_is_fragmented(sim: LogixSimulator, plc: LogixDriver) -> None:
    values = [float(-i) for i in range(1000)]
    assert (await blocking(plc.write, "Trend{1000}", values)).error is None
    assert sim.service_counts[Service.WRITE_TAG_FRAGMENTED] >= 2
    assert sim.get_tag("Trend") == values


# -- errors and faults ---------------------------------------------------------------------


async def test_unknown_tags_give_error_results_and_the_driver_keeps_working(
    plc: LogixDriver,
) -> None:
    unknown = await blocking(plc.read, "NoSuchTag")
    assert unknown.value is None
    assert unknown.error
    out_of_range, too_many, ok = await blocking(
        plc.read, "DintArray[99]", "DintArray[15]{10}", "TestDint"
    )
    assert "Destination unknown" in str(out_of_range.error)  # 0x05
    assert "(ff, 2105)" in str(too_many.error)  # beyond the end of the array
    assert ok.value == 123456
    assert (await blocking(plc.read, "TestInt")).value == -1234


async def test_write_with_the_wrong_type_is_a_type_mismatch(plc: LogixDriver) -> None:
    instance = plc.tags["TestDint"]["instance_id"]
    reply = await blocking(
        lambda: plc.generic_message(
            service=0x4D,
            class_code=0x6B,
            instance=instance,
            request_data=struct.pack("<HHf", 0xCA, 1, 1.5),  # REAL data for a DINT tag
            name="wrong type",
        )
    )
    assert "(ff, 2107)" in str(reply.error)
    assert (await blocking(plc.read, "TestDint")).value == 123456


async def test_injected_error_for_the_next_request(sim: LogixSimulator, plc: LogixDriver) -> None:
    sim.inject_error(CipStatus.GENERAL_ERROR, ExtStatus.TYPE_MISMATCH, count=1)
    failed = await blocking(plc.read, "TestDint")
    assert "(ff, 2107)" in str(failed.error)
    assert (await blocking(plc.read, "TestDint")).value == 123456


async def test_injected_error_for_one_tag(sim: LogixSimulator, plc: LogixDriver) -> None:
    sim.inject_error(CipStatus.PATH_DESTINATION_UNKNOWN, 0, count=None, tag="TestInt")
    for _ in range(2):
        bad, good = await blocking(plc.read, "TestInt", "TestDint")
        assert "Destination unknown" in str(bad.error)
        assert good.value == 123456
    sim.clear_faults()
    assert (await blocking(plc.read, "TestInt")).value == -1234


async def test_dropped_connections_fail_the_driver_until_it_reopens(
    sim: LogixSimulator, plc: LogixDriver
) -> None:
    assert sim.drop_connections() == 1
    with pytest.raises(CommError):
        await blocking(plc.read, "TestDint")
    await blocking(_close_quietly, plc)
    await blocking(plc.open)
    assert (await blocking(plc.read, "TestDint")).value == 123456
    assert sim.session_count == 1


async def test_stall_times_the_client_out_and_resume_answers_again(sim: LogixSimulator) -> None:
    driver = LogixDriver(f"127.0.0.1:{sim.port}")
    driver.socket_timeout = 0.5
    await blocking(driver.open)
    try:
        sim.stall()
        with pytest.raises(CommError):
            await blocking(driver.read, "TestDint")
        sim.resume()
        await blocking(_close_quietly, driver)
        await blocking(driver.open)
        assert (await blocking(driver.read, "TestDint")).value == 123456
    finally:
        await blocking(_close_quietly, driver)


async def test_timed_stall_delays_the_reply(sim: LogixSimulator, plc: LogixDriver) -> None:
    started = time.monotonic()
    sim.stall(0.3)
    assert (await blocking(plc.read, "TestDint")).value == 123456
    assert time.monotonic() - started >= 0.3


async def test_retransmitted_sequence_is_answered_not_executed(
    sim: LogixSimulator, plc: LogixDriver
) -> None:
    def same_count() -> Iterator[int]:
        while True:
            yield 4242

    plc._sequence = same_count()  # every packet now reuses one sequence count
    assert (await blocking(plc.write, "TestDint", 1)).error is None
    assert (await blocking(plc.write, "TestDint", 2)).error is None  # seen as a retransmission
    assert sim.get_tag("TestDint") == 1


# -- plant model and direct access ---------------------------------------------------------


async def test_values_follow_the_plant_until_written(
    clock: FakeClock, sim: LogixSimulator, plc: LogixDriver
) -> None:
    tag = "Program:MainProgram.BottleCount"
    assert (await blocking(plc.read, tag)).value == snapshot(PLANT_T).counter
    clock.t = PLANT_T + 12.5
    assert (await blocking(plc.read, tag)).value == snapshot(clock.t).counter
    assert (await blocking(plc.read, "Ramp")).value == f32(snapshot(clock.t).ramp)
    assert (await blocking(plc.write, tag, 5)).error is None
    clock.t += 60
    assert (await blocking(plc.read, tag)).value == 5  # a written tag stays put
    sim.release_tag(tag)
    assert (await blocking(plc.read, tag)).value == snapshot(clock.t).counter


async def test_direct_get_and_set(sim: LogixSimulator, plc: LogixDriver) -> None:
    sim.set_tag("CurrentRecipe.Limits", {"Low": 1.0, "High": 2.0})
    sim.set_tag("IntMatrix[3,4]", 77)
    assert (await blocking(plc.read, "CurrentRecipe.Limits")).value == {"Low": 1.0, "High": 2.0}
    assert (await blocking(plc.read, "IntMatrix[3,4]")).value == 77
    assert sim.get_tag("Line1.Running") is snapshot(PLANT_T).running


async def test_plc_time_comes_from_the_simulator_clock(plc: LogixDriver) -> None:
    result = await blocking(plc.get_plc_time)
    assert result.value["microseconds"] == int(PLANT_T * 1_000_000)


async def test_small_forward_open_fallback_pages_and_fragments(clock: FakeClock) -> None:
    sim = LogixSimulator("127.0.0.1", 0, clock=clock, large_forward_open=False)
    await sim.start()
    driver = LogixDriver(f"127.0.0.1:{sim.port}")
    try:
        await blocking(driver.open)
        assert driver.connection_size == 500
        # the tag list, paged with status 0x06
        assert sim.service_counts[Service.GET_INSTANCE_ATTRIBUTE_LIST] > 3
        assert "Program:Packaging.CaseCount" in driver.tags
        trend = await blocking(driver.read, "Trend{1000}")
        assert trend.value == [i * 0.25 for i in range(1000)]
        assert sim.service_counts[Service.READ_TAG_FRAGMENTED] >= 8
        assert (await blocking(driver.read, "Recipes{3}")).value[1]["Name"] == "COLA_500"
        assert (await blocking(driver.write, "Trend{1000}", [1.0] * 1000)).error is None
        assert sim.get_tag("Trend[999]") == 1.0
    finally:
        await blocking(_close_quietly, driver)
        await sim.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_serve_logix_runs_until_cancelled() -> None:
    port = _free_port()
    server = asyncio.create_task(serve_logix("127.0.0.1", port))

    async def answers() -> bool:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return True
        return False

    end = time.monotonic() + 5.0
    while not await answers():
        assert time.monotonic() < end, "serve_logix did not start listening"
        await asyncio.sleep(0.01)
    comm = PLC("127.0.0.1", port=port)
    try:
        assert (await blocking(comm.Read, "TestInt")).Value == -1234
    finally:
        await blocking(comm.Close)
        comm.conn.msg_socket.close()
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server


# -- raw encapsulation ---------------------------------------------------------------------

ENCAP_HEADER = struct.Struct("<HHII8sI")


def cpf(*items: tuple[int, bytes]) -> bytes:
    """SendRRData/SendUnitData payload: interface handle, timeout, items."""
    out = struct.pack("<IHH", 0, 0, len(items))
    return out + b"".join(struct.pack("<HH", kind, len(data)) + data for kind, data in items)


def cpf_items(payload: bytes) -> list[tuple[int, bytes]]:
    (count,) = struct.unpack_from("<H", payload, 6)
    pos, items = 8, []
    for _ in range(count):
        kind, size = struct.unpack_from("<HH", payload, pos)
        items.append((kind, payload[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return items


class RawClient:
    """Hand-built EtherNet/IP frames, to check the encapsulation layer byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.session = 0

    async def send(
        self, command: int, data: bytes = b"", *, session: int | None = None, context: bytes
    ) -> tuple[int, int, int, bytes, bytes]:
        sess = self.session if session is None else session
        self.writer.write(ENCAP_HEADER.pack(command, len(data), sess, 0, context, 0) + data)
        head = await asyncio.wait_for(self.reader.readexactly(ENCAP_HEADER.size), CALL_TIMEOUT)
        cmd, length, sess_back, status, ctx, _ = ENCAP_HEADER.unpack(head)
        assert cmd == command
        payload = await self.reader.readexactly(length)
        return status, sess_back, length, ctx, payload


async def test_encapsulation_sessions_contexts_and_connections(sim: LogixSimulator) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    raw = RawClient(reader, writer)
    try:
        status, session, _, ctx, body = await raw.send(
            0x65, struct.pack("<HH", 1, 0), context=b"ctx:reg!"
        )
        assert (status, ctx, body) == (0, b"ctx:reg!", struct.pack("<HH", 1, 0))
        assert session != 0
        raw.session = session

        status, *_ = await raw.send(0x6F, cpf(), session=session + 1, context=b"badsess!")
        assert status == 0x64  # invalid session handle
        status, *_ = await raw.send(0x99, context=b"unknown!")
        assert status == 0x01  # unsupported command

        _, _, _, _, identity = await raw.send(0x63, context=b"identity")
        item = identity[2 + 4 :]
        assert struct.unpack_from(">H", item, 4)[0] == sim.port  # sin_port, big-endian
        name_len = item[32]
        assert item[33 : 33 + name_len] == b"1756-L83E/B"

        forward_open = b"".join(
            (
                b"\x54\x02\x20\x06\x24\x01",
                struct.pack("<BBIIHHI", 0x0A, 0x05, 0, 0x11223344, 0x42, 0x1337, 0xCAFEBABE),
                struct.pack("<B3xIHIH", 7, 2_000_000, 0x4200 | 500, 2_000_000, 0x4200 | 500),
                b"\xa3\x03\x01\x00\x20\x02\x24\x01",
            )
        )
        status, _, _, ctx, body = await raw.send(
            0x6F, cpf((0, b""), (0xB2, forward_open)), context=b"fwd-open"
        )
        assert (status, ctx) == (0, b"fwd-open")
        reply = cpf_items(body)[1][1]
        assert reply[:4] == b"\xd4\x00\x00\x00"
        ot_id, to_id, serial = struct.unpack_from("<IIH", reply, 4)
        assert (to_id, serial) == (0x11223344, 0x42)

        read = b"\x4c\x05\x91\x08TestDint\x01\x00"
        status, _, _, ctx, body = await raw.send(
            0x70,
            cpf((0xA1, struct.pack("<I", ot_id)), (0xB1, b"\x07\x00" + read)),
            context=b"read-007",
        )
        (addr_kind, addr), (data_kind, data) = cpf_items(body)
        assert (status, ctx, addr_kind, data_kind) == (0, b"read-007", 0xA1, 0xB1)
        assert struct.unpack("<I", addr)[0] == 0x11223344  # replies carry the T->O id
        assert data == b"\x07\x00\xcc\x00\x00\x00\xc4\x00" + struct.pack("<i", 123456)

        unknown = cpf((0xA1, struct.pack("<I", ot_id + 1)), (0xB1, b"\x08\x00" + read))
        _, _, _, _, body = await raw.send(0x70, unknown, context=b"badconn!")
        assert cpf_items(body)[1][1][2:8] == b"\xcc\x00\x01\x01\x07\x01"  # 0x01 / 0x0107

        forward_close = (
            b"\x4e\x02\x20\x06\x24\x01"
            + struct.pack("<BBHHIBx", 0x0A, 0x05, 0x42, 0x1337, 0xCAFEBABE, 3)
            + b"\x01\x00\x20\x02\x24\x01"
        )
        _, _, _, _, body = await raw.send(
            0x6F, cpf((0, b""), (0xB2, forward_close)), context=b"fwdclose"
        )
        assert cpf_items(body)[1][1][:4] == b"\xce\x00\x00\x00"
        assert sim.connection_count == 0

        writer.write(ENCAP_HEADER.pack(0x66, 0, session, 0, b"goodbye!", 0))
        assert await asyncio.wait_for(reader.read(), CALL_TIMEOUT) == b""  # target hangs up
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# -- pylogix -------------------------------------------------------------------------------

SHARED_TAGS = [
    "TestBool",
    "TestSint",
    "TestInt",
    "TestDint",
    "TestLint",
    "TestUsint",
    "TestUint",
    "TestUdint",
    "TestReal",
    "TestLreal",
    "LineName",
    "DintArray[3]",
    "IntMatrix[1,2]",
    "RealCube[1,2,3]",
    "StatusBits.5",
    "CurrentRecipe.Name",
    "CurrentRecipe.Limits.High",
    "Recipes[1].BatchSize",
    "Line1.Running",
    "Program:MainProgram.BottleCount",
]


async def test_pylogix_reads_agree_with_pycomm3(plc: LogixDriver, pylogix_plc: PLC) -> None:
    expected = [r.value for r in await blocking(plc.read, *SHARED_TAGS)]
    singles = [(await blocking(pylogix_plc.Read, tag)) for tag in SHARED_TAGS]
    assert [r.Status for r in singles] == ["Success"] * len(SHARED_TAGS)
    assert [r.Value for r in singles] == expected
    batch = await blocking(pylogix_plc.Read, SHARED_TAGS)
    assert [r.Value for r in batch] == expected


async def test_pylogix_large_array_read(pylogix_plc: PLC) -> None:
    result = await blocking(pylogix_plc.Read, "Trend[0]", 1000)
    assert result.Status == "Success"
    assert result.Value == [i * 0.25 for i in range(1000)]


async def test_pylogix_writes_are_seen_by_pycomm3(plc: LogixDriver, pylogix_plc: PLC) -> None:
    writes: list[tuple[str, object]] = [
        ("TestDint", 77),
        ("TestReal", 2.5),
        ("TestBool", False),
        ("LineName", "from pylogix"),
        ("StatusBits.0", True),
        ("Line1.Faulted", True),
        ("DintArray[5]", 555),
        ("Program:MainProgram.Setpoint", 12.5),
    ]
    for tag, value in writes:
        assert (await blocking(pylogix_plc.Write, tag, value)).Status == "Success"
    results = await blocking(plc.read, *(tag for tag, _ in writes))
    assert [r.value for r in results] == [value for _, value in writes]


async def test_pylogix_unknown_tag_is_a_path_segment_error(pylogix_plc: PLC) -> None:
    assert (await blocking(pylogix_plc.Read, "NoSuchTag")).Status == "Path segment error"
    assert (await blocking(pylogix_plc.Read, "DintArray[99]")).Status == "Path destination unknown"
    assert (await blocking(pylogix_plc.Read, "TestDint")).Value == 123456


async def test_pylogix_tag_list(pylogix_plc: PLC) -> None:
    result = await blocking(pylogix_plc.GetTagList)
    names = {t.TagName for t in result.Value}
    assert {"TestDint", "CurrentRecipe", "Program:MainProgram.BottleCount"} <= names
