"""Publishes the buffer to MQTT and releases batches only once the broker acknowledged them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from buffer import Buffer, StoredBatch
from gateway import __version__
from gateway.backoff import backoff
from gateway.config import Config
from gateway.encode import JsonEncoder
from gateway.errors import BrokerError
from gateway.models import epoch_ms
from gateway.mqtt import MqttLink, Refusal
from gateway.replay import ReplayCursor
from gateway.window import InflightWindow

log = logging.getLogger(__name__)

SLICE = 500  # messages published between two yields to the event loop


@dataclass(slots=True)
class PublisherStats:
    """Counters of the publisher, for metrics."""

    state: str = "starting"  # starting | online | offline
    connects: int = 0
    messages_sent: int = 0
    messages_acked: int = 0
    readings_sent: int = 0
    readings_acked: int = 0
    replayed: int = 0
    current_sent: int = 0  # newest readings republished (retained) at connect
    refused: dict[str, int] = field(default_factory=dict)  # readings the broker refused, per source
    last_ack_ms: int = 0  # epoch ms of the last acknowledged message
    last_error: str | None = None


class Publisher:
    """Owns the broker connection: connect with backoff, pump the buffer, track acknowledgements."""

    def __init__(self, config: Config, buffer: Buffer) -> None:
        self.config = config
        self.mqtt = config.mqtt
        self.buffer = buffer
        self.stats = PublisherStats()
        self.status_topic = f"{self.mqtt.topic_prefix}/_gateway/status"
        self.metrics_topic = f"{self.mqtt.topic_prefix}/_gateway/metrics"
        # QoS 0 messages have no ack: a QoS 1 message after them acknowledges them all.
        self.fence_topic = f"{self.mqtt.topic_prefix}/_gateway/fence"
        self.encoder = JsonEncoder(self.mqtt.topic_prefix)
        self.window = InflightWindow(buffer, self.mqtt.max_inflight)
        self._link: MqttLink | None = None
        self._stopping = False
        self.online = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def _delays(self) -> Any:
        return backoff(base=self.mqtt.reconnect.min, cap=self.mqtt.reconnect.max, floor=True)

    async def run(self) -> None:
        """Connect, publish, reconnect with backoff; until cancelled."""
        delays = self._delays()
        while not self._stopping:
            try:
                await self._connect()
            except BrokerError as exc:
                self._went_offline(str(exc))
                await asyncio.sleep(next(delays))
                continue
            delays = self._delays()
            try:
                await self._pump()
            except BrokerError as exc:
                self._went_offline(str(exc))
            finally:
                await self._drop_link()

    async def stop(self, grace: float = 3.0) -> None:
        """Wait (bounded) for outstanding acks, publish the offline status and disconnect."""
        self._stopping = True
        link = self._link
        if link is None or link.closed.done():
            return
        await self.window.wait_empty(grace)
        try:
            self.window.track(
                link.publish(self.status_topic, self._status("offline"), qos=1, retain=True)
            )
            await self.window.wait_empty(1.0)
        except BrokerError:
            pass
        await link.disconnect()

    def publish_metrics(self, payload: bytes) -> None:
        """Send a metrics message if online (QoS 0, not retained, never buffered)."""
        link = self._link
        if link is not None and self.online.is_set():
            with contextlib.suppress(BrokerError):
                link.publish(self.metrics_topic, payload, qos=0, retain=False)

    # -- connection ----------------------------------------------------------------------------

    async def _connect(self) -> None:
        cfg = self.mqtt
        link = MqttLink(
            cfg,
            cfg.client_id or self.config.gateway.name,
            will=(self.status_topic, self._status("offline")),
            on_acks=self._acked,
            on_refused=self._refused,
        )
        self._link = link
        try:
            await link.connect(cfg.connect_timeout)
        except BaseException:
            await link.close()
            raise
        self.stats.connects += 1
        if self.stats.state == "offline":
            log.info("broker %s:%d: connection recovered", cfg.host, cfg.port)
        else:
            log.info("broker %s:%d: connected", cfg.host, cfg.port)
        self.stats.state = "online"
        self.stats.last_error = None
        self.online.set()
        self.window.track(
            link.publish(self.status_topic, self._status("online"), qos=1, retain=True)
        )

    def _went_offline(self, reason: str) -> None:
        if self.stats.state != "offline" or self.stats.last_error != reason:
            log.warning("broker offline: %s; buffering and retrying with backoff", reason)
        self.stats.state = "offline"
        self.stats.last_error = reason
        self.online.clear()

    async def _drop_link(self) -> None:
        self.online.clear()
        if self._link is not None:
            await self._link.close()
        self.window.clear()  # whatever was in flight is re-sent from the buffer next time

    def _status(self, state: str) -> bytes:
        body = {"state": state, "ts": epoch_ms(), "gateway": self.config.gateway.name}
        body["version"] = __version__
        return json.dumps(body, separators=(",", ":")).encode()

    # -- the pump ------------------------------------------------------------------------------

    async def _pump(self) -> None:
        """The newest value of every tag first (retained), then what the buffer holds: live rows
        at once, the backlog found at connect time behind them, historical and paced."""
        link = self._link
        assert link is not None
        # Taken together, with no await between: the current values are those of the rows
        # committed up to the boundary, so retained values never go back in time.
        replay = ReplayCursor(self.buffer.max_id, self.mqtt.replay.order, self.mqtt.replay.max_rate)
        current = [
            message
            for source in self.buffer.latest.sources()
            for message in self.encoder.current(source, self.buffer.latest.readings(source))
        ]
        if self.mqtt.layout == "per_tag" and self.mqtt.retain:
            await self._send_current(link, current)
        while True:
            if link.closed.done():
                raise BrokerError(f"connection closed: {link.closed.result()}")
            committed = self.buffer.stats.batches_added  # before reading: no commit is missed
            if self.window.has_room():
                taken = await replay.next(self.buffer, self.window.room())
                sent = 0
                for batch in taken:
                    if not self.window.has_room() or not replay.may_send(batch):
                        break
                    await self._send(link, batch, replay.historical(batch))
                    replay.sent(batch)
                    sent += 1
                self.buffer.let_go(b.id for b in taken[sent:])  # taken, not sent: still buffered
                if sent:
                    await asyncio.sleep(0)  # acks and scans run between bursts
                    continue
            await self._wait_for_work(link, replay.paused() or 1.0, committed)

    async def _send_current(self, link: MqttLink, messages: list[tuple[str, bytes]]) -> None:
        """Publish the newest readings retained, within the window (a 10,000-tag map is more
        than the window holds)."""
        for n, (topic, payload) in enumerate(messages, 1):
            while not self.window.has_room():
                await self._wait_for_work(link, 1.0, None)
                if link.closed.done():
                    raise BrokerError(f"connection closed: {link.closed.result()}")
            self.window.track(link.publish(topic, payload, qos=1, retain=True))
            if n % SLICE == 0:
                await asyncio.sleep(0)
        self.stats.current_sent += len(messages)
        self.stats.messages_sent += len(messages)

    async def _wait_for_work(self, link: MqttLink, timeout: float, committed: int | None) -> None:
        self.window.opened.clear()
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self.window.opened.wait())]
        if committed is not None:
            waits.append(asyncio.ensure_future(self.buffer.wait_committed(committed)))
        try:
            await asyncio.wait(
                [*waits, link.closed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                w.cancel()

    async def _send(self, link: MqttLink, batch: StoredBatch, historical: bool) -> None:
        cfg = self.mqtt
        if cfg.layout == "per_batch":
            messages = [self.encoder.per_batch(batch, historical)]
            retain = False  # a batch is history, not a live value
        else:
            messages = self.encoder.per_tag(batch, historical)
            retain = cfg.retain and not historical
        if cfg.qos == 1:
            self.window.expect(batch.id, batch.count, len(messages), batch.source)
        track = self.window.track if cfg.qos == 1 else None
        for n, (topic, payload) in enumerate(messages, 1):
            mid = link.publish(topic, payload, qos=cfg.qos, retain=retain)
            if track is not None:
                track(mid, batch.id)
            if n % SLICE == 0:
                await asyncio.sleep(0)  # a 10,000-tag batch must not hold the scans up
        if cfg.qos == 0:
            # No ack per message: the batch is released by the ack of a later QoS 1 fence.
            self.window.sent_unacked(batch.id, batch.count)
            self.window.fence(link.publish(self.fence_topic, b"", qos=1, retain=False))
        self.stats.messages_sent += len(messages)
        self.stats.readings_sent += batch.count
        if historical:
            self.stats.replayed += batch.count

    def _acked(self, mids: list[int]) -> None:
        self.window.acked(mids)
        self.stats.messages_acked = self.window.acked_messages
        self.stats.readings_acked = self.window.acked_readings
        self.stats.last_ack_ms = int(time.time() * 1000)

    def _refused(self, refusal: Refusal) -> None:
        self.window.refused(refusal)
        self.stats.refused = self.window.refused_readings
