"""Many gateways into one broker, kept apart by the broker: a real mosquitto with a password
file and the ACL that docs/fleet.md shows (read from the page, so the two never differ).

A gateway configured by mistake with another line's topic_prefix gets not one message into
that line's tree, and with MQTT 5 its refused publishes are counted and said once per topic.
MES reads every line and may publish commands, nothing else.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from simulators.broker import Mosquitto
from simulators.modbus import ModbusSimulator
from tests.helpers import Recorder, async_wait_until, gateway_config, running, seq_report

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"
MARK = "<!-- mosquitto acl_file: tests/integration/test_fleet_acl.py runs this very text -->"

LINE1, LINE2 = "plant1-packaging-line1", "plant1-packaging-line2"
PREFIX = {LINE1: "acme/plant1/packaging/line1", LINE2: "acme/plant1/packaging/line2"}
PASSWORDS = {LINE1: "pw-line1", LINE2: "pw-line2", "mes": "pw-mes", "historian": "pw-historian"}
SETPOINT = {"name": "setpoint", "address": "holding:150", "type": "int16", "writable": True}


def fleet_acl() -> str:
    """The ACL block of docs/fleet.md: the fenced block right after the marker comment."""
    found = re.search(re.escape(MARK) + r"\n```text\n(.*?)\n```", DOC.read_text(), re.S)
    assert found is not None, f"{DOC} has no ACL block after {MARK}"
    return found[1] + "\n"


@pytest.fixture
def fleet_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """mosquitto with the fleet's users and the page's ACL."""
    acl = tmp_path / "acl"
    acl.write_text(fleet_acl())
    broker = Mosquitto(tmp_path / "broker", persistence=False, users=PASSWORDS, acl_file=acl)
    broker.start()
    yield broker
    broker.stop()


def line_config(
    tmp: Path, name: str, prefix: str, broker: int, modbus: int, **options: Any
) -> dict[str, Any]:
    """A gateway of the fleet: its own name, client id, user, buffer; MQTT 5."""
    work = tmp / name
    work.mkdir()
    config = gateway_config(
        work,
        broker,
        modbus,
        protocol=5,
        topic_prefix=prefix,
        client_id=name,
        username=name,
        password=PASSWORDS[name],
        **options,
    )
    config["gateway"]["name"] = name
    return config


async def test_a_gateway_on_another_lines_prefix_gets_nothing_into_that_tree(
    tmp_path: Path,
    modbus_sim: ModbusSimulator,
    fleet_broker: Mosquitto,
    caplog: pytest.LogCaptureFixture,
) -> None:
    line1 = line_config(tmp_path, LINE1, PREFIX[LINE1], fleet_broker.port, modbus_sim.port)
    # Line 2's gateway, copied from line 1's config and given line 1's prefix by mistake. Its
    # seqs start at 1 like line 1's, so a single reading let through shows as a duplicate seq;
    # its extra tag, as a topic line 1 never has.
    line2 = line_config(tmp_path, LINE2, PREFIX[LINE1], fleet_broker.port, modbus_sim.port)
    line2["sources"][0]["tags"].append(
        {"name": "line2_only", "address": "holding:0", "report": "always"}
    )
    historian = Recorder(
        fleet_broker.port,
        f"{PREFIX[LINE1]}/#",
        persistent=False,
        client_id="historian",
        username="historian",
        password=PASSWORDS["historian"],
    ).start()
    try:
        with caplog.at_level(logging.WARNING):
            async with running(line1) as gw1, running(line2) as gw2:
                stats2 = gw2.publisher.stats

                # Every reading line 2 committed was refused, and counted: at a moment between
                # scans, the count is exactly its last seq.
                def all_refused() -> bool:
                    return stats2.refused.get("press1", 0) == gw2.buffer.last_seq("press1") >= 40

                await async_wait_until(all_refused, 30, "line 2's readings counted as refused")
                health = tmp_path / LINE2 / "health.json"

                def in_health() -> bool:
                    published = json.loads(health.read_text()) if health.exists() else {}
                    return bool(published.get("publisher", {}).get("refused", {}).get("press1"))

                await async_wait_until(in_health, 15, "refused in line 2's health file")
                await async_wait_until(
                    lambda: historian.complete_to(40, "press1"),
                    15,
                    "line 1's readings at the historian",
                )
                assert gw1.publisher.stats.refused == {}
    finally:
        historian.stop()

    readings = historian.readings("press1")
    assert {r["tag"] for r in readings} == {"counter", "sine"}  # never line2_only
    report = seq_report(readings)
    assert report["duplicates"] == 0, report
    assert report["missing"] == 0, report
    assert report["last"] >= 40
    statuses = [m.body for m in historian.snapshot() if m.topic.endswith("/_gateway/status")]
    assert statuses
    assert all(s["gateway"] == LINE1 for s in statuses), statuses
    said = [r.getMessage() for r in caplog.records if "broker refused" in r.getMessage()]
    topics = [line.split(" on ", 1)[1].split(":", 1)[0] for line in said]
    assert len(topics) == len(set(topics)), said  # once per topic, however many refusals
    for tag in ("counter", "sine", "line2_only"):
        assert f"{PREFIX[LINE1]}/press1/{tag}" in topics, said
    assert all("Not authorized (0x87)" in line for line in said), said


class Mes:
    """An MQTT 5 client of the MES: what it receives, and the broker's answer to each publish."""

    def __init__(self, port: int, user: str) -> None:
        self.received: list[tuple[str, Any]] = []
        self.answers: dict[int, ReasonCode] = {}
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=paho.MQTTv5)
        self.client.username_pw_set(user, PASSWORDS[user])
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("acme/#", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "MES could not subscribe"

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.topic, json.loads(msg.payload)))

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        with self.lock:
            self.answers[mid] = rc

    def publish(self, topic: str, body: dict[str, Any]) -> int:
        """Publish at QoS 1; the message id, whose answer lands in ``answers``."""
        return self.client.publish(topic, json.dumps(body), qos=1).mid

    def answer(self, mid: int) -> ReasonCode | None:
        """The broker's PUBACK reason for a message, once it came."""
        with self.lock:
            return self.answers.get(mid)

    def topics(self) -> set[str]:
        """Every topic a message arrived on."""
        with self.lock:
            return {topic for topic, _ in self.received}

    def on(self, topic: str) -> list[Any]:
        """The bodies that arrived on one topic."""
        with self.lock:
            return [body for t, body in self.received if t == topic]

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


