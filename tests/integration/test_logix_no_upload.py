"""Logix without the tag-list upload: a controller that refuses service 0x55 is still read when
the tags declare their types; without them, the error says what to do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.logix.browse import browse
from connectors.logix.config import LogixSource
from connectors.logix.connector import LogixConnector
from gateway.errors import ConnectionLost
from gateway.models import Quality
from simulators.broker import free_port
from simulators.logix import CipStatus, LogixSimulator
from simulators.logix.cip import Service
from simulators.plant import snapshot
from tests.helpers import PLANT_T, async_wait_until

pytestmark = pytest.mark.integration

UPLOAD = Service.GET_INSTANCE_ATTRIBUTE_LIST

# (name, address, declared type, value at PLANT_T)
DECLARED: list[tuple[str, str, str, Any]] = [
    ("bool", "TestBool", "BOOL", True),
    ("sint", "TestSint", "SINT", -12),
    ("int", "TestInt", "INT", -1234),
    ("dint", "TestDint", "DINT", 123456),
    ("lint", "TestLint", "LINT", 9_000_000_000),
    ("usint", "TestUsint", "USINT", 200),
    ("uint", "TestUint", "UINT", 60000),
    ("udint", "TestUdint", "UDINT", 4_000_000_000),
    ("real", "TestReal", "REAL", 3.5),
    ("lreal", "TestLreal", "LREAL", 2.718281828459045),
    ("name", "LineName", "STRING", "Bottling Line 1"),
    ("bottles", "Program:MainProgram.BottleCount", "DINT", snapshot(PLANT_T).counter),
    ("element", "DintArray[3]", "DINT[20]", 30),
    ("slice", "DintArray[10]{5}", "DINT[20]", [100, 110, 120, 130, 140]),
    ("whole", "DintArray", "DINT[20]", [i * 10 for i in range(20)]),
    ("cell", "IntMatrix[1,2]", "INT[4,5]", 12),
    ("matrix", "IntMatrix", "INT[4,5]", [[r * 10 + c for c in range(5)] for r in range(4)]),
    ("trend", "Trend", "REAL[1000]", [i * 0.25 for i in range(1000)]),  # fragmented
    ("message", "Messages[1]", "STRING[3]", "check filler"),
    ("bit", "StatusBits.5", "DINT", True),
    ("batch", "CurrentRecipe.BatchSize", "DINT", 1200),
    ("high", "CurrentRecipe.Limits.High", "REAL", 192.0),
    ("steps", "CurrentRecipe.Steps", "INT[4]", [10, 20, 30, 40]),
    ("step", "CurrentRecipe.Steps[2]", "INT[4]", 30),
    ("other", "Recipes[1].Name", "STRING", "COLA_500"),
    ("faulted", "Line1.Faulted", "BOOL", False),
]


@pytest.fixture
async def sim() -> AsyncIterator[LogixSimulator]:
    simulator = LogixSimulator("127.0.0.1", free_port(), clock=lambda: PLANT_T)
    await simulator.start()
    yield simulator
    await simulator.stop()


def source(port: int, tags: list[dict[str, Any]], **kw: Any) -> LogixSource:
    return LogixSource.model_validate(
        {"name": "filler", "protocol": "logix", "host": "127.0.0.1", "port": port, "tags": tags}
        | kw
    )


def declared(rows: list[tuple[str, str, str, Any]]) -> list[dict[str, Any]]:
    return [{"name": n, "address": a, "type": t} for n, a, t, _ in rows]


@contextlib.asynccontextmanager
async def connected(src: LogixSource) -> AsyncIterator[LogixConnector]:
    conn = LogixConnector(src)
    await conn.connect()
    try:
        yield conn
    finally:
        await conn.close()


async def test_declared_types_read_without_the_tag_list(sim: LogixSimulator) -> None:
    sim.refuse_tag_list()
    src = source(sim.port, declared(DECLARED), tag_list=False)
    async with connected(src) as conn:
        samples = await conn.read(conn.plan(src.tags))
        await conn.write(src.tags[3], -99)  # writes need no tag list either
        await conn.write(src.tags[10], "Line 9")
        again = await conn.read(conn.plan(src.tags[3:11]))
    got = {t.name: (s.quality, s.value) for t, s in zip(src.tags, samples, strict=True)}
    assert got == {name: (Quality.GOOD, value) for name, _, _, value in DECLARED}
    assert (again[0].value, again[-1].value) == (-99, "Line 9")
    assert sim.service_counts.get(UPLOAD, 0) == 0


async def test_a_source_whose_tags_all_declare_types_skips_the_upload(
    sim: LogixSimulator,
) -> None:
    src = source(sim.port, declared(DECLARED[:4]))  # no tag_list key: decided by the tags
    assert not src.uploads_tag_list
    async with connected(src) as conn:
        samples = await conn.read(conn.plan(src.tags))
    assert [s.value for s in samples] == [True, -12, -1234, 123456]
    assert sim.service_counts.get(UPLOAD, 0) == 0


async def test_tag_list_true_uploads_even_with_declared_types(sim: LogixSimulator) -> None:
    src = source(sim.port, declared(DECLARED[:4]), tag_list=True)
    async with connected(src) as conn:
        samples = await conn.read(conn.plan(src.tags))
    assert [s.value for s in samples] == [True, -12, -1234, 123456]
    assert sim.service_counts.get(UPLOAD, 0) > 0


async def test_a_refused_tag_list_says_what_to_do_and_names_the_untyped_tags(
    sim: LogixSimulator,
) -> None:
    sim.refuse_tag_list()  # CIP status 0x08, as a gateway that does not implement it answers
    tags = [
        {"name": "dint", "address": "TestDint", "type": "DINT"},
        {"name": "bottles", "address": "Program:MainProgram.BottleCount"},
        {"name": "recipe", "address": "CurrentRecipe"},
    ]
    src = source(sim.port, tags)
    assert src.uploads_tag_list
    conn = LogixConnector(src)
    with pytest.raises(ConnectionLost) as caught:
        await conn.connect()
    await conn.close()
    message = str(caught.value)
    assert "the controller refused the tag list upload" in message
    assert "(CIP status 0x08 (service not supported))" in message
    assert "Tags without a declared type: bottles, recipe." in message
    for advice in ("type: DINT", "plantgate import project.L5X", "tag_list: false"):
        assert advice in message
    assert "failed to get attribute list" not in message  # pycomm3's words are gone
    sim.clear_faults()
    async with connected(src) as conn:  # the controller allows it again: all is well
        assert all(s.quality is Quality.GOOD for s in await conn.read(conn.plan(src.tags)))


async def test_a_declared_type_the_controller_contradicts_is_bad_and_says_why(
    sim: LogixSimulator,
) -> None:
    tags = [
        {"name": "ok", "address": "TestDint", "type": "DINT"},
        {"name": "real_as_dint", "address": "TestReal", "type": "DINT"},  # same size
        {"name": "dint_as_int", "address": "Program:MainProgram.BottleCount", "type": "INT"},
        {"name": "string_as_real", "address": "LineName", "type": "REAL"},
        {"name": "ghost", "address": "NoSuchTag", "type": "DINT"},
    ]
    src = source(sim.port, tags, tag_list=False)
    async with connected(src) as conn:
        for _ in range(3):
            samples = await conn.read(conn.plan(src.tags))
            assert [s.quality for s in samples] == [Quality.GOOD] + [Quality.BAD] * 4
            assert [s.value for s in samples] == [123456, None, None, None, None]
    assert [s.reason for s in samples] == [
        None,
        "declared DINT, but the controller holds REAL",
        "declared INT, but the controller holds DINT",
        "declared REAL, but the controller holds STRING",
        "CIP status 0x04 (path segment error)",
    ]


async def test_a_refused_upload_is_a_lost_connection_that_leaves_nothing_open(
    sim: LogixSimulator,
) -> None:
    # ConnectionLost: the runtime retries with backoff (the controller may allow it later);
    # the session and CIP connection opened before the upload are closed, not leaked.
    sim.refuse_tag_list(CipStatus.PATH_DESTINATION_UNKNOWN, 0)
    src = source(sim.port, [{"name": "x", "address": "TestDint"}])
    conn = LogixConnector(src)
    with pytest.raises(ConnectionLost, match=r"CIP status 0x05 \(path destination unknown\)\)"):
        await conn.connect()
    assert sim.connection_count == 0  # Forward Close was answered before connect() raised
    await async_wait_until(lambda: sim.session_count == 0, what="the session unregistered")
    await conn.close()


async def test_browse_says_plainly_when_the_tag_list_is_refused(sim: LogixSimulator) -> None:
    sim.refuse_tag_list()
    with pytest.raises(ConnectionLost, match=r"refused the tag list upload \(CIP status 0x08"):
        await asyncio.to_thread(browse, "127.0.0.1", sim.port, 0, False)
