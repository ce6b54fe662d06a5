"""The gateway as a Sparkplug B edge node, seen by a host through a real mosquitto.

The host here subscribes to the whole namespace, decodes every payload with our decoder (to
follow aliases) and, for the checks that matter, with Eclipse Tahu's JavaScript codec, an
implementation nobody here wrote. Completeness is proven from readings, not from seqs: a
Sparkplug payload carries no per-reading seq, so every (tag, timestamp) the sources emitted
must arrive as a metric of a DDATA.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.app import Gateway
from gateway.config import Config
from gateway.models import Batch
from gateway.sparkplug.datatypes import DataType
from gateway.sparkplug.decode import DecodedPayload, decode_payload
from gateway.sparkplug.metrics import BD_SEQ, REBIRTH
from simulators.broker import Mosquitto
from simulators.modbus import ModbusSimulator
from tests.faults import GatewayProcess
from tests.helpers import async_wait_until, gateway_config, running, wait_until, write_config
from tests.sparkplug_js.tahu import decode_with_tahu, encode_with_tahu

pytestmark = pytest.mark.integration

GROUP, EDGE = "plant1", "line1-edge"
TAGS = [
    {"name": "counter", "address": "holding:0", "report": "always", "units": "pcs"},
    {"name": "sine", "address": "holding:10", "type": "float32", "report": "always"},
    {"name": "big", "address": "holding:1000", "type": "uint32", "report": "always"},
    {"name": "flag", "address": "coil:0", "report": "always"},
]


@dataclass
class Host:
    """A Sparkplug host application's view: every message on spBv1.0/#, in order."""

    port: int
    client_id: str = "host"
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Host:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("spBv1.0/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.ready.wait(10)
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def kinds(self) -> list[str]:
        with self.lock:
            return [t.split("/")[2] for t, _ in self.messages if not t.startswith("spBv1.0/STATE")]

    def decoded(self) -> list[tuple[str, DecodedPayload]]:
        """Every message decoded, aliases resolved from the births before it."""
        known: dict[int, tuple[str, Any]] = {}
        out = []
        with self.lock:
            messages = list(self.messages)
        for topic, payload in messages:
            if topic.startswith("spBv1.0/STATE"):
                continue
            body = decode_payload(payload, known)
            if "BIRTH" in topic:
                for m in body.get("metrics", []):
                    if "alias" in m and "name" in m:
                        known[m["alias"]] = (m["name"], DataType[m["datatype"]])
            out.append((topic, body))
        return out

    def readings(self) -> set[tuple[str, str, int]]:
        """(device, metric, timestamp) of every DDATA metric received."""
        return {
            (topic.split("/")[4], m["name"], m["timestamp"])
            for topic, body in self.decoded()
            if "/DDATA/" in topic
            for m in body.get("metrics", [])
        }


def sparkplug_config(tmp_path: Path, broker: int, modbus: int, **sparkplug: Any) -> dict[str, Any]:
    config = gateway_config(tmp_path, broker, modbus, tags=TAGS)
    config["gateway"]["name"] = EDGE
    config["mqtt"] |= {"format": "sparkplug", "sparkplug": {"group_id": GROUP, **sparkplug}}
    return config


@asynccontextmanager
async def spied(config: dict[str, Any]) -> AsyncIterator[tuple[Gateway, list[Batch]]]:
    """A running gateway, and every batch its sources hand the buffer, in order."""
    gateway = Gateway(Config.model_validate(config))
    emitted: list[Batch] = []
    add = gateway.buffer.add

    def keep(batch: Batch) -> None:
        emitted.append(batch)
        add(batch)

    gateway.buffer.add = keep  # type: ignore[method-assign]  # before the runners take it
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await asyncio.wait_for(gateway.started.wait(), 10)
    try:
        yield gateway, emitted
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def emitted_readings(batches: list[Batch]) -> set[tuple[str, str, int]]:
    return {(b.source, r.tag, r.ts) for b in batches for r in b.readings if r.value is not None}


async def test_births_aliases_datatypes_and_data_as_tahu_reads_them(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    host = Host(mosquitto.port).start()
    try:
        async with running(sparkplug_config(tmp_path, mosquitto.port, modbus_sim.port)):
            await async_wait_until(lambda: host.kinds().count("DDATA") >= 5, 20)
    finally:
        host.stop()
    kinds = host.kinds()
    assert kinds[:2] == ["NBIRTH", "DBIRTH"]
    assert kinds[-1] == "NDEATH"  # said on a clean stop (no will on a clean DISCONNECT)
    payloads = [p for t, p in host.messages]
    tahu = decode_with_tahu(payloads)
    assert not [d for d in tahu if "error" in d]
    nbirth, dbirth = tahu[0]["tahu"], tahu[1]["tahu"]
    assert nbirth["seq"] == 0
    node = {m["name"]: m for m in nbirth["metrics"]}
    assert node[BD_SEQ]["type"] == "Int64"
    assert node[REBIRTH]["value"] is False
    death = tahu[-1]["tahu"]
    assert {m["name"]: m["value"] for m in death["metrics"]}[BD_SEQ] == node[BD_SEQ]["value"]
    births = {m["name"]: m for m in dbirth["metrics"]}
    assert {n: births[n]["type"] for n in births} == {
        "counter": "UInt16",
        "sine": "Float",
        "big": "UInt32",
        "flag": "Boolean",
    }
    assert births["counter"]["properties"]["engUnit"]["value"] == "pcs"
    aliases = {m["alias"] for m in dbirth["metrics"]}
    assert len(aliases) == 4
    first_data = next(
        d["tahu"] for (t, _), d in zip(host.messages, tahu, strict=True) if "/DDATA/" in t
    )
    assert all("name" not in m for m in first_data["metrics"])  # by alias only
    assert {m["alias"] for m in first_data["metrics"]} <= aliases
    seqs = [d["tahu"]["seq"] for d in tahu[:-1]]
    assert seqs == list(range(len(seqs)))  # one session, every message numbered in turn


async def test_seq_wraps_past_255_and_every_scan_arrives(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    host = Host(mosquitto.port).start()
    config = sparkplug_config(tmp_path, mosquitto.port, modbus_sim.port)
    config["sources"][0]["scan"] = "20ms"
    try:
        async with spied(config) as (_, emitted):
            await async_wait_until(lambda: host.kinds().count("DDATA") >= 300, 60)
            sent = emitted_readings(emitted)  # a fixed set: later ones are always in flight
            await async_wait_until(lambda: sent <= host.readings(), 20)
    finally:
        host.stop()
    seqs = [body["seq"] for _, body in host.decoded() if "seq" in body]
    assert seqs == [(seqs[0] + i) % 256 for i in range(len(seqs))]  # no gap, wrapping
    assert max(seqs) == 255


async def test_rebirth_on_request_without_reconnecting(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    host = Host(mosquitto.port).start()
    try:
        async with running(sparkplug_config(tmp_path, mosquitto.port, modbus_sim.port)) as gw:
            await async_wait_until(lambda: host.kinds().count("DDATA") >= 3, 20)
            (command,) = encode_with_tahu(
                [
                    {
                        "timestamp": int(time.time() * 1000),
                        "metrics": [{"name": REBIRTH, "type": "Boolean", "value": True}],
                    }
                ]
            )
            host.publish(f"spBv1.0/{GROUP}/NCMD/{EDGE}", command)
            await async_wait_until(lambda: host.kinds().count("NBIRTH") == 2, 10)
            await async_wait_until(lambda: host.kinds().count("DDATA") >= 6, 10)
            assert gw.publisher.stats.connects == 1  # the same connection
    finally:
        host.stop()
    decoded = host.decoded()
    births = [(t, b) for t, b in decoded if "/NBIRTH/" in t]
    bd = [{m["name"]: m["value"] for m in b["metrics"]}[BD_SEQ] for _, b in births]
    assert bd[0] == bd[1]  # the same session: the same bdSeq, no NDEATH between
    kinds = host.kinds()
    second = kinds.index("NBIRTH", 1)
    assert "NDEATH" not in kinds[:second]
    assert kinds[second + 1] == "DBIRTH"
    assert births[1][1]["seq"] == 0


async def test_a_lost_plc_is_a_ddeath_and_its_return_a_dbirth_before_data(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    host = Host(mosquitto.port).start()
    try:
        async with running(sparkplug_config(tmp_path, mosquitto.port, modbus_sim.port)):
            await async_wait_until(lambda: host.kinds().count("DDATA") >= 3, 20)
            await modbus_sim.stop()
            await async_wait_until(lambda: "DDEATH" in host.kinds(), 20)
            await modbus_sim.start()
            await async_wait_until(lambda: host.kinds().count("DBIRTH") == 2, 30)
            await async_wait_until(lambda: host.kinds()[-1] == "DDATA", 10)
    finally:
        host.stop()
    kinds = host.kinds()
    death = kinds.index("DDEATH")
    assert kinds[death + 1] == "DBIRTH"  # nothing of the device between its death and birth
    assert kinds[death + 2] == "DDATA"


async def test_historical_replay_after_a_broker_outage_with_no_missing_scan(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    host = Host(mosquitto.port, client_id="host-persistent")
    config = sparkplug_config(tmp_path, mosquitto.port, modbus_sim.port)
    config["mqtt"]["replay"] = {"max_rate": 400}
    host.start()
    try:
        async with spied(config) as (gateway, emitted):
            await async_wait_until(lambda: host.kinds().count("DDATA") >= 5, 20)
            mosquitto.stop()
            before = gateway.buffer.stats.readings_added
            await async_wait_until(lambda: gateway.buffer.stats.readings_added > before + 200, 30)
            mosquitto.start()
            await async_wait_until(lambda: gateway.publisher.stats.replayed > 200, 30)
            # Every reading the sources emitted up to now arrives: the backlog, as history, and
            # the live ones. (A fixed set: readings emitted later are always in flight.)
            sent = emitted_readings(emitted)
            await async_wait_until(lambda: sent <= host.readings(), 60)
    finally:
        host.stop()
    decoded = host.decoded()
    historical = [
        m
        for t, b in decoded
        if "/DDATA/" in t
        for m in b.get("metrics", [])
        if m.get("is_historical")
    ]
    assert len(historical) >= 200
    births = [b for t, b in decoded if "/NBIRTH/" in t]
    bd = [{m["name"]: m["value"] for m in b["metrics"]}[BD_SEQ] for b in births]
    assert bd[1] == (bd[0] + 1) % 256  # a new session after the outage: the next bdSeq


def state(online: bool, timestamp: int) -> bytes:
    return json.dumps({"online": online, "timestamp": timestamp}).encode()


async def test_a_primary_host_gates_the_births_and_its_absence_ends_the_session(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    host = Host(mosquitto.port).start()
    config = sparkplug_config(
        tmp_path, mosquitto.port, modbus_sim.port, primary_host_id="scada-host"
    )
    topic = "spBv1.0/STATE/scada-host"
    now = int(time.time() * 1000)
    try:
        async with spied(config) as (gateway, emitted):
            await async_wait_until(lambda: gateway.publisher.stats.connects == 1, 10)
            await async_wait_until(lambda: gateway.buffer.stats.readings_added > 20, 10)
            assert "NBIRTH" not in host.kinds()  # connected, buffering, waiting for the host
            host.publish(topic, state(True, now), retain=True)
            await async_wait_until(lambda: "NBIRTH" in host.kinds(), 10)
            await async_wait_until(lambda: host.kinds().count("DDATA") >= 3, 10)
            host.publish(topic, state(False, now + 1000), retain=True)
            await async_wait_until(lambda: "NDEATH" in host.kinds(), 10)
            await async_wait_until(lambda: gateway.publisher.stats.state == "waiting", 10)
            host.publish(topic, state(True, now - 5000), retain=True)  # late and old: ignored
            buffered = gateway.buffer.stats.readings_added
            await async_wait_until(lambda: gateway.buffer.stats.readings_added > buffered + 20, 10)
            assert host.kinds().count("NBIRTH") == 1
            host.publish(topic, state(True, now + 2000), retain=True)
            await async_wait_until(lambda: host.kinds().count("NBIRTH") == 2, 20)
            sent = emitted_readings(emitted)  # a fixed set: later ones are always in flight
            await async_wait_until(lambda: sent <= host.readings(), 30)
    finally:
        host.stop()
    decoded = host.decoded()
    bd_of = {
        kind: [
            {m["name"]: m["value"] for m in b["metrics"]}[BD_SEQ]
            for t, b in decoded
            if f"/{kind}/" in t
        ]
        for kind in ("NBIRTH", "NDEATH")
    }
    assert bd_of["NDEATH"][0] == bd_of["NBIRTH"][0]  # its own NDEATH carries the session's
    assert bd_of["NBIRTH"][1] == (bd_of["NBIRTH"][0] + 1) % 256
    historical = [
        m for t, b in decoded if "/DDATA/" in t for m in b["metrics"] if m.get("is_historical")
    ]
    assert historical  # what was buffered while the host was away came as history


@pytest.mark.slow
def test_a_sigkilled_edge_node_loses_nothing_and_keeps_its_bdseq(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    config = sparkplug_config(tmp_path, mosquitto.port, modbus_sim_thread.port)
    path = write_config(tmp_path / "gw.yaml", config)
    host = Host(mosquitto.port).start()
    db = tmp_path / "buffer.db"
    try:
        with GatewayProcess(path, tmp_path / "gw.log") as gw:
            wait_until(lambda: host.kinds().count("DDATA") >= 20, 30, "data")
            gw.kill()  # the broker publishes the will: NDEATH
            wait_until(lambda: "NDEATH" in host.kinds(), 30, "the will")
            gw.start()
            wait_until(lambda: host.kinds().count("NBIRTH") == 2, 30, "a new session")
            wait_until(lambda: host.kinds().count("DDATA") >= 60, 30, "data again")
            assert gw.terminate() == 0
        committed = sqlite3.connect(db).execute("SELECT last_seq FROM sources").fetchone()[0]
        wait_until(lambda: len(host.readings()) >= committed, 20, "every committed reading")
    finally:
        host.stop()
    # Every reading ever committed (seq counts them from 1, with no gap) arrived once at
    # least: (device, metric, timestamp) is unique per reading of report: always tags.
    assert len(host.readings()) == committed
    decoded = host.decoded()
    births = [
        {m["name"]: m["value"] for m in b["metrics"]}[BD_SEQ] for t, b in decoded if "/NBIRTH/" in t
    ]
    deaths = [
        {m["name"]: m["value"] for m in b["metrics"]}[BD_SEQ] for t, b in decoded if "/NDEATH/" in t
    ]
    assert deaths[0] == births[0]  # the will of the killed session
    assert births[1] == (births[0] + 1) % 256  # kept across the restart, and incremented


async def test_tail_decodes_births_data_by_alias_and_deaths(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    from io import StringIO

    from gateway.config import MqttConfig
    from gateway.tail import tail

    config = sparkplug_config(tmp_path, mosquitto.port, modbus_sim.port)
    out = StringIO()
    watching = asyncio.create_task(
        asyncio.to_thread(tail, MqttConfig.model_validate(config["mqtt"]), None, 6, out)
    )
    await async_wait_until(lambda: "subscribed to spBv1.0/plant1/#" in out.getvalue(), 10)
    async with running(config):
        assert await asyncio.wait_for(watching, 20) == 0
    text = out.getvalue()
    assert "NBIRTH" in text
    assert "DBIRTH" in text
    assert "DDATA" in text
    data = text[text.index("DDATA") :]
    assert "counter" in data  # the alias was resolved to its name from the birth


async def test_a_dcmd_writes_a_writable_tag_and_is_audited(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    config = sparkplug_config(tmp_path, mosquitto.port, modbus_sim.port)
    config["gateway"]["writes"] = True
    config["sources"][0]["tags"].append(
        {"name": "setpoint", "address": "holding:150", "type": "int16", "writable": True}
    )
    host = Host(mosquitto.port).start()
    audit: list[bytes] = []
    host.client.message_callback_add(
        "t/line/_gateway/audit", lambda c, u, m: audit.append(m.payload)
    )
    host.client.subscribe("t/line/_gateway/audit", qos=1)
    try:
        async with running(config):
            await async_wait_until(lambda: "DBIRTH" in host.kinds(), 10)
            (command,) = encode_with_tahu(
                [
                    {
                        "timestamp": int(time.time() * 1000),
                        "metrics": [{"name": "setpoint", "type": "Int16", "value": -77}],
                    }
                ]
            )
            host.publish(f"spBv1.0/{GROUP}/DCMD/{EDGE}/press1", command)
            await async_wait_until(lambda: bool(audit), 10)
    finally:
        host.stop()
    entry = json.loads(audit[0])
    assert (entry["tag"], entry["result"], entry["after"]) == ("setpoint", "written", -77)
    assert modbus_sim.context.units[1].holding[150] == (-77) & 0xFFFF


async def test_a_reload_births_a_changed_device_again_and_kills_a_removed_one(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    config = sparkplug_config(tmp_path, mosquitto.port, modbus_sim.port)
    second = {**config["sources"][0], "name": "press2", "tags": TAGS[:1]}
    config["sources"].append(second)
    path = write_config(tmp_path / "gw.yaml", config)
    host = Host(mosquitto.port).start()

    def device_kinds(device: str) -> list[str]:
        return [t.split("/")[2] for t, _ in host.decoded() if t.endswith(f"/{device}")]

    try:
        async with running(Config.model_validate(config)) as gw:
            gw.path = path
            await async_wait_until(lambda: device_kinds("press2").count("DDATA") >= 2, 20)
            changed = sparkplug_config(tmp_path, mosquitto.port, modbus_sim.port)
            changed["sources"][0]["tags"] = [
                *TAGS,
                {"name": "added", "address": "holding:11", "report": "always"},
            ]
            write_config(path, changed)  # press1 changed, press2 removed
            assert await gw.reload()
            await async_wait_until(lambda: "DDEATH" in device_kinds("press2"), 10)
            await async_wait_until(lambda: device_kinds("press1").count("DBIRTH") == 2, 10)
            await async_wait_until(lambda: device_kinds("press1")[-1] == "DDATA", 10)
            assert gw.publisher.stats.connects == 1  # the same session: no NDEATH, no NBIRTH
            while_running = host.kinds()
    finally:
        host.stop()
    assert while_running.count("NBIRTH") == 1
    assert "NDEATH" not in while_running
    assert device_kinds("press2")[-1] == "DDEATH"  # nothing of press2 after its death
    births = [b for t, b in host.decoded() if t.endswith("/DBIRTH/" + EDGE + "/press1")]
    names = [{m["name"] for m in b["metrics"]} for b in births]
    assert "added" not in names[0]
    assert "added" in names[1]
    press1 = device_kinds("press1")
    assert press1[press1.index("DBIRTH", 1) + 1] == "DDATA"  # born again before its data
    added = [
        m
        for t, b in host.decoded()
        if t.endswith("/DDATA/" + EDGE + "/press1")
        for m in b.get("metrics", [])
        if m.get("name") == "added"
    ]
    assert added  # the new metric's readings arrive, by its alias from the new birth
