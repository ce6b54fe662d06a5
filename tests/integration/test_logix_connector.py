"""The Logix connector: real pycomm3 against the Logix simulator over TCP on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import yaml

from connectors.logix.browse import browse
from connectors.logix.config import LogixSource
from connectors.logix.connector import LogixConnector
from gateway.errors import ConnectionLost
from gateway.models import Batch, Quality, Sample
from gateway.runtime import SourceRunner
from simulators.broker import free_port
from simulators.logix import CipStatus, ExtStatus, LogixSimulator
from simulators.logix.cip import Service
from simulators.plant import snapshot
from tests.helpers import PLANT_T, async_wait_until, f32

pytestmark = pytest.mark.integration


@pytest.fixture
async def sim() -> AsyncIterator[LogixSimulator]:
    simulator = LogixSimulator("127.0.0.1", free_port(), clock=lambda: PLANT_T)
    await simulator.start()
    yield simulator
    await simulator.stop()


def source(port: int, tags: Sequence[tuple[str, str]], **kw: Any) -> LogixSource:
    return LogixSource.model_validate(
        {
            "name": "filler",
            "protocol": "logix",
            "host": "127.0.0.1",
            "port": port,
            "tags": [{"name": name, "address": address} for name, address in tags],
            **kw,
        }
    )


@contextlib.asynccontextmanager
async def connected(src: LogixSource) -> AsyncIterator[LogixConnector]:
    conn = LogixConnector(src)
    await conn.connect()
    try:
        yield conn
    finally:
        await conn.close()


async def read(sim: LogixSimulator, tags: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """One scan of the tags; every one must be good."""
    src = source(sim.port, tags)
    async with connected(src) as conn:
        samples = await conn.read(conn.plan(src.tags))
    assert all(s.quality is Quality.GOOD for s in samples), samples
    return {t.name: s.value for t, s in zip(src.tags, samples, strict=True)}


def delta(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


async def test_every_atomic_type(sim: LogixSimulator) -> None:
    values = await read(
        sim,
        [
            ("bool", "TestBool"),
            ("sint", "TestSint"),
            ("int", "TestInt"),
            ("dint", "TestDint"),
            ("lint", "TestLint"),
            ("usint", "TestUsint"),
            ("uint", "TestUint"),
            ("udint", "TestUdint"),
            ("real", "TestReal"),
            ("lreal", "TestLreal"),
        ],
    )
    assert values == {
        "bool": True,
        "sint": -12,
        "int": -1234,
        "dint": 123456,
        "lint": 9_000_000_000,
        "usint": 200,
        "uint": 60000,
        "udint": 4_000_000_000,
        "real": 3.5,
        "lreal": 2.718281828459045,
    }
    assert values["bool"] is True
    assert all(type(values[k]) is int for k in ("sint", "int", "dint", "lint", "udint"))
    assert type(values["real"]) is float


async def test_arrays_element_slice_whole_and_large(sim: LogixSimulator) -> None:
    values = await read(
        sim,
        [
            ("element", "DintArray[3]"),
            ("slice", "DintArray[10]{5}"),
            ("whole", "DintArray"),
            ("cell", "IntMatrix[1,2]"),
            ("matrix", "IntMatrix"),
            ("cube_run", "RealCube[1,0,0]{12}"),
            ("cube", "RealCube"),
            ("trend", "Trend"),
            ("trend_tail", "Trend[10]{990}"),
            ("messages", "Messages"),
            ("steps", "CurrentRecipe.Steps"),
        ],
    )
    assert values["element"] == 30
    assert values["slice"] == [100, 110, 120, 130, 140]
    assert values["whole"] == [i * 10 for i in range(20)]
    assert values["cell"] == 12
    assert values["matrix"] == [[r * 10 + c for c in range(5)] for r in range(4)]
    assert values["cube_run"] == [100.0 + b * 10 + c for b in range(3) for c in range(4)]
    assert values["cube"][1][2][3] == 123.0
    assert values["trend"] == [i * 0.25 for i in range(1000)]
    assert values["trend_tail"] == [i * 0.25 for i in range(10, 1000)]
    assert values["messages"] == ["ok", "check filler", "stopped"]
    assert values["steps"] == [10, 20, 30, 40]


async def test_a_large_array_read_on_its_own(sim: LogixSimulator) -> None:
    # Alone, REAL[1000] is 4,000 data bytes: pycomm3 1.2.16 would send it as one plain Read
    # Tag and get "Insufficient Packet Space"; the connector pairs it so it is fragmented.
    src = source(sim.port, [("trend", "Trend")])
    async with connected(src) as conn:
        assert conn.connection_size == 4000
        before = sim.service_counts
        [sample] = await conn.read(conn.plan(src.tags))
        after = sim.service_counts
    assert sample.quality is Quality.GOOD
    assert sample.value == [i * 0.25 for i in range(1000)]
    assert delta(before, after).get(Service.READ_TAG_FRAGMENTED, 0) >= 2


async def test_strings_program_tags_bits_and_member_paths(sim: LogixSimulator) -> None:
    values = await read(
        sim,
        [
            ("name", "LineName"),
            ("bottles", "Program:MainProgram.BottleCount"),
            ("setpoint", "program:mainprogram.setpoint"),
            ("enabled", "Program:Packaging.Enabled"),
            ("bit5", "StatusBits.5"),
            ("bit4", "StatusBits.4"),
            ("running", "Line1.Running"),
            ("high", "CurrentRecipe.Limits.High"),
            ("other", "Recipes[1].Name"),
            ("step", "CurrentRecipe.Steps[2]"),
        ],
    )
    assert values == {
        "name": "Bottling Line 1",
        "bottles": snapshot(PLANT_T).counter,
        "setpoint": 72.5,
        "enabled": True,
        "bit5": True,
        "bit4": False,
        "running": snapshot(PLANT_T).running,
        "high": 192.0,
        "other": "COLA_500",
        "step": 30,
    }


async def test_a_udt_is_a_dict_of_typed_members(sim: LogixSimulator) -> None:
    snap = snapshot(PLANT_T)
    values = await read(sim, [("recipe", "CurrentRecipe"), ("line", "Line1")])
    recipe = values["recipe"]
    assert recipe == {
        "Name": snap.recipe,
        "BatchSize": 1200,
        "FillVolume": 330.0,
        "OvenTemp": pytest.approx(snap.temperature, abs=1e-4),
        "Limits": {"Low": 172.0, "High": 192.0},
        "Steps": [10, 20, 30, 40],
    }
    assert f32(recipe["OvenTemp"]) == f32(snap.temperature)  # the REAL, shortest decimal
    assert type(recipe["BatchSize"]) is int
    assert type(recipe["FillVolume"]) is float
    line = values["line"]
    assert set(line) == {
        "Running", "Faulted", "Blocked", "Starved", "State", "Speed", "AlarmWord", "Count"
    }  # fmt: skip
    assert line["Running"] is snap.running
    assert line["Faulted"] is False
    assert (line["Speed"], line["Count"]) == (snap.speed, snap.counter)


def many_tags() -> list[tuple[str, str]]:
    atomics = ["TestBool", "TestSint", "TestInt", "TestDint", "TestLint", "TestUsint"]
    atomics += ["TestUint", "TestUdint", "TestReal", "TestLreal", "LineName", "Ramp", "Sine"]
    atomics += ["Temperature", "Pressure", "LineSpeed", "MachineState", "Running", "Toggle"]
    tags = [(a.lower(), a) for a in atomics]
    tags += [(f"d{i}", f"DintArray[{i}]") for i in range(20)]
    tags += [(f"m{r}_{c}", f"IntMatrix[{r},{c}]") for r in range(4) for c in range(3)]
    tags += [
        ("bottles", "Program:MainProgram.BottleCount"),
        ("cases", "Program:Packaging.CaseCount"),
    ]
    tags += [("recipe", "CurrentRecipe"), ("line", "Line1"), ("bit", "StatusBits.5")]
    return tags


async def test_one_scan_of_many_tags_is_one_multi_service_request(sim: LogixSimulator) -> None:
    tags = many_tags()
    assert len(tags) >= 50
    src = source(sim.port, tags)
    async with connected(src) as conn:
        before, sent = sim.service_counts, conn.requests_sent
        samples = await conn.read(conn.plan(src.tags))
        served = delta(before, sim.service_counts)
        assert conn.requests_sent - sent == 1  # about 1,300 reply bytes: one 4,000-byte packet
    assert all(s.quality is Quality.GOOD for s in samples)
    assert served == {
        Service.MULTIPLE_SERVICE_PACKET: 1,
        Service.READ_TAG: len(tags),
    }  # each tag once, all embedded


async def test_unknown_tags_are_bad_with_why_and_the_connector_logs_nothing(
    sim: LogixSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    tags = [
        ("ok", "TestDint"),
        ("ghost", "NoSuchTag"),
        ("no_program", "Program:Nope.Count"),
        ("past_end", "DintArray[99]"),
        ("no_member", "CurrentRecipe.Speed"),
        ("also_ok", "Program:MainProgram.Setpoint"),
    ]
    src = source(sim.port, tags)
    conn = LogixConnector(src)
    with caplog.at_level(logging.INFO, logger="connectors.logix"):
        for _ in range(2):
            await conn.connect()
            plan = conn.plan(src.tags)
            for _ in range(3):
                samples = await conn.read(plan)
                assert [s.quality for s in samples] == [
                    Quality.GOOD, Quality.BAD, Quality.BAD, Quality.BAD, Quality.BAD, Quality.GOOD
                ]  # fmt: skip
                assert (samples[0].value, samples[5].value) == (123456, 72.5)
            await conn.close()
    # Why, with each sample: the runtime logs a tag's quality change, the connector never.
    assert [s.reason for s in samples] == [
        None,
        "NoSuchTag is not in the controller's tag list",
        "the controller has no program 'Nope'",
        "DintArray[99] is outside [20]",
        "CurrentRecipe (Recipe) has no member 'Speed'",
        None,
    ]
    assert not [r for r in caplog.records if r.name.startswith("connectors.logix")]


async def test_a_cip_error_marks_only_its_tag_bad(sim: LogixSimulator) -> None:
    src = source(
        sim.port,
        [("int", "TestInt"), ("dint", "TestDint"), ("trend", "Trend"), ("recipe", "CurrentRecipe")],
    )
    async with connected(src) as conn:
        sim.inject_error(CipStatus.PATH_DESTINATION_UNKNOWN, 0, count=None, tag="TestInt")
        sim.inject_error(
            CipStatus.GENERAL_ERROR, ExtStatus.TYPE_MISMATCH, count=None, tag="CurrentRecipe"
        )
        for _ in range(2):
            bad, good, trend, recipe = await conn.read(conn.plan(src.tags))
            assert bad == Sample(
                None, Quality.BAD, reason="CIP status 0x05 (path destination unknown)"
            )
            assert (good.quality, good.value) == (Quality.GOOD, 123456)
            assert trend.quality is Quality.GOOD
            # A UDT that fails keeps its member names, so each member's topic turns bad.
            assert recipe.quality is Quality.BAD
            assert recipe.reason == (
                "CIP status 0xFF (general error), extended 0x2107 "
                "(the request's data type does not match the tag's)"
            )
            assert isinstance(recipe.value, dict)
            assert recipe.value["Limits"] == {"Low": None, "High": None}
        sim.clear_faults()
        samples = await conn.read(conn.plan(src.tags))
    assert [s.value for s in samples[:2]] == [-1234, 123456]
    assert all(s.quality is Quality.GOOD and s.reason is None for s in samples)


async def test_an_unreachable_controller_raises_connection_lost() -> None:
    src = source(free_port(), [("x", "TestDint")], connect_timeout="1s")
    conn = LogixConnector(src)
    with pytest.raises(ConnectionLost, match=r"cannot connect to 127\.0\.0\.1"):
        await conn.connect()
    with pytest.raises(ConnectionLost, match="not connected"):
        await conn.read(conn.plan(src.tags))
    await conn.close()


async def test_a_dropped_connection_raises_connection_lost_then_reconnects(
    sim: LogixSimulator,
) -> None:
    src = source(sim.port, [("x", "TestDint")])
    conn = LogixConnector(src)
    await conn.connect()
    assert sim.drop_connections() == 1
    with pytest.raises(ConnectionLost):
        await conn.read(conn.plan(src.tags))
    await conn.close()  # never raises, even on a dead connection
    await conn.close()
    await conn.connect()
    assert (await conn.read(conn.plan(src.tags)))[0].value == 123456
    await conn.close()


async def test_a_stalled_controller_times_out_as_connection_lost(sim: LogixSimulator) -> None:
    src = source(sim.port, [("x", "TestDint")], timeout="300ms")
    conn = LogixConnector(src)
    await conn.connect()
    sim.stall()
    with pytest.raises(ConnectionLost, match="timed out"):
        await conn.read(conn.plan(src.tags))
    await conn.close()
    sim.resume()
    await conn.connect()
    assert (await conn.read(conn.plan(src.tags)))[0].value == 123456
    await conn.close()


async def test_one_worker_thread_per_connection_and_a_clean_close(sim: LogixSimulator) -> None:
    def workers() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("logix-filler")]

    src = source(sim.port, [("x", "TestDint"), ("y", "Trend")])
    conn = LogixConnector(src)
    await conn.connect()
    plan = conn.plan(src.tags)
    await asyncio.gather(*(conn.read(plan) for _ in range(5)))  # serialised on one thread
    assert len(workers()) == 1
    assert (sim.session_count, sim.connection_count) == (1, 1)
    await conn.close()
    # Forward Close and Unregister Session: the controller's connection slot is free again.
    await async_wait_until(lambda: sim.session_count == 0 and sim.connection_count == 0)
    await async_wait_until(lambda: not workers(), what="the worker thread to end")


async def test_restarted_controller_recovers_under_the_runtime(sim: LogixSimulator) -> None:
    src = source(
        sim.port,
        [("bottles", "Program:MainProgram.BottleCount"), ("recipe", "CurrentRecipe")],
        scan="100ms",
        backoff_max="300ms",
    )
    batches: list[Batch] = []
    runner = SourceRunner(src, src.tags, LogixConnector(src), batches.append)
    task = asyncio.create_task(runner.run())

    def qualities() -> list[str]:
        return [r.quality.value for b in batches for r in b.readings if r.tag == "bottles"]

    try:
        await async_wait_until(lambda: qualities()[:1] == ["good"], what="first good reading")
        await sim.stop()
        await async_wait_until(lambda: qualities()[-1:] == ["bad"], what="bad quality")
        await sim.start()  # same port
        await async_wait_until(lambda: qualities()[-1:] == ["good"], what="recovery")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert qualities() == ["good", "bad", "good"]  # on_change: each state once
    assert runner.stats.connects == 2
    readings = [r for b in batches for r in b.readings]
    assert [r.seq for r in readings] == list(range(1, len(readings) + 1))
    # The UDT was published as its members, so its members are what go bad.
    bad_tags = {r.tag for r in readings if r.quality is Quality.BAD}
    assert {"bottles", "recipe.Name", "recipe.Limits.Low", "recipe.Steps"} <= bad_tags
    assert "recipe" not in bad_tags
    good_tags = {r.tag for r in readings if r.quality is Quality.GOOD}
    assert {"recipe.Name", "recipe.Limits.Low", "recipe.Steps"} <= good_tags


async def test_browse_lists_the_controller_and_its_yaml_reads_good(sim: LogixSimulator) -> None:
    text = await asyncio.to_thread(browse, "127.0.0.1", sim.port, 0, False)
    assert text.startswith("PlantGate_Line1 (1756-L83E/B, revision 33.11)")
    lines = text.splitlines()
    assert "Program:MainProgram tags:" in lines
    assert any(line.split() == ["Trend", "REAL[1000]"] for line in lines)
    assert any(line.split() == [".High", "REAL"] for line in lines)
    generated = await asyncio.to_thread(browse, "127.0.0.1", sim.port, 0, True)
    src = LogixSource.model_validate(yaml.safe_load(generated)["sources"][0])
    assert "Program:Packaging.CaseCount" in {str(t.address) for t in src.tags}
    async with connected(src) as conn:
        samples = await conn.read(conn.plan(src.tags))
    bad = [t.name for t, s in zip(src.tags, samples, strict=True) if s.quality is not Quality.GOOD]
    assert bad == []


async def test_browse_an_unreachable_controller() -> None:
    with pytest.raises(ConnectionLost, match="cannot browse"):
        await asyncio.to_thread(browse, "127.0.0.1", free_port(), None, False)
