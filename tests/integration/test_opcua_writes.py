"""OPC UA writes against the simulator over TCP: each DataType written as itself and read back,
StatusCodes passed through by name, refusals never reaching the server."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.status_codes import StatusCodes

from connectors.opcua.config import OpcUaSource, OpcUaTag
from connectors.opcua.connector import OpcUaConnector
from gateway.errors import ConnectionLost, DeviceError, WriteUnconfirmed
from gateway.models import Value
from gateway.writes import Accepted, Refused, Rule
from simulators.broker import free_port
from simulators.opcua import OpcUaSimulator, nsu
from tests.writing import decide, handle

# One simulator for the module: asyncua's address space takes ~2 s to build.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

VT = ua.VariantType
# (variable, value the command sends, the Variant type the server must then hold)
TYPE_CASES: list[tuple[str, Value, ua.VariantType]] = [
    ("Recipe.Enabled", True, VT.Boolean),
    ("Recipe.Trim", -7, VT.SByte),
    ("Recipe.Station", 200, VT.Byte),
    ("Recipe.FillOffset", -1234, VT.Int16),
    ("Recipe.TargetSpeed", 65535, VT.UInt16),
    ("Recipe.LotNumber", -(2**31), VT.Int32),
    ("Recipe.BatchSize", 2**32 - 1, VT.UInt32),
    ("Recipe.EnergyBudget", -(2**63), VT.Int64),
    ("Recipe.TotalTarget", 2**64 - 1, VT.UInt64),
    ("Recipe.FillWeight", 0.1, VT.Float),
    ("Recipe.Pressure", 2.75, VT.Double),
    ("Recipe.Name", "SUGAR-330 é", VT.String),
    ("Recipe.ZoneTemps", [181.5, 182, 183.25, 184], VT.Double),
    ("Oven.Zone1.Setpoint", 192, VT.Double),  # a whole number into a Double stays a Double
]


def source(endpoint: str, names: list[str], **kw: Any) -> OpcUaSource:
    tags = [{"name": name, "node": nsu(name), "writable": True} for name in names]
    return OpcUaSource.model_validate(
        {"name": "line", "protocol": "opcua", "url": endpoint, "subscribe": False, "tags": tags}
        | kw
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim() -> AsyncIterator[OpcUaSimulator]:
    simulator = OpcUaSimulator(port=free_port(), interval=0.05)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def line(sim: OpcUaSimulator) -> AsyncIterator[tuple[OpcUaConnector, OpcUaSource]]:
    """A connector with every writable simulator variable as a writable tag; counts cleared."""
    names = [case[0] for case in TYPE_CASES] + ["Filler.Counter", "Filler.StateSince"]
    src = source(sim.endpoint, names)
    connector = OpcUaConnector(src)
    await connector.connect()
    sim.writes.clear()
    yield connector, src
    sim.fail_writes(None)
    sim.stall_writes(0)
    await connector.close()


def tag_of(src: OpcUaSource, name: str) -> OpcUaTag:
    [tag] = [t for t in src.tags if t.name == name]
    return tag


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    """Await ``check()`` until it is true, or fail at the deadline."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


async def server_variant(sim: OpcUaSimulator, name: str) -> ua.Variant:
    """The value as another client sees it: type and all."""
    async with Client(sim.endpoint, timeout=5) as client:
        index = await client.get_namespace_index("urn:plantgate:sim")
        data = await client.get_node(f"ns={index};s={name}").read_data_value()
    assert data.Value is not None
    return data.Value


@pytest.mark.parametrize(("name", "value", "vtype"), TYPE_CASES, ids=[c[0] for c in TYPE_CASES])
async def test_each_data_type_is_written_as_itself_and_read_back(
    sim: OpcUaSimulator,
    line: tuple[OpcUaConnector, OpcUaSource],
    name: str,
    value: Value,
    vtype: ua.VariantType,
) -> None:
    conn, src = line
    tag = tag_of(src, name)
    verdict = await handle(conn, tag, value)
    assert isinstance(verdict, Accepted), verdict
    held = await server_variant(sim, name)
    assert held.VariantType == vtype
    if vtype == VT.Float:
        assert held.Value == pytest.approx(value, rel=1e-7)
    else:
        assert held.Value == value
    assert sim.writes == Counter({name: 1})
    [polled] = await conn.read(conn.plan([tag]))  # a scan sees it too
    assert verdict.matches(polled.value)


