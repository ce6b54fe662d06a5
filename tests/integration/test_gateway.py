"""The whole gateway in-process: simulator over TCP -> buffer -> real mosquitto -> a subscriber."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import Mosquitto, free_port
from simulators.modbus import ModbusSimulator
from simulators.plant import RECIPES
from tests.helpers import Recorder, async_wait_until, gateway_config, running, seq_report

pytestmark = pytest.mark.integration


def recorder(broker: Mosquitto, topic: str = "t/line/#", **kw: Any) -> Recorder:
    return Recorder(broker.port, topic, **kw).start()


async def until(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    await async_wait_until(cond, timeout, what)


async def test_values_arrive_decoded_on_the_contract_topics(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    tags = [
        {"name": "counter", "address": "holding:20", "type": "uint32", "report": "always"},
        {
            "name": "neg_counter",
            "address": "holding:22",
            "type": "int32",
            "byte_order": "CDAB",
            "report": "always",
        },
        {
            "name": "sine",
            "address": "holding:12",
            "type": "float32",
            "byte_order": "CDAB",
            "report": "always",
        },
        {
            "name": "recipe",
            "address": "holding:40",
            "type": "string",
            "length": 8,
            "report": "always",
        },
        {"name": "running", "address": "coil:0", "report": "always"},
        {
            "name": "temp",
            "address": "40003",
            "type": "int16",
            "multiplier": 0.1,
            "units": "degC",
            "report": "always",
        },
    ]
    rec = recorder(mosquitto)
    async with running(gateway_config(tmp_path, mosquitto.port, modbus_sim.port, tags=tags)):
        await until(lambda: len(rec.readings()) >= 30, what="30 readings")
    rec.stop()
    readings = rec.readings("press1")
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for r in readings:
        by_tag.setdefault(r["tag"], []).append(r)
    assert set(by_tag) == {t["name"] for t in tags}
    for r in readings:
        assert set(r) >= {"value", "quality", "ts", "seq"}
        assert r["quality"] == "good"
        assert r["retained"] is False  # live delivery to a subscriber already there
    # Values from one scan come from one request: they agree with each other.
    scans: dict[int, dict[str, Any]] = {}
    for r in readings:
        scans.setdefault(r["ts"], {})[r["tag"]] = r["value"]
    for scan in scans.values():
        if "counter" in scan and "neg_counter" in scan:
            assert scan["neg_counter"] == -scan["counter"]
    assert all(r["value"] in RECIPES for r in by_tag["recipe"])
    assert all(25 <= r["value"] <= 75 for r in by_tag["sine"])
    assert all(170 <= r["value"] <= 190 for r in by_tag["temp"])
    assert all(isinstance(r["value"], bool) for r in by_tag["running"])
    report = seq_report(readings)
    assert (report["missing"], report["duplicates"], report["first"]) == (0, 0, 1)


async def test_status_is_retained_online_then_offline_and_live_values_are_retained(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    async with running(gateway_config(tmp_path, mosquitto.port, modbus_sim.port)) as gateway:
        await until(lambda: gateway.publisher.stats.readings_acked >= 4)
        late = recorder(mosquitto, client_id="late", persistent=False)
        await until(lambda: any(m.topic == "t/line/_gateway/status" for m in late.snapshot()))
        await until(
            lambda: len([m for m in late.snapshot() if m.retain and "press1" in m.topic]) >= 2
        )
        status = next(m for m in late.snapshot() if m.topic == "t/line/_gateway/status")
        assert status.retain
        assert status.body["state"] == "online"
        await until(
            lambda: any(m.topic == "t/line/_gateway/metrics" for m in late.snapshot()),
            what="metrics",
        )
        metrics = next(m for m in late.snapshot() if m.topic == "t/line/_gateway/metrics").body
        assert metrics["sources"]["press1"]["state"] == "connected"
        assert set(metrics["readings"]) >= {"polled", "buffered", "published", "acknowledged"}
        assert {"dropped", "replayed", "replay_rate"} <= set(metrics["readings"])
        assert metrics["readings"]["polled"] >= metrics["readings"]["acknowledged"] > 0
        assert "oldest_unsent_age_s" in metrics["backlog"]
        assert metrics["publisher"]["state"] == "online"
    await until(lambda: late.snapshot()[-1].topic == "t/line/_gateway/status")
    assert late.snapshot()[-1].body["state"] == "offline"
    late.stop()


async def test_per_batch_layout(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    rec = recorder(mosquitto)
    async with running(
        gateway_config(tmp_path, mosquitto.port, modbus_sim.port, layout="per_batch")
    ):
        await until(lambda: len(rec.readings()) >= 10)
    rec.stop()
    batches = [m for m in rec.snapshot() if m.topic == "t/line/press1"]
    assert batches
    assert all({"ts", "readings"} <= set(m.body) for m in batches)
    assert {r["tag"] for m in batches for r in m.body["readings"]} == {"counter", "sine"}
    assert not any(m.retain for m in batches)
    assert seq_report(rec.readings())["missing"] == 0


async def test_an_unreachable_plc_goes_bad_while_the_other_source_runs_on(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    config = gateway_config(tmp_path, mosquitto.port, modbus_sim.port)
    dead = dict(config["sources"][0], name="press2", port=free_port(), connect_timeout="500ms")
    config["sources"].append(dead)
    rec = recorder(mosquitto)
    async with running(config) as gateway:
        await until(lambda: len(rec.readings("press2")) >= 2 and len(rec.readings("press1")) >= 20)
        press2 = next(r for r in gateway.runners if r.source.name == "press2")
        await until(lambda: press2.stats.connects == 0 and press2.stats.last_error is not None)
        assert "cannot connect" in (press2.stats.last_error or "")
    rec.stop()
    bad = rec.readings("press2")
    assert {(r["tag"], r["quality"], r["value"]) for r in bad} == {
        ("counter", "bad", None),
        ("sine", "bad", None),
    }
    assert len(bad) == 2  # reported once, not every retry
    assert all(r["quality"] == "good" for r in rec.readings("press1"))


async def test_scans_continue_into_the_buffer_while_the_broker_is_unreachable(
    tmp_path: Path, modbus_sim: ModbusSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main
    from tests.helpers import write_config

    config = gateway_config(tmp_path, free_port(), modbus_sim.port)
    path = str(write_config(tmp_path / "gw.yaml", config))
    async with running(config) as gateway:
        await until(lambda: gateway.buffer.stats.readings_added >= 20)
        assert gateway.publisher.stats.state == "offline"
        assert "127.0.0.1" in (gateway.publisher.stats.last_error or "")
        backlog = await gateway.buffer.backlog()
        assert backlog[1] == gateway.buffer.stats.readings_added
        # `plantgate buffer stats` reads the same numbers while the gateway runs.
        assert main(["buffer", "stats", "-c", path]) == 0
        row = next(
            line for line in capsys.readouterr().out.splitlines() if line.startswith("press1")
        )
        batches, readings = (int(x) for x in row.split()[1:3])
        assert readings >= backlog[1]
        assert batches >= backlog[0]


async def test_health_command_follows_the_gateway(
    tmp_path: Path,
    mosquitto: Mosquitto,
    modbus_sim: ModbusSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway.cli import main
    from tests.helpers import write_config

    config = gateway_config(tmp_path, mosquitto.port, modbus_sim.port)
    path = str(write_config(tmp_path / "gw.yaml", config))
    assert main(["health", "-c", path]) == 1
    assert "is the gateway running" in capsys.readouterr().err
    async with running(config) as gateway:
        await until(lambda: gateway.publisher.stats.readings_acked > 0)
        await until(lambda: main(["health", "-c", path, "--strict"]) == 0, what="healthy")
        out = capsys.readouterr().out
        assert "broker online" in out
        assert "source press1: connected" in out
    assert main(["health", "-c", path]) == 1
    assert "stopped" in capsys.readouterr().err
