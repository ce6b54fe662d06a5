"""Publishes the buffer to MQTT and releases batches only once the broker acknowledged them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from buffer import Buffer, StoredBatch
from gateway import __version__
from gateway.backoff import backoff
from gateway.config import Config
from gateway.encode import per_batch, per_tag
from gateway.errors import BrokerError
from gateway.models import epoch_ms
from gateway.mqtt import MqttLink

log = logging.getLogger(__name__)

# Readings in flight at most (besides mqtt.max_inflight messages): bounds the memory paho holds
# for unacknowledged messages while leaving room for ~100,000 readings/s at tens of ms RTT.
MAX_INFLIGHT_READINGS = 50_000
SLICE = 500  # per_tag messages published between two yields to the event loop


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
    last_error: str | None = None


class Pacer:
    """A token bucket in readings per second, so a replayed backlog never floods the broker."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp = time.monotonic()

    def allowance(self, budget: int) -> int:
        """Readings worth reading from the buffer now: what the bucket holds (at least 1)."""
        self._refill()
        return max(1, min(budget, int(self.tokens)))

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, readings: int) -> float:
        """Seconds to wait before ``readings`` may go (0 when they may go now, and are spent)."""
        self._refill()
        # A batch larger than a second's worth goes when the bucket is full.
        need = min(readings, self.rate)
        if self.tokens >= need:
            self.tokens -= readings
            return 0.0
        return (need - self.tokens) / self.rate


