"""MQTT 5 through a real mosquitto: topic aliases, refused publishes counted, reason codes in
errors, the broker's Receive Maximum, and a session kept by ``session_expiry``."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import MqttConfig
from gateway.mqtt import MqttLink, Refusal, Will
from simulators.broker import find_mosquitto, find_passwd, free_port
from simulators.modbus import ModbusSimulator
from tests.helpers import Recorder, async_wait_until, gateway_config, running

pytestmark = pytest.mark.integration

PREFIX = "t/line"


class Broker:
    """A mosquitto with what these tests set beyond the shared launcher: an ACL file, users,
    the topic aliases it allows, its Receive Maximum (``max_inflight_messages``), retain and its
    Maximum Packet Size."""

    def __init__(
        self,
        workdir: Path,
        *,
        acl: str | None = None,
        users: dict[str, str] | None = None,
        topic_aliases: int = 10,
        receive_maximum: int = 0,  # 0: none announced
        retain_available: bool = True,
        max_packet_size: int = 0,  # 0: none
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = [
            f"listener {self.port} 127.0.0.1",
            "user root",  # as root, mosquitto would drop to a user who cannot read our files
            f"max_topic_alias {topic_aliases}",
            f"max_inflight_messages {receive_maximum}",
            f"retain_available {str(retain_available).lower()}",
            "max_queued_messages 100000",
            f"log_dest file {workdir / 'mosquitto.log'}",
        ]
        if max_packet_size:
            lines.append(f"max_packet_size {max_packet_size}")
        if users is None:
            lines.append("allow_anonymous true")
        else:
            passwords = workdir / "passwords"
            passwords.write_text("")
            for name, password in users.items():
                subprocess.run(
                    [find_passwd(), "-b", str(passwords), name, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        if acl is not None:
            (workdir / "acl").write_text(acl)
            lines.append(f"acl_file {workdir / 'acl'}")
        conf = workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    said = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"mosquitto did not start: {said}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Broker] = []

    def start(**options: Any) -> Broker:
        broker = Broker(tmp_path / f"broker{len(started)}", **options)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


def uns_tags(count: int) -> list[dict[str, Any]]:
    """Tags with long, UNS-like names (what topic aliases are for)."""
    return [
        {
            "name": f"hydraulics.pump{n}.discharge_pressure_bar",
            "address": f"holding:{n}",
            "report": "always",
        }
        for n in range(count)
    ]


async def test_per_tag_readings_arrive_whole_through_topic_aliases(
    tmp_path: Path, modbus_sim: ModbusSimulator, broker_factory: Any
) -> None:
    # The broker allows fewer aliases than there are tags: the rest are named every time. An
    # alias used before it was set, or set wrong, and mosquitto would drop the connection or
    # deliver on the wrong topic.
    broker = broker_factory(topic_aliases=6)
    recorder = Recorder(broker.port, f"{PREFIX}/#", persistent=False).start()
    try:
        config = gateway_config(
            tmp_path, broker.port, modbus_sim.port, tags=uns_tags(8), protocol=5
        )
        async with running(config) as gateway:
            await async_wait_until(lambda: recorder.complete_to(400, "press1"), 30, "readings")
            link = gateway.publisher._link
            assert link is not None
            assert link.limits.topic_alias_maximum == 6
            assert gateway.publisher.stats.connects == 1
    finally:
        recorder.stop()
    readings = recorder.readings("press1")
    assert {r["tag"] for r in readings} == {t["name"] for t in uns_tags(8)}
    for r in readings:  # the counter tag's value is its register: every tag read its own
        assert r["quality"] == "good"
        assert isinstance(r["value"], int)


async def test_a_refused_publish_is_counted_for_its_source_said_once_and_never_blocks(
    tmp_path: Path,
    modbus_sim: ModbusSimulator,
    broker_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The gateway may write its own topics and press1's, not secret's.
    acl = f"user edge\ntopic write {PREFIX}/_gateway/#\ntopic write {PREFIX}/press1/#\n"
    broker = broker_factory(acl=acl, users={"edge": "pw", "reader": "pw"})
    config = gateway_config(tmp_path, broker.port, modbus_sim.port, protocol=5)
    config["mqtt"].update(username="edge", password="pw")
    secret = {**config["sources"][0], "name": "secret"}
    config["sources"].append(secret)
    with caplog.at_level(logging.WARNING):
        async with running(config) as gateway:
            buffer, stats = gateway.buffer, gateway.publisher.stats

            # Every reading of secret is refused and counted, none left behind in the buffer:
            # at a moment between scans, the count is exactly what secret committed.
            def all_counted() -> bool:
                return stats.refused.get("secret", 0) == buffer.last_seq("secret") >= 30

            await async_wait_until(all_counted, 30, "secret's readings counted as refused")
            acked_press1 = stats.readings_acked
            await async_wait_until(lambda: stats.readings_acked > acked_press1 + 20, 15)
            assert "press1" not in stats.refused
            # Released, not kept: the buffer empties between scans.
            deadline = time.monotonic() + 15
            while (await buffer.backlog())[0]:
                assert time.monotonic() < deadline, "refused batches stay in the buffer"
                await asyncio.sleep(0.02)
    said = [r.getMessage() for r in caplog.records if "broker refused" in r.getMessage()]
    assert len(said) == 2, said  # one per topic of secret (2 tags), however many refusals
    assert all("Not authorized (0x87)" in line and "secret" in line for line in said)


@pytest.mark.parametrize(
    ("broker_options", "said"),
    [
        ({"users": {"edge": "right"}}, ("(0x86)", "(0x87)")),  # bad user name or password
        ({"retain_available": False}, ("Retain not supported (0x9A)",)),  # our will is retained
    ],
    ids=["bad password", "no retain"],
)
async def test_a_refused_connection_says_the_mqtt5_reason_code(
    tmp_path: Path,
    modbus_sim: ModbusSimulator,
    broker_factory: Any,
    broker_options: dict[str, Any],
    said: tuple[str, ...],
) -> None:
    broker = broker_factory(**broker_options)
    config = gateway_config(tmp_path, broker.port, modbus_sim.port, protocol=5)
    config["mqtt"].update(username="edge", password="wrong")
    async with running(config) as gateway:
        await async_wait_until(lambda: gateway.publisher.stats.last_error is not None, 15)
        error = gateway.publisher.stats.last_error or ""
    assert f"broker 127.0.0.1:{broker.port} refused the connection: " in error
    assert any(reason in error for reason in said), error


async def test_a_broker_that_disconnects_us_is_named_with_its_reason(
    tmp_path: Path, modbus_sim: ModbusSimulator, broker_factory: Any
) -> None:
    broker = broker_factory(max_packet_size=1000)  # a batch of 40 readings is more
    config = gateway_config(
        tmp_path, broker.port, modbus_sim.port, tags=uns_tags(40), protocol=5, layout="per_batch"
    )
    async with running(config) as gateway:
        stats = gateway.publisher.stats
        await async_wait_until(lambda: stats.last_error is not None, 15, "a disconnect")
        assert stats.connects >= 1
        assert stats.last_error == (
            "connection closed: the broker disconnected us: Packet too large (0x95)"
        )


async def link_to(
    broker: Broker,
    got: list[tuple[str, bytes]] | None = None,
    acked: list[int] | None = None,
    **mqtt: Any,
) -> MqttLink:
    """An MqttLink of its own (MQTT 5), noting what it receives and the acks."""
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}", protocol=5, **mqtt)

    def refused(refusal: Refusal) -> None:
        raise AssertionError(f"refused: {refusal}")

    link = MqttLink(
        cfg,
        "commands-edge",
        Will("t/_gateway/status", b"offline"),
        on_acks=(acked if acked is not None else []).extend,
        on_refused=refused,
        on_message=lambda topic, payload: (got if got is not None else []).append((topic, payload)),
    )
    await link.connect()
    return link


def body(n: int) -> bytes:
    return b'{"value":%d,"quality":"good","ts":1763762540123,"seq":%d}' % (n, n)


async def test_aliases_leave_each_topic_out_of_every_publish_after_its_first(
    broker_factory: Any,
) -> None:
    broker = broker_factory(topic_aliases=100)
    topics = [f"{PREFIX}/press1/hydraulics.pump{n}.discharge_pressure_bar" for n in range(10)]
    recorder = Recorder(broker.port, f"{PREFIX}/#", persistent=False).start()
    acked: list[int] = []
    link = await link_to(broker, acked=acked)
    try:
        for n in range(500):
            link.publish(topics[n % 10], body(n), qos=1, retain=False)
        await async_wait_until(lambda: len(acked) == 500, 15, "acks")
        await async_wait_until(lambda: len(recorder.snapshot()) == 500, 15, "deliveries")
    finally:
        await link.disconnect()
        recorder.stop()
    got = [(m.topic, m.body["seq"]) for m in recorder.snapshot()]
    assert got == [(topics[n % 10], n) for n in range(500)]
    # Each PUBLISH: header 2, empty name 2, message id 2, alias property 4, payload; and
    # each topic's name once.
    payloads = sum(len(body(n)) for n in range(500))
    assert link.bytes_published == 500 * 10 + payloads + sum(len(t) for t in topics)


async def test_no_more_than_the_brokers_receive_maximum_is_in_flight(
    broker_factory: Any,
) -> None:
    broker = broker_factory(receive_maximum=5)
    acked: list[int] = []
    link = await link_to(broker, acked=acked)
    try:
        assert link.limits.receive_maximum == 5
        mids = [link.publish(f"{PREFIX}/m", body(n), qos=1, retain=False) for n in range(200)]
        link.publish(f"{PREFIX}/metrics", b"{}", qos=0, retain=False)  # held behind them
        assert link.inflight == 5  # the rest wait for acks, in order
        await async_wait_until(lambda: len(acked) == 200, 15, "every message acknowledged")
        assert acked == mids
        assert link.inflight == 0
    finally:
        await link.disconnect()


def publish_once(port: int, topic: str, payload: bytes) -> None:
    """One QoS 1 message from another client, acknowledged before this returns."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="commander")
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


@pytest.mark.parametrize("kept", [True, False], ids=["session_expiry", "no session"])
async def test_a_kept_session_delivers_the_commands_sent_while_away(
    broker_factory: Any, kept: bool
) -> None:
    broker = broker_factory()
    options = {"session_expiry": "1h"} if kept else {}
    got: list[tuple[str, bytes]] = []
    link = await link_to(broker, got, **options)
    await link.subscribe([f"{PREFIX}/+/+/set"], qos=1)
    await link.disconnect()
    await asyncio.to_thread(publish_once, broker.port, f"{PREFIX}/press1/speed/set", b"away")
    link = await link_to(broker, got, **options)
    try:
        if not kept:  # nothing kept: subscribe again, and nothing from before comes
            await link.subscribe([f"{PREFIX}/+/+/set"], qos=1)
        await asyncio.to_thread(publish_once, broker.port, f"{PREFIX}/press1/speed/set", b"back")
        # Messages kept for a session come at once when it is resumed, before any new one.
        await async_wait_until(lambda: (f"{PREFIX}/press1/speed/set", b"back") in got, 15)
    finally:
        await link.disconnect()
    payloads = [payload for _, payload in got]
    assert payloads == ([b"away", b"back"] if kept else [b"back"])
