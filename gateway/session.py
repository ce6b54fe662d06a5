"""How an output format speaks over one broker connection: JSON here, Sparkplug B beside it.

The publisher owns the connection, the replay of the buffer and the in-flight window; a
session owns what is said on the connection: the will, what is published when it opens, how
a buffered batch becomes messages, what is said when the gateway stops.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from buffer import Buffer, StoredBatch
from gateway import __version__
from gateway.commands import WriteDesk
from gateway.config import Config
from gateway.encode import JsonEncoder
from gateway.errors import BrokerError
from gateway.models import epoch_ms
from gateway.mqtt import MqttLink, Will
from gateway.window import InflightWindow

SLICE = 500  # messages published between two yields to the event loop


class Session(Protocol):
    """One output format's conversation with the broker."""

    @property
    def attention(self) -> asyncio.Event:
        """Set when the session has something to say between batches (the pump wakes)."""

    def will(self) -> Will:
        """The will of the next connection (asked once per connection, before it opens)."""

    def subscriptions(self) -> list[tuple[str, int]]:
        """Topic filters to subscribe to on every connection (commands, host state)."""

    def received(self, topic: str, payload: bytes) -> None:
        """A message on one of the subscriptions (called on the event loop)."""

    async def ready(self, link: MqttLink) -> None:
        """Wait until the session may open (e.g. its primary host is online)."""

    def reconfigure(self, config: Config, born: list[str], gone: list[str]) -> None:
        """A reloaded tag map with the same broker settings: sources changed or added
        (``born``) and removed (``gone``)."""

    async def begin(self, link: MqttLink, window: InflightWindow) -> None:
        """The connection is open: say so (status, current values, births)."""

    async def check(self, link: MqttLink, window: InflightWindow) -> None:
        """Between sends: act on what was received; raise BrokerError to end the connection."""

    async def send(
        self, link: MqttLink, window: InflightWindow, batch: StoredBatch, historical: bool
    ) -> int:
        """Publish one buffered batch; returns the messages sent."""

    async def end(self, link: MqttLink, window: InflightWindow) -> None:
        """The gateway stops: say goodbye before the clean DISCONNECT (which sends no will)."""


async def publish_tracked(
    link: MqttLink,
    window: InflightWindow,
    messages: list[tuple[str, bytes]],
    retain: bool,
    batch: StoredBatch | None = None,
) -> None:
    """Publish QoS 1 messages within the window, each tracked (for ``batch``, if given).

    Waits for room when the window is full (a 10,000-tag map is more than it holds) and
    yields to the event loop every SLICE messages, so scans are never held up.
    """
    if batch is not None:
        window.expect(batch.id, batch.count, len(messages), batch.source)
    for n, (topic, payload) in enumerate(messages, 1):
        if batch is None:
            while not window.has_room():
                await wait_for_room(link, window)
        window.track(
            link.publish(topic, payload, qos=1, retain=retain), None if batch is None else batch.id
        )
        if n % SLICE == 0:
            await asyncio.sleep(0)


async def publish_fenced(
    link: MqttLink,
    window: InflightWindow,
    messages: list[tuple[str, bytes]],
    fence_topic: str,
    batch: StoredBatch,
    retain: bool = False,
) -> None:
    """Publish QoS 0 messages of a batch, then a QoS 1 fence whose ack releases the batch."""
    for n, (topic, payload) in enumerate(messages, 1):
        link.publish(topic, payload, qos=0, retain=retain)
        if n % SLICE == 0:
            await asyncio.sleep(0)
    window.sent_unacked(batch.id, batch.count)
    window.fence(link.publish(fence_topic, b"", qos=1, retain=False))


