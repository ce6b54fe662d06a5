"""OPC UA end to end: simulator over TCP -> gateway in-process -> real mosquitto -> a subscriber."""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import Mosquitto, free_port
from simulators.opcua import OpcUaSimulator, nsu
from simulators.plant import RECIPES, STATES
from tests.helpers import Recorder, async_wait_until, running, seq_report

pytestmark = pytest.mark.integration

# Tag name -> (simulator variable, the JSON type its value must arrive as).
TAGS: dict[str, tuple[str, type]] = {
    "zone1_temp": ("Oven.Zone1.Temp", float),
    "zone2_temp": ("Oven.Zone2.Temp", float),
    "profile": ("Oven.Profile", list),
    "counter": ("Filler.Counter", int),
    "total": ("Filler.TotalBottles", int),
    "state_text": ("Filler.StateText", str),
    "state_since": ("Filler.StateSince", str),
    "running": ("Filler.Running", bool),
    "recipe": ("Filler.Recipe", str),
    "batch_id": ("Filler.BatchId", str),
    "heartbeat": ("Filler.Heartbeat", int),
    "trim": ("Utilities.Trim", int),
}


def opcua_source(name: str, endpoint: str, subscribe: bool) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "opcua",
        "url": endpoint,
        "subscribe": subscribe,
        "scan": "100ms",
        "watchdog": "1s",
        "backoff_max": "1s",
        "tags": [{"name": tag, "node": nsu(var)} for tag, (var, _) in TAGS.items()],
    }


async def test_values_arrive_typed_on_the_contract_topics_with_gap_free_seq(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = OpcUaSimulator(port=free_port(), interval=0.05)
    await sim.start()
    config = {
        "gateway": {"name": "test-edge", "buffer": {"path": str(tmp_path / "buffer.db")}},
        "mqtt": {"url": f"mqtt://127.0.0.1:{mosquitto.port}", "topic_prefix": "t/line"},
        "sources": [
            opcua_source("oven", sim.endpoint, subscribe=True),
            opcua_source("filler", sim.endpoint, subscribe=False),
        ],
    }
    rec = Recorder(mosquitto.port, "t/line/#").start()
    try:
        async with running(config):

            def complete() -> bool:
                for src in ("oven", "filler"):
                    readings = rec.readings(src)
                    if {r["tag"] for r in readings} != set(TAGS):
                        return False
                    if sum(r["tag"] == "counter" for r in readings) < 5:
                        return False
                return True

            await async_wait_until(complete, timeout=20, what="every tag from both sources")
    finally:
        rec.stop()
        await sim.stop()

    topics = {m.topic for m in rec.snapshot() if "/_gateway/" not in m.topic}
    assert topics == {f"t/line/{src}/{tag}" for src in ("oven", "filler") for tag in TAGS}
    for src in ("oven", "filler"):
        readings = rec.readings(src)
        for r in readings:
            assert set(r) >= {"value", "quality", "ts", "seq"}
            assert r["quality"] == "good", r
            assert type(r["value"]) is TAGS[r["tag"]][1], r
            assert isinstance(r["ts"], int)
        by_tag: dict[str, list[Any]] = {}
        for r in readings:
            by_tag.setdefault(r["tag"], []).append(r["value"])
        assert all(170 <= v <= 190 for v in by_tag["zone1_temp"])
        assert all(len(v) == 10 for v in by_tag["profile"])
        assert all(v in STATES for v in by_tag["state_text"])
        assert all(v in RECIPES for v in by_tag["recipe"])
        assert all(datetime.fromisoformat(v).tzinfo is not None for v in by_tag["state_since"])
        assert all(
            base64.b64decode(v).decode().split("/")[0] in RECIPES for v in by_tag["batch_id"]
        )
        counts = by_tag["counter"]
        assert counts == sorted(counts)
        report = seq_report(readings)
        assert (report["missing"], report["duplicates"], report["first"]) == (0, 0, 1), src
