"""Logix end to end: simulator over TCP -> gateway in-process -> real mosquitto -> a subscriber."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from simulators.broker import Mosquitto, free_port
from simulators.logix import LogixSimulator
from simulators.plant import snapshot
from tests.helpers import PLANT_T, Recorder, async_wait_until, running, seq_report

pytestmark = pytest.mark.integration


@pytest.fixture
async def sim() -> AsyncIterator[LogixSimulator]:
    simulator = LogixSimulator("127.0.0.1", free_port(), clock=lambda: PLANT_T)
    await simulator.start()
    yield simulator
    await simulator.stop()


def config(tmp: Path, broker_port: int, plc_port: int, tags: list[dict[str, Any]]) -> Config:
    return Config.model_validate(
        {
            "gateway": {"name": "test-edge", "buffer": {"path": str(tmp / "buffer.db")}},
            "mqtt": {"url": f"mqtt://127.0.0.1:{broker_port}", "topic_prefix": "t/line"},
            "sources": [
                {
                    "name": "filler",
                    "protocol": "logix",
                    "host": "127.0.0.1",
                    "port": plc_port,
                    "slot": 0,
                    "scan": "100ms",
                    "backoff_max": "300ms",
                    "tags": tags,
                }
            ],
        }
    )


async def until(cond: Callable[[], bool], what: str) -> None:
    await async_wait_until(cond, 15.0, what)


def latest(rec: Recorder) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for reading in rec.readings("filler"):
        out[reading["tag"]] = reading
    return out


async def test_values_types_and_udt_members_arrive_on_the_contract_topics(
    tmp_path: Path, mosquitto: Mosquitto, sim: LogixSimulator
) -> None:
    tags = [
        {"name": "bottles", "address": "Program:MainProgram.BottleCount", "report": "always"},
        {"name": "recipe", "address": "CurrentRecipe", "report": "always"},
        {"name": "setpoint", "address": "Program:MainProgram.Setpoint", "report": "always"},
        {"name": "line_name", "address": "LineName", "report": "always"},
        {"name": "bit5", "address": "StatusBits.5", "report": "always"},
        {"name": "lreal", "address": "TestLreal", "report": "always"},
        {"name": "trend_head", "address": "Trend[0]{4}", "report": "always"},
        {"name": "ghost", "address": "NoSuchTag"},
    ]
    rec = Recorder(mosquitto.port, "t/line/#").start()
    async with running(config(tmp_path, mosquitto.port, sim.port, tags)):
        await until(lambda: len(rec.readings("filler")) >= 60, "60 readings")
    rec.stop()
    snap = snapshot(PLANT_T)
    topics = {m.topic for m in rec.snapshot() if "/_gateway/" not in m.topic}
    assert {
        "t/line/filler/bottles",
        "t/line/filler/recipe.Name",
        "t/line/filler/recipe.Limits.High",
        "t/line/filler/recipe.Steps",
        "t/line/filler/ghost",
    } <= topics
    assert "t/line/filler/recipe" not in topics  # a UDT is published as its members
    values = {tag: r["value"] for tag, r in latest(rec).items()}
    assert values == {
        "bottles": snap.counter,
        "recipe.Name": snap.recipe,
        "recipe.BatchSize": 1200,
        "recipe.FillVolume": 330.0,
        "recipe.OvenTemp": values["recipe.OvenTemp"],
        "recipe.Limits.Low": 172.0,
        "recipe.Limits.High": 192.0,
        "recipe.Steps": [10, 20, 30, 40],
        "setpoint": 72.5,
        "line_name": "Bottling Line 1",
        "bit5": True,
        "lreal": 2.718281828459045,
        "trend_head": [0.0, 0.25, 0.5, 0.75],
        "ghost": None,
    }
    assert abs(values["recipe.OvenTemp"] - snap.temperature) < 1e-4
    assert type(values["bottles"]) is int
    assert type(values["recipe.FillVolume"]) is float
    readings = rec.readings("filler")
    assert {r["quality"] for r in readings if r["tag"] != "ghost"} == {"good"}
    ghost = [r for r in readings if r["tag"] == "ghost"]
    assert [(r["quality"], r["value"]) for r in ghost] == [("bad", None)]  # on_change: once
    report = seq_report(readings)
    assert (report["missing"], report["duplicates"], report["first"]) == (0, 0, 1)


async def test_a_restarted_plc_goes_bad_then_good_without_gaps(
    tmp_path: Path, mosquitto: Mosquitto, sim: LogixSimulator
) -> None:
    tags = [
        {"name": "bottles", "address": "Program:MainProgram.BottleCount"},
        {"name": "speed", "address": "LineSpeed"},
    ]
    rec = Recorder(mosquitto.port, "t/line/#").start()

    def qualities() -> list[str]:
        return [r["quality"] for r in rec.readings("filler") if r["tag"] == "bottles"]

    async with running(config(tmp_path, mosquitto.port, sim.port, tags)) as gateway:
        await until(lambda: qualities() == ["good"], "a good reading")
        await sim.stop()
        await until(lambda: qualities() == ["good", "bad"], "bad quality")
        await sim.start()  # the same port
        await until(lambda: qualities() == ["good", "bad", "good"], "recovery")
        runner = gateway.runners[0]
        assert (runner.stats.state, runner.stats.connects) == ("connected", 2)
    rec.stop()
    readings = rec.readings("filler")
    assert [r["value"] for r in readings if r["tag"] == "speed"] == [
        snapshot(PLANT_T).speed,
        None,
        snapshot(PLANT_T).speed,
    ]
    report = seq_report(readings)
    assert (report["missing"], report["duplicates"], report["first"]) == (0, 0, 1)