async def test_types_are_learned_from_the_server_at_connect(
    line: tuple[OpcUaConnector, OpcUaSource], sim: OpcUaSimulator
) -> None:
    conn, src = line
    names = {tag.name: conn.plc_type(tag) for tag in src.tags}
    assert str(names["Recipe.FillOffset"]) == "Int16"
    assert str(names["Recipe.BatchSize"]) == "UInt32"
    assert str(names["Recipe.ZoneTemps"]) == "array of 4 Double"
    assert str(names["Filler.StateSince"]) == "DateTime"
    # Only writable tags are asked about (reading is all the others need).
    reader = OpcUaConnector(
        OpcUaSource.model_validate(
            {
                "name": "line",
                "protocol": "opcua",
                "url": sim.endpoint,
                "tags": [{"name": "t", "node": nsu("Recipe.FillOffset")}],
            }
        )
    )
    await reader.connect()
    try:
        assert reader.plc_type(reader.source.tags[0]) is None
    finally:
        await reader.close()


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("Recipe.FillOffset", 70000, Rule.RANGE),  # Int16
        ("Recipe.FillOffset", 1.5, Rule.RANGE),
        ("Recipe.BatchSize", 2**32, Rule.RANGE),  # UInt32
        ("Recipe.BatchSize", -1, Rule.RANGE),
        ("Recipe.Station", 256, Rule.RANGE),  # Byte
        ("Recipe.FillWeight", 1e39, Rule.RANGE),  # Float
        ("Recipe.ZoneTemps", [1.0, 2.0, 3.0], Rule.RANGE),  # Double[4]
        ("Recipe.FillOffset", "12", Rule.TYPE),
        ("Recipe.Enabled", 1, Rule.TYPE),
        ("Recipe.Name", 330, Rule.TYPE),
        ("Filler.StateSince", "2025-11-21T18:02:20.123Z", Rule.TYPE),  # DateTime: not written
    ],
    ids=repr,
)
async def test_a_refused_value_never_reaches_the_server(
    sim: OpcUaSimulator,
    line: tuple[OpcUaConnector, OpcUaSource],
    name: str,
    value: Value,
    rule: Rule,
) -> None:
    conn, src = line
    verdict = await handle(conn, tag_of(src, name), value)
    assert isinstance(verdict, Refused)
    assert verdict.rule is rule
    assert sim.writes == Counter()
    assert conn.write_requests == 0


async def test_a_bad_status_code_is_passed_through_by_name(
    sim: OpcUaSimulator, line: tuple[OpcUaConnector, OpcUaSource]
) -> None:
    conn, src = line
    counter = tag_of(src, "Filler.Counter")  # writable: true here, read-only on the server
    verdict = decide(conn, counter, 7)
    assert isinstance(verdict, Accepted)
    with pytest.raises(DeviceError, match=r"^Filler.Counter: write refused: BadNotWritable$"):
        await conn.write(counter, verdict.value)
    sim.fail_writes(StatusCodes.BadOutOfRange)
    with pytest.raises(DeviceError, match="write refused: BadOutOfRange"):
        await conn.write(tag_of(src, "Recipe.BatchSize"), 5)
    sim.fail_writes(None)
    assert sim.writes == Counter({"Filler.Counter": 1, "Recipe.BatchSize": 1})
    # The session lived through both.
    assert isinstance(await handle(conn, tag_of(src, "Recipe.BatchSize"), 6), Accepted)


async def test_a_write_without_an_answer_is_not_sent_again(
    sim: OpcUaSimulator, line: tuple[OpcUaConnector, OpcUaSource]
) -> None:
    _, src = line
    quick = OpcUaConnector(src.model_copy(update={"timeout": 0.3}))
    await quick.connect()
    try:
        tag = tag_of(src, "Recipe.LotNumber")
        sim.stall_writes(1.0)
        with pytest.raises(WriteUnconfirmed, match="it may have been applied"):
            await quick.write(tag, 4242)

        async def landed() -> bool:
            return (await server_variant(sim, "Recipe.LotNumber")).Value == 4242

        await eventually(landed, "the late write to land")
        sim.stall_writes(0)
        # The caller's move: read back to learn the outcome.
        assert (await quick.read_back(tag)).value == 4242
        assert sim.writes == Counter({"Recipe.LotNumber": 1})
    finally:
        await quick.close()


async def test_writing_without_a_session_is_a_lost_connection(sim: OpcUaSimulator) -> None:
    src = source(sim.endpoint, ["Recipe.Trim"])
    conn = OpcUaConnector(src)
    with pytest.raises(ConnectionLost):
        await conn.write(src.tags[0], 1)
    with pytest.raises(ConnectionLost):
        await conn.read_back(src.tags[0])
