"""Bytes on the wire per per_tag reading: paho's own publish (the link before issue #16), the
link in MQTT 3.1.1, and the link in MQTT 5 with topic aliases.

Each publisher sends the same per_tag messages (``JsonEncoder.per_tag`` of scans of a tag map
with long, UNS-like names) at QoS 1 to a fresh mosquitto that allows 65,535 topic aliases,
through a TCP proxy here that counts the bytes each way. Upstream is every PUBLISH (and
CONNECT, PINGREQ...) divided by the readings; downstream the PUBACKs and CONNACK.

Run: ``.venv/bin/python -m bench.wire [--tags 1000] [--scans 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import free_port, serving, table
from buffer.rows import decode, encode
from gateway.config import MqttConfig
from gateway.encode import JsonEncoder
from gateway.models import Batch, Quality, Reading
from gateway.mqtt import MqttLink, Will
from simulators.broker import find_mosquitto

PREFIX = "acme/plant1/area2/line1"


def messages(tags: int, scans: int) -> list[tuple[str, bytes]]:
    """Every per_tag message of ``scans`` scans of ``tags`` float tags of one source."""
    encoder, out, seq = JsonEncoder(PREFIX), [], 0
    names = [f"hydraulics.unit{n:04d}.discharge_pressure_bar" for n in range(tags)]
    for scan in range(scans):
        ts = 1_763_762_540_123 + 100 * scan
        readings = []
        for n, name in enumerate(names):
            seq += 1
            readings.append(Reading(name, 100.0 + n / 7 + scan / 3, Quality.GOOD, ts, seq))
        out += encoder.per_tag(decode(scan + 1, encode(Batch("press1", ts, readings))), False)
    return out


@contextmanager
def broker(work: Path) -> Iterator[int]:
    """A mosquitto that allows 65,535 topic aliases and announces no Receive Maximum."""
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
        "max_topic_alias 65535\nmax_inflight_messages 0\n"
    )
    with serving([find_mosquitto(), "-c", str(conf)], port):
        yield port


class Proxy:
    """Forwards TCP to the broker and counts the bytes each way."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.up = 0
        self.down = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        to_reader, to_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
        await asyncio.gather(
            self._pipe(reader, to_writer, True), self._pipe(to_reader, writer, False)
        )

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
        while data := await src.read(1 << 16):
            if up:
                self.up += len(data)
            else:
                self.down += len(data)
            dst.write(data)
            await dst.drain()
        dst.close()


def through_paho(port: int, sent: list[tuple[str, bytes]]) -> None:
    """paho's own publish, as the link used it before issue #16 (MQTT 3.1.1)."""
    done = threading.Event()
    acked = 0

    def on_publish(c: paho.Client, u: object, mid: int, rc: object, p: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(sent):
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="paho", protocol=paho.MQTTv311)
    client.max_inflight_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, payload in sent:
        client.publish(topic, payload, qos=1)
    if not done.wait(120):
        raise SystemExit("paho: not every message was acknowledged")
    client.disconnect()
    client.loop_stop()


async def through_link(port: int, protocol: str | int, sent: list[tuple[str, bytes]]) -> None:
    """The link, 1,000 messages in flight at most (mqtt.max_inflight's default)."""
    acked: list[int] = []
    room = asyncio.Event()

    def on_acks(mids: list[int]) -> None:
        acked.extend(mids)
        room.set()

    cfg = MqttConfig.model_validate({"url": f"mqtt://127.0.0.1:{port}", "protocol": protocol})
    link = MqttLink(
        cfg, f"link{protocol}", Will(f"{PREFIX}/_gateway/status", b"offline"), on_acks, print
    )
    await link.connect()
    for n, (topic, payload) in enumerate(sent):
        while n - len(acked) >= 1000:
            room.clear()
            await room.wait()
        link.publish(topic, payload, qos=1, retain=False)
    while len(acked) < len(sent):
        room.clear()
        await room.wait()
    await link.disconnect()


async def measure(work: Path, tags: int, scans: int) -> list[tuple[str, ...]]:
    sent = messages(tags, scans)
    rows: list[tuple[str, ...]] = [("publisher", "up bytes/reading", "down bytes/reading")]
    for name, protocol in (
        ("paho publish, 3.1.1 (before)", None),
        ("link, 3.1.1", "3.1.1"),
        ("link, MQTT 5 + aliases", 5),
    ):
        with broker(work) as port:
            proxy = Proxy(port)
            proxy_port = await proxy.start()
            if protocol is None:
                await asyncio.to_thread(through_paho, proxy_port, sent)
            else:
                await through_link(proxy_port, protocol, sent)
            proxy.server.close()
        rows.append((name, f"{proxy.up / len(sent):.1f}", f"{proxy.down / len(sent):.1f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--scans", type=int, default=20)
    args = parser.parse_args()
    sample_topic, sample_payload = messages(1, 1)[0]
    with tempfile.TemporaryDirectory(prefix="plantgate-wire-") as tmp:
        rows = asyncio.run(measure(Path(tmp), args.tags, args.scans))
    print(
        table(
            f"{args.tags:,} tags x {args.scans} scans per_tag, QoS 1; topics like {sample_topic} "
            f"({len(sample_topic)} bytes), payloads like {len(sample_payload)} bytes",
            rows,
        )
    )


if __name__ == "__main__":
    main()
