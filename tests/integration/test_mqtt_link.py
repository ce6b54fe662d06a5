"""MqttLink through a real mosquitto, MQTT 3.1.1 and 5: thousands of acks read a chunk at a
time (plain and TLS), messages received on subscriptions in the same stream, a lost broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import BrokerNode, MqttConfig
from gateway.mqtt import MqttLink, Refusal, Will
from simulators.broker import Mosquitto
from tests.helpers import async_wait_until
from tests.pki import Authority

pytestmark = pytest.mark.integration

PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", 5], ids=["3.1.1", "5"])


class Noted:
    """What a link reported: acks, refusals, messages."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.refused: list[Refusal] = []
        self.messages: list[tuple[str, bytes]] = []


def make_link(url: str, noted: Noted, **mqtt: Any) -> MqttLink:
    return MqttLink(
        MqttConfig(url=url, **mqtt),
        "link-test",
        Will("t/_gateway/status", b"offline"),
        on_acks=noted.acked.extend,
        on_refused=noted.refused.append,
        on_message=lambda topic, payload: noted.messages.append((topic, payload)),
    )


def command_sender(port: int, count: int) -> None:
    """Another client sending ``count`` QoS 1 commands, each acknowledged."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="commander")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for n in range(count):
        client.publish(f"t/press1/tag{n % 7}/set", b'{"value":%d}' % n, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


@PROTOCOLS
async def test_acks_and_commands_interleaved_on_one_connection(
    mosquitto: Mosquitto, protocol: str | int
) -> None:
    noted = Noted()
    link = make_link(mosquitto.url, noted, protocol=protocol)
    await link.connect()
    try:
        await link.subscribe(["t/+/+/set"], qos=1)
        sender = asyncio.create_task(asyncio.to_thread(command_sender, mosquitto.port, 300))
        mids = []
        for n in range(20_000):  # PUBACKs by the thousand, with commands arriving among them
            mids.append(link.publish(f"t/press1/tag{n % 50}", b"%d" % n, qos=1, retain=False))
            if n % 500 == 0:
                await asyncio.sleep(0)
        await sender
        await async_wait_until(lambda: len(noted.acked) == 20_000, 30, "every ack")
        await async_wait_until(lambda: len(noted.messages) == 300, 15, "every command")
    finally:
        await link.disconnect()
    assert sorted(noted.acked) == sorted(mids)  # ids wrap at 65,535: compare as multisets
    assert noted.refused == []
    assert noted.messages == [(f"t/press1/tag{n % 7}/set", b'{"value":%d}' % n) for n in range(300)]


async def test_acks_over_tls_are_all_read(tmp_path: Path) -> None:
    # TLS gives a record per recv(), and mosquitto sends each PUBACK in its own: every one read.
    ca = Authority(tmp_path)
    broker = Mosquitto(tmp_path / "broker", tls=ca.issue("broker", ("127.0.0.1",)))
    broker.start()
    noted = Noted()
    link = make_link(f"mqtts://127.0.0.1:{broker.port}", noted, tls={"ca_file": ca.cert_file})
    try:
        await link.connect()
        for n in range(20_000):
            link.publish(f"t/press1/tag{n % 50}", b"x" * (n % 300), qos=1, retain=False)
            if n % 500 == 0:
                await asyncio.sleep(0)
        await async_wait_until(lambda: len(noted.acked) == 20_000, 30, "every ack")
    finally:
        await link.disconnect()
        broker.stop()


@PROTOCOLS
async def test_a_broker_gone_closes_the_link_with_the_reason(
    tmp_path: Path, protocol: str | int
) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=False)
    broker.start()
    noted = Noted()
    link = make_link(broker.url, noted, protocol=protocol)
    await link.connect()
    try:
        link.publish("t/a", b"1", qos=1, retain=False)
        await async_wait_until(lambda: noted.acked == [1], 10)
        broker.stop()
        why = await asyncio.wait_for(link.closed, 10)
    finally:
        await link.close()
    # mosquitto 2.0 stopping sends no DISCONNECT: the socket closes, the link says so.
    assert why == "the broker closed the connection"


async def test_a_host_and_port_given_to_the_link_override_the_url(mosquitto: Mosquitto) -> None:
    noted = Noted()
    cfg = MqttConfig(url="mqtt://broker-a.invalid:1883")  # a node list's first entry, say
    link = MqttLink(
        cfg,
        "link-test",
        Will("t/_gateway/status", b"offline"),
        on_acks=noted.acked.extend,
        on_refused=noted.refused.append,
        node=BrokerNode.of(f"mqtt://127.0.0.1:{mosquitto.port}"),
    )
    await link.connect(5)
    try:
        assert link.where == f"127.0.0.1:{mosquitto.port}"
        link.publish("t/a", b"1", qos=1, retain=False)
        await async_wait_until(lambda: noted.acked == [1], 10)
    finally:
        await link.disconnect()