async def test_mes_reads_every_line_and_may_publish_commands_only(
    tmp_path: Path, modbus_sim: ModbusSimulator, fleet_broker: Mosquitto
) -> None:
    port = fleet_broker.port
    line1 = line_config(tmp_path, LINE1, PREFIX[LINE1], port, modbus_sim.port)
    line1["gateway"]["writes"] = True
    line1["sources"][0]["tags"].append(SETPOINT)
    line2 = line_config(tmp_path, LINE2, PREFIX[LINE2], port, modbus_sim.port)
    mes, historian = Mes(port, "mes"), Mes(port, "historian")
    try:
        async with running(line1), running(line2):
            both = {f"{PREFIX[line]}/press1/counter" for line in (LINE1, LINE2)}
            await async_wait_until(lambda: both <= mes.topics(), 15, "both lines at MES")

            # A command through the ACL both ways: MES may publish it, line 1's gateway may
            # read it and publish its result, MES may read that.
            command = f"{PREFIX[LINE1]}/press1/setpoint/set"
            now = int(time.time() * 1000)
            sent = mes.publish(command, {"value": 42, "id": "mes-1", "ts": now})
            await async_wait_until(lambda: mes.answer(sent) is not None, 10, "PUBACK")
            answer = mes.answer(sent)
            assert answer is not None
            assert not answer.is_failure, answer

            def result() -> list[Any]:
                return mes.on(f"{command}/result")

            await async_wait_until(lambda: bool(result()), 15, "the command's result")
            assert result()[0]["id"] == "mes-1"
            assert result()[0]["result"] == "written"

            # Anything but a command is refused, for MES and (everything) for the historian.
            tries = [
                (mes, f"{PREFIX[LINE1]}/press1/counter"),
                (mes, f"{PREFIX[LINE2]}/_gateway/status"),
                (mes, f"{PREFIX[LINE1]}/press1/setpoint/set/result"),
                (historian, command),
                (historian, f"{PREFIX[LINE2]}/press1/counter"),
            ]
            refused = {"value": 0, "id": "refused", "ts": now}
            mids = [(who, who.publish(topic, refused)) for who, topic in tries]
            await async_wait_until(
                lambda: all(who.answer(mid) is not None for who, mid in mids), 10, "PUBACKs"
            )
            answers = [str(who.answer(mid)) for who, mid in mids]
            assert answers == ["Not authorized"] * len(tries), list(
                zip(tries, answers, strict=True)
            )
            # Nothing refused reached anyone (MES reads every topic that was tried).
            assert all(body != refused for _, body in mes.received)
    finally:
        mes.stop()
        historian.stop()