class Publisher:
    """Owns the broker connection: connect with backoff, pump the buffer, track acknowledgements."""

    def __init__(self, config: Config, buffer: Buffer) -> None:
        self.config = config
        self.mqtt = config.mqtt
        self.buffer = buffer
        self.stats = PublisherStats()
        self.status_topic = f"{self.mqtt.topic_prefix}/_gateway/status"
        self.metrics_topic = f"{self.mqtt.topic_prefix}/_gateway/metrics"
        self._link: MqttLink | None = None
        self._inflight: dict[int, int] = {}  # message id -> batch id
        self._remaining: dict[int, tuple[int, int]] = {}  # batch id -> (messages unacked, readings)
        self._inflight_readings = 0
        self._window_open = asyncio.Event()
        self._stopping = False
        self.online = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, publish, reconnect with backoff; until cancelled."""
        delays = backoff(base=0.5, cap=30.0)
        while not self._stopping:
            try:
                await self._connect()
            except BrokerError as exc:
                self._went_offline(str(exc))
                await asyncio.sleep(next(delays))
                continue
            delays = backoff(base=0.5, cap=30.0)
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
        deadline = time.monotonic() + grace
        while self._inflight and time.monotonic() < deadline and not link.closed.done():
            self._window_open.clear()
            try:
                await asyncio.wait_for(
                    self._window_open.wait(), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                break
        try:
            mid = link.publish(self.status_topic, self._status("offline"), qos=1, retain=True)
            self._inflight[mid] = -1
            self._window_open.clear()
            await asyncio.wait_for(self._window_open.wait(), 1.0)
        except (BrokerError, TimeoutError):
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
            on_ack=self._acked,
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
        link.publish(self.status_topic, self._status("online"), qos=1, retain=True)

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
        # Whatever was in flight is re-sent from the buffer on the next connection.
        self._inflight.clear()
        self._remaining.clear()
        self._inflight_readings = 0

    def _status(self, state: str) -> bytes:
        body = {"state": state, "ts": epoch_ms(), "gateway": self.config.gateway.name}
        body["version"] = __version__
        return json.dumps(body, separators=(",", ":")).encode()

    # -- the pump ------------------------------------------------------------------------------

    async def _pump(self) -> None:
        """Send what the buffer holds; the backlog found at connect time is historical and paced.

        live_first: new rows go out at once on one cursor while a second cursor drains the
        backlog behind them. in_order: one cursor, oldest first.
        """
        link = self._link
        assert link is not None
        boundary = await self.buffer.max_id()  # rows committed before this connection
        live_first = self.mqtt.replay.order == "live_first"
        live = boundary if live_first else 0
        backlog = 0 if live_first else boundary
        pacer = Pacer(self.mqtt.replay.max_rate)
        paced_until = 0.0  # the pacer said wait: no backlog is even read before then
        while True:
            if link.closed.done():
                raise BrokerError(f"connection closed: {link.closed.result()}")
            committed = self.buffer.stats.batches_added  # before reading: no commit is missed
            last, wait = None, 0.0
            if self._window_open_for_more():
                budget = MAX_INFLIGHT_READINGS - self._inflight_readings
                draining = live < boundary  # in_order, still in the backlog
                pace_ok = time.monotonic() >= paced_until
                if pace_ok or not draining:
                    # Read only what may go now: re-reading a large backlog on every wake of a
                    # slow pacer would starve the scans.
                    take = pacer.allowance(budget) if draining else budget
                    last, wait = await self._send_all(
                        link, await self.buffer.take(live, take), boundary, pacer
                    )
                    live = last or live
                if last is None and not wait and backlog < boundary and pace_ok:
                    older = await self.buffer.take(backlog, pacer.allowance(budget), up_to=boundary)
                    last, wait = await self._send_all(link, older, boundary, pacer)
                    backlog = boundary if not older else (last or backlog)
                if wait:
                    paced_until = time.monotonic() + wait
                if last is not None:
                    await asyncio.sleep(0)  # acks and scans run between bursts
                    continue
            until_paced = paced_until - time.monotonic()
            await self._wait_for_work(link, until_paced if until_paced > 0 else 1.0, committed)

    async def _send_all(
        self, link: MqttLink, batches: list[StoredBatch], boundary: int, pacer: Pacer
    ) -> tuple[int | None, float]:
        """Send batches in order while the window has room; backlog ones (id <= boundary) paced.

        Returns the last batch id sent (None if none) and how long the pacer asks to wait
        (0 when it did not stop the sending).
        """
        last = None
        for batch in batches:
            if not self._window_open_for_more():
                break
            historical = batch.id <= boundary
            if historical and (wait := pacer.wait_for(batch.count)) > 0:
                return last, wait
            await self._send(link, batch, historical)
            last = batch.id
        return last, 0.0

    async def _wait_for_work(self, link: MqttLink, timeout: float, committed: int) -> None:
        self._window_open.clear()
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.buffer.wait_committed(committed)),
            asyncio.ensure_future(self._window_open.wait()),
        ]
        try:
            await asyncio.wait(
                [*waits, link.closed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                w.cancel()

    def _window_open_for_more(self) -> bool:
        return (
            len(self._inflight) < self.mqtt.max_inflight
            and self._inflight_readings < MAX_INFLIGHT_READINGS
        )

    async def _send(self, link: MqttLink, batch: StoredBatch, historical: bool) -> None:
        cfg = self.mqtt
        retain = cfg.retain and not historical
        if cfg.layout == "per_batch":
            topic, payload = per_batch(
                cfg.topic_prefix, batch.source, batch.ts, batch.payload, historical
            )
            messages = [(topic, payload)]
            retain = False  # a batch is history, not a live value
        else:
            messages = list(per_tag(cfg.topic_prefix, batch.source, batch.payload, historical))
        self._remaining[batch.id] = (len(messages), batch.count)
        self._inflight_readings += batch.count
        for n, (topic, payload) in enumerate(messages, 1):
            mid = link.publish(topic, payload, qos=cfg.qos, retain=retain)
            self._inflight[mid] = batch.id
            if n % SLICE == 0:
                await asyncio.sleep(0)  # a 10,000-tag batch must not hold the scans up
        self.stats.messages_sent += len(messages)
        self.stats.readings_sent += batch.count
        if historical:
            self.stats.replayed += batch.count

    def _acked(self, mid: int) -> None:
        batch_id = self._inflight.pop(mid, None)
        if batch_id is None:
            return  # status message or a stale id
        self.stats.messages_acked += 1
        if batch_id < 0:
            self._window_open.set()
            return
        left, readings = self._remaining[batch_id]
        if left > 1:
            self._remaining[batch_id] = (left - 1, readings)
        else:
            del self._remaining[batch_id]
            self._inflight_readings -= readings
            self.stats.readings_acked += readings
            self.buffer.release(batch_id)
        # Wake the pump at half the window, so a full window is refilled in bursts, not per ack.
        if (
            len(self._inflight) <= self.mqtt.max_inflight // 2
            and self._inflight_readings <= MAX_INFLIGHT_READINGS // 2
        ):
            self._window_open.set()