async def wait_for_room(link: MqttLink, window: InflightWindow) -> None:
    """Wait (up to a second) for an ack to free room, or for the connection to close."""
    window.opened.clear()
    opened: asyncio.Future[Any] = asyncio.ensure_future(window.opened.wait())
    try:
        await asyncio.wait([opened, link.closed], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
    finally:
        opened.cancel()
    if link.closed.done():
        raise BrokerError(f"connection closed: {link.closed.result()}")


class JsonSession:
    """The JSON contract: a retained status with an offline will, the current value of every
    tag retained at connect (per_tag), then per_tag or per_batch messages."""

    def __init__(self, config: Config, buffer: Buffer, desk: WriteDesk | None = None) -> None:
        self.config = config
        self.mqtt = config.mqtt
        self.buffer = buffer
        self.desk = desk
        prefix = self.mqtt.topic_prefix
        self.prefix = prefix
        self._attention = desk.ready if desk is not None else asyncio.Event()
        self.status_topic = f"{prefix}/_gateway/status"
        # QoS 0 messages have no ack: a QoS 1 message after them acknowledges them all.
        self.fence_topic = f"{prefix}/_gateway/fence"
        self.encoder = JsonEncoder(prefix)
        self.current_sent = 0  # newest readings republished (retained) at connect

    def status(self, state: str) -> bytes:
        """The status message's payload."""
        body = {"state": state, "ts": epoch_ms(), "gateway": self.config.gateway.name}
        body["version"] = __version__
        return json.dumps(body, separators=(",", ":")).encode()

    def will(self) -> Will:
        """Offline status, retained: a crash shows too."""
        return Will(self.status_topic, self.status("offline"), qos=1, retain=True)

    @property
    def attention(self) -> asyncio.Event:
        """Results of write commands wait to be published."""
        return self._attention

    def subscriptions(self) -> list[tuple[str, int]]:
        """Write commands: ``{prefix}/{source}/{tag}/set`` (answered even when writes are off)."""
        return [] if self.desk is None else [(f"{self.prefix}/+/+/set", 1)]

    def received(self, topic: str, payload: bytes) -> None:
        """A write command, for the write desk."""
        head, tail = f"{self.prefix}/", "/set"
        if self.desk is None or not topic.startswith(head) or not topic.endswith(tail):
            return
        source, _, tag = topic[len(head) : -len(tail)].partition("/")
        if source and tag and "/" not in tag:
            self.desk.submit(source, tag, payload)

    async def ready(self, link: MqttLink) -> None:
        """At once."""

    def reconfigure(self, config: Config, born: list[str], gone: list[str]) -> None:
        """Nothing to say about sources: their readings say it."""
        self.config = config

    async def begin(self, link: MqttLink, window: InflightWindow) -> None:
        """Online status, then the newest reading of every tag, retained (per_tag)."""
        window.track(link.publish(self.status_topic, self.status("online"), qos=1, retain=True))
        if self.desk is not None:
            self.desk.connection_lost()  # results in flight on the last connection: again
        if self.mqtt.layout != "per_tag" or not self.mqtt.retain:
            return
        # Taken before any await: the current values are those of the rows committed up to
        # the replay's boundary, so retained values never go back in time.
        latest = self.buffer.latest
        current = [
            message
            for source in latest.sources()
            for message in self.encoder.current(source, latest.readings(source))
        ]
        await publish_tracked(link, window, current, retain=True)
        self.current_sent += len(current)

    async def check(self, link: MqttLink, window: InflightWindow) -> None:
        """Publish the results of write commands, committed and not yet acknowledged."""
        if self.desk is not None and self.desk.ready.is_set():
            await self.desk.publish(link, window, self.prefix, results=True)

    async def send(
        self, link: MqttLink, window: InflightWindow, batch: StoredBatch, historical: bool
    ) -> int:
        """per_tag or per_batch messages at the configured QoS."""
        cfg = self.mqtt
        if cfg.layout == "per_batch":
            messages = [self.encoder.per_batch(batch, historical)]
            retain = False  # a batch is history, not a live value
        else:
            messages = self.encoder.per_tag(batch, historical)
            retain = cfg.retain and not historical
        if cfg.qos == 1:
            await publish_tracked(link, window, messages, retain, batch)
        else:
            await publish_fenced(link, window, messages, self.fence_topic, batch, retain)
        return len(messages)

    async def end(self, link: MqttLink, window: InflightWindow) -> None:
        """Offline status, retained, acknowledged (bounded)."""
        window.track(link.publish(self.status_topic, self.status("offline"), qos=1, retain=True))
        await window.wait_empty(1.0)
