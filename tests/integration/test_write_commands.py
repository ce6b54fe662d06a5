"""Writes from MES through a real mosquitto to the simulators: one door (the rules), exactly one
result per command, an audit trail committed before it is published, nothing refused on the
wire (counted at the simulators)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.cli import main
from gateway.config import Config
from simulators.broker import Mosquitto, free_port
from simulators.logix import LogixSimulator
from simulators.modbus import ModbusSimulator
from simulators.opcua import OpcUaSimulator, nsu
from tests.helpers import PLANT_T, async_wait_until, gateway_config, running, write_config

pytestmark = pytest.mark.integration

SETPOINT = {"name": "setpoint", "address": "holding:150", "type": "int16", "writable": True}


class Mes:
    """An MES client: sends commands, collects results and audit entries."""

    def __init__(self, port: int) -> None:
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.audit: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        # A persistent session: what the gateway publishes while it reconnects is queued.
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="mes", clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [("t/line/+/+/set/result", 1), ("t/line/_gateway/audit", 1)]
        )
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self.lock:
            if msg.topic.endswith("/_gateway/audit"):
                self.audit.append(body)
            else:
                self.results.setdefault(str(body.get("id")), []).append(body)

    def send(
        self,
        source: str,
        tag: str,
        value: Any,
        command_id: str,
        age_ms: int = 0,
        wait: bool = False,
    ) -> None:
        body = {"value": value, "id": command_id, "ts": int(time.time() * 1000) - age_ms}
        info = self.client.publish(f"t/line/{source}/{tag}/set", json.dumps(body), qos=1)
        if wait:
            info.wait_for_publish(5)

    def result(self, command_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.results.get(command_id)
            return found[0] if found else None

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def writes_config(tmp_path: Path, broker: int, modbus: int, **gateway: Any) -> dict[str, Any]:
    tags = [
        {"name": "counter", "address": "holding:0", "writable": True},  # a read-only area
        SETPOINT | {"write": {"min": -500, "max": 500, "max_rate": 1}},
        {
            "name": "mode",
            "address": "holding:151",
            "writable": True,
            "write": {"allowed": [1, 2, 3]},
        },
        {"name": "speed", "address": "holding:152", "type": "float32"},  # not writable
        {"name": "valve", "address": "coil:20", "writable": True},
    ]
    config = gateway_config(tmp_path, broker, modbus, tags=tags)
    config["gateway"] |= {"writes": True, **gateway}
    return config


async def test_each_rule_refuses_before_the_wire_and_a_good_write_is_read_back(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    mes = Mes(mosquitto.port)
    config = writes_config(tmp_path, mosquitto.port, modbus_sim.port)
    try:
        async with running(config) as gateway:
            await async_wait_until(lambda: gateway.runners[0].stats.state == "connected", 10)
            modbus_sim.writes.clear()
            refused = {
                "expired": ("setpoint", 100, 60_000),
                "type": ("setpoint", "high", 0),
                "range": ("setpoint", 70000, 0),
                "max": ("setpoint", 501, 0),
                "not_allowed": ("mode", 4, 0),
                "not_writable": ("speed", 1.5, 0),
            }
            for rule, (tag, value, age) in refused.items():
                mes.send("press1", tag, value, f"c-{rule}", age_ms=age)
            for rule in refused:
                await async_wait_until(lambda r=rule: mes.result(f"c-{r}") is not None, 10)
            assert not modbus_sim.writes  # not one refused command reached the device
            mes.send("press1", "setpoint", -123, "c-good")
            await async_wait_until(lambda: mes.result("c-good") is not None, 10)
            mes.send("press1", "valve", True, "c-valve")
            await async_wait_until(lambda: mes.result("c-valve") is not None, 10)
            mes.send("press1", "counter", 5, "c-device")  # the device refuses that area
            await async_wait_until(lambda: mes.result("c-device") is not None, 10)
            await async_wait_until(lambda: len(mes.audit) >= len(refused) + 3, 10)
    finally:
        mes.stop()
    for rule in refused:
        result = mes.result(f"c-{rule}")
        assert result is not None
        assert result["result"] == ("expired" if rule == "expired" else "refused"), result
        assert result["rule"] == rule, result
        assert result["reason"]
    assert mes.result("c-good") == {**mes.result("c-good"), "result": "written", "value": -123}  # type: ignore[dict-item]
    assert mes.result("c-valve")["result"] == "written"  # type: ignore[index]
    device = mes.result("c-device")
    assert device is not None
    assert device["result"] == "failed"
    assert "Modbus exception 2 (illegal data address)" in device["reason"]
    assert all(len(v) == 1 for v in mes.results.values())  # exactly one result each
    good = next(a for a in mes.audit if a["id"] == "c-good")
    assert good["after"] == -123
    assert "before" in good


async def test_writes_off_means_nothing_reaches_the_device_and_every_command_is_answered(
    tmp_path: Path,
    mosquitto: Mosquitto,
    modbus_sim: ModbusSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mes = Mes(mosquitto.port)
    config = writes_config(tmp_path, mosquitto.port, modbus_sim.port, writes=False)
    try:
        async with running(config) as gateway:
            await async_wait_until(lambda: gateway.runners[0].stats.state == "connected", 10)
            modbus_sim.writes.clear()
            for n in range(5):
                mes.send("press1", "setpoint", n, f"off-{n}")
            await async_wait_until(lambda: all(mes.result(f"off-{n}") for n in range(5)), 10)
            assert not modbus_sim.writes
    finally:
        mes.stop()
    assert {mes.result(f"off-{n}")["rule"] for n in range(5)} == {"writes_disabled"}  # type: ignore[index]
    path = write_config(tmp_path / "gw.yaml", config)
    assert main(["audit", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("writes_disabled") == 5


async def test_a_flood_of_commands_is_held_to_max_rate(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    mes = Mes(mosquitto.port)
    config = writes_config(tmp_path, mosquitto.port, modbus_sim.port)
    try:
        async with running(config) as gateway:
            await async_wait_until(lambda: gateway.runners[0].stats.state == "connected", 10)
            modbus_sim.writes.clear()
            for n in range(20):
                mes.send("press1", "setpoint", n, f"flood-{n}")
            await async_wait_until(lambda: all(mes.result(f"flood-{n}") for n in range(20)), 15)
    finally:
        mes.stop()
    results = [mes.result(f"flood-{n}") for n in range(20)]
    written = [r for r in results if r and r["result"] == "written"]
    assert len(written) == 1  # max_rate 1: one write in the second the flood took
    assert {r["rule"] for r in results if r and r["result"] == "refused"} == {"rate"}
    assert sum(modbus_sim.writes.values()) == 1


async def test_a_result_committed_while_the_broker_is_away_is_published_when_it_returns(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    mes = Mes(mosquitto.port)
    config = writes_config(tmp_path, mosquitto.port, modbus_sim.port)
    try:
        async with running(config) as gateway:
            await async_wait_until(lambda: gateway.publisher.online.is_set(), 10)
            mes.send("press1", "setpoint", 42, "c-race", wait=True)
            mosquitto.stop()  # racing the command's write, result and audit
            mosquitto.start()
            await async_wait_until(lambda: mes.result("c-race") is not None, 30)
    finally:
        mes.stop()
    results = mes.results["c-race"]
    assert results[0]["result"] == "written"
    # At least once across a broker restart: a repeat is the same result, recognisable by id.
    assert all(r == results[0] for r in results)
    assert sum(gateway.desk.counts.values()) == 1  # the command itself was handled once


async def test_opc_ua_and_logix_writes_through_the_gateway(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    opcua = OpcUaSimulator(port=free_port(), interval=0.05)
    logix = LogixSimulator("127.0.0.1", free_port(), clock=lambda: PLANT_T)
    await opcua.start()
    await logix.start()
    mes = Mes(mosquitto.port)
    config = gateway_config(tmp_path, mosquitto.port, free_port())
    config["gateway"]["writes"] = True
    config["sources"] = [
        {
            "name": "oven",
            "protocol": "opcua",
            "url": opcua.endpoint,
            "subscribe": False,
            "scan": "200ms",
            "tags": [
                {"name": "weight", "node": nsu("Recipe.FillWeight"), "writable": True},
                {"name": "name", "node": nsu("Recipe.Name"), "writable": True},
            ],
        },
        {
            "name": "filler",
            "protocol": "logix",
            "host": "127.0.0.1",
            "port": logix.port,
            "slot": 0,
            "scan": "200ms",
            "tags": [
                {"name": "dint", "address": "TestDint", "writable": True},
                {"name": "limit", "address": "SpeedLimit", "writable": True},  # read only
            ],
        },
    ]
    try:
        async with running(config) as gateway:
            await async_wait_until(
                lambda: all(r.stats.state == "connected" for r in gateway.runners), 20
            )
            mes.send("oven", "weight", 512.5, "ua-1")
            mes.send("oven", "name", "SPECIAL-7", "ua-2")
            mes.send("filler", "dint", -4242, "cip-1")
            mes.send("filler", "limit", 100, "cip-2")
            ids = ("ua-1", "ua-2", "cip-1", "cip-2")
            await async_wait_until(lambda: all(mes.result(i) for i in ids), 20)
    finally:
        mes.stop()
        await opcua.stop()
        await logix.stop()
    assert mes.result("ua-1") == {**mes.result("ua-1"), "result": "written", "value": 512.5}  # type: ignore[dict-item]
    assert mes.result("ua-2")["value"] == "SPECIAL-7"  # type: ignore[index]
    assert mes.result("cip-1")["result"] == "written"  # type: ignore[index]
    refused = mes.result("cip-2")
    assert refused is not None
    assert refused["result"] == "failed"
    assert "CIP status 0x0F" in refused["reason"]


async def test_writes_racing_reloads_each_get_one_result_and_follow_the_new_map(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    mes = Mes(mosquitto.port)
    config = writes_config(tmp_path, mosquitto.port, modbus_sim.port)
    path = write_config(tmp_path / "gw.yaml", config)

    def mode_writes() -> int:
        return sum(n for (_, _, address), n in modbus_sim.writes.items() if address == 151)  # mode

    sent: list[str] = []

    def send_some(label: str, count: int) -> None:
        for n in range(count):
            command = f"{label}-{n}"
            mes.send("press1", "mode", 1 + n % 3, command)
            sent.append(command)

    try:
        async with running(Config.model_validate(config)) as gateway:
            gateway.path = path
            await async_wait_until(lambda: gateway.runners[0].stats.state == "connected", 10)
            modbus_sim.writes.clear()
            # Commands in flight while press1 restarts with a changed tag list: the device takes
            # its time over each write, so the restart comes in the middle of one.
            modbus_sim.faults.write_stall = 0.2
            send_some("before", 10)
            await async_wait_until(lambda: mode_writes() >= 1, 10)
            changed = writes_config(tmp_path, mosquitto.port, modbus_sim.port)
            changed["sources"][0]["tags"].append({"name": "extra", "address": "holding:160"})
            write_config(path, changed)
            assert await gateway.reload()
            modbus_sim.faults.write_stall = 0.0
            send_some("during", 10)
            await async_wait_until(lambda: all(mes.result(c) for c in sent), 20)
            # Then a map that takes `mode`'s write permission away: the next commands are refused
            # by the rules and nothing more reaches the device.
            locked = writes_config(tmp_path, mosquitto.port, modbus_sim.port)
            for tag in locked["sources"][0]["tags"]:
                if tag["name"] == "mode":
                    tag.pop("write")
                    tag["writable"] = False
            write_config(path, locked)
            assert await gateway.reload()
            await async_wait_until(lambda: gateway.runners[0].stats.state == "connected", 10)
            reached = mode_writes()
            send_some("after", 5)
            await async_wait_until(lambda: all(mes.result(c) for c in sent), 20)
            assert mode_writes() == reached
    finally:
        mes.stop()
    for command in sent:  # exactly one result each
        assert len(mes.results[command]) == 1, (command, mes.results[command])
    results = {c: mes.results[c][0] for c in sent}
    raced = [r for c, r in results.items() if not c.startswith("after")]
    assert {r["result"] for r in raced} <= {"written", "failed"}, raced
    assert any(r["result"] == "written" for r in raced)
    written = sum(r["result"] == "written" for r in raced)
    failed = sum(r["result"] == "failed" for r in raced)
    # A failed one may still have reached the device (its connection closed under it).
    assert written <= reached <= written + failed
    after = [r for c, r in results.items() if c.startswith("after")]
    assert {(r["result"], r["rule"]) for r in after} == {("refused", "not_writable")}, after
