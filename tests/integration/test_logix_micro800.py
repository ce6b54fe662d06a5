"""The Logix connector against a simulated Micro800: no slot, pycomm3 in its Micro800 mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from connectors.logix.config import LogixSource
from connectors.logix.connector import LogixConnector
from gateway.models import Quality
from simulators.broker import free_port
from simulators.logix import LogixSimulator
from simulators.logix.cip import PortSegment, Segment, Service
from simulators.logix.connmgr import ForwardOpen
from simulators.logix.identity import Identity
from tests.helpers import PLANT_T, f32

pytestmark = pytest.mark.integration

MICRO850 = Identity(product_name="2080-LC50-48QWB", revision=(12, 11), product_code=180)


def delta(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


# A Micro800 has no backplane; whether it grants a Large Forward Open (4000 bytes) or only a
# plain one (500 bytes) depends on the model and firmware, so both are covered.
@pytest.fixture(params=[4000, 500], ids=["large-forward-open", "forward-open"])
def connection_size(request: pytest.FixtureRequest) -> int:
    size: int = request.param
    return size


@pytest.fixture
async def sim(connection_size: int) -> AsyncIterator[LogixSimulator]:
    simulator = LogixSimulator(
        "127.0.0.1",
        free_port(),
        identity=MICRO850,
        clock=lambda: PLANT_T,
        large_forward_open=connection_size == 4000,
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def forward_open_paths(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Segment, ...]]:
    """The connection path of every Forward Open the simulator receives."""
    paths: list[tuple[Segment, ...]] = []
    validate = ForwardOpen.validate

    def spy(self: ForwardOpen, *, large: bool, slot: int) -> None:
        paths.append(self.path)
        validate(self, large=large, slot=slot)

    monkeypatch.setattr(ForwardOpen, "validate", spy)
    return paths


def source(port: int, tags: Sequence[tuple[str, str]]) -> LogixSource:
    return LogixSource.model_validate(
        {
            "name": "micro",
            "protocol": "logix",
            "host": "127.0.0.1",
            "port": port,
            "slot": None,
            "tags": [{"name": name, "address": address} for name, address in tags],
        }
    )


async def test_micro800_without_a_slot_reads_tags_one_by_one(
    sim: LogixSimulator, connection_size: int, forward_open_paths: list[tuple[Segment, ...]]
) -> None:
    tags = [
        ("dint", "TestDint"),
        ("real", "TestReal"),
        ("bool", "TestBool"),
        ("lreal", "TestLreal"),
        ("name", "LineName"),
        ("bottles", "Program:MainProgram.BottleCount"),
        ("setpoint", "Program:MainProgram.Setpoint"),
        ("recipe", "CurrentRecipe"),
        ("line", "Line1"),
        ("ghost", "NoSuchTag"),
    ]
    src = source(sim.port, tags)
    assert src.slot is None
    assert src.path == f"127.0.0.1:{sim.port}"  # nothing after the port
    conn = LogixConnector(src)
    await conn.connect()
    try:
        assert conn.connection_size == connection_size
        before, sent = sim.service_counts, conn.requests_sent
        samples = await conn.read(conn.plan(src.tags))
        served = delta(before, sim.service_counts)
        requests = conn.requests_sent - sent
    finally:
        await conn.close()
    # The one connection went straight to the Message Router: no backplane hop, no slot.
    assert len(forward_open_paths) == 1
    assert not any(isinstance(s, PortSegment) for s in forward_open_paths[0])
    # Micro800 mode: one Read Tag per known tag, no Multiple Service Packet.
    assert served == {Service.READ_TAG: len(tags) - 1}
    assert requests == len(tags) - 1
    values: dict[str, Any] = {}
    for (name, address), sample in zip(tags, samples, strict=True):
        if name == "ghost":
            assert sample.quality is Quality.BAD
            assert sample.value is None
            continue
        assert sample.quality is Quality.GOOD, (name, sample)
        values[name] = sample.value
        expected = sim.get_tag(address)
        if name == "recipe":
            assert isinstance(expected, dict)
            assert isinstance(sample.value, dict)
            # The connector publishes a REAL as its shortest decimal: compare as REALs.
            got, want = sample.value["OvenTemp"], expected["OvenTemp"]
            assert isinstance(got, float)
            assert isinstance(want, float)
            assert f32(got) == f32(want)
            assert {**sample.value, "OvenTemp": None} == {**expected, "OvenTemp": None}
        else:
            assert sample.value == expected, name
    assert values["dint"] == 123456
    assert values["bool"] is True
    assert values["setpoint"] == 72.5
    assert values["recipe"]["Limits"] == {"Low": 172.0, "High": 192.0}
    assert set(values["line"]) >= {"Running", "Speed", "Count"}


async def test_micro800_reads_that_nearly_fill_the_connection(
    sim: LogixSimulator, connection_size: int
) -> None:
    # Each read goes alone, so a reply whose data nearly fills the connection must be
    # fragmented: pycomm3 1.2.16 alone would send it whole and get "Insufficient Packet Space".
    reals = connection_size // 4
    tags = [(f"n{k}", f"Trend[{k}]{{{reals - k}}}") for k in range(4)]  # size - 4k data bytes
    src = source(sim.port, tags)
    conn = LogixConnector(src)
    await conn.connect()
    try:
        assert conn.connection_size == connection_size
        before = sim.service_counts
        samples = await conn.read(conn.plan(src.tags))
        served = delta(before, sim.service_counts)
    finally:
        await conn.close()
    assert [s.quality for s in samples] == [Quality.GOOD] * len(tags), samples
    for k, sample in enumerate(samples):
        assert sample.value == [i * 0.25 for i in range(k, reals)]
    # Within a Read Tag reply's overhead of the connection size (n0 to n2), fragmented.
    assert Service.MULTIPLE_SERVICE_PACKET not in served
    assert served.get(Service.READ_TAG_FRAGMENTED, 0) >= 3
