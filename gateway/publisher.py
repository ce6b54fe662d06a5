"""Publishes the buffer to MQTT and releases batches only once the broker acknowledged them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from buffer import Buffer
from gateway.backoff import backoff
from gateway.config import Config
from gateway.errors import BrokerError
from gateway.mqtt import MqttLink, Refusal
from gateway.replay import ReplayCursor
from gateway.session import Session
from gateway.window import InflightWindow

log = logging.getLogger(__name__)

PROBE_EVERY = 5.0  # seconds between two looks at the first node (prefer_first)
PROBE_TIMEOUT = 1.0


class BackToFirst(BrokerError):
    """The first node of the list is back: the gateway leaves the one it is on (prefer_first)."""


@dataclass(slots=True)
class PublisherStats:
    """Counters of the publisher, for metrics."""

    state: str = (
        "starting"  # starting | waiting (connected, the session not open) | online | offline
    )
    connects: int = 0
    messages_sent: int = 0
    messages_acked: int = 0
    readings_sent: int = 0
    readings_acked: int = 0
    replayed: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # readings the broker refused, per source
    last_ack_ms: int = 0  # epoch ms of the last acknowledged message
    last_error: str | None = None
    node: str = ""  # the broker node in use (its url)
    moves: int = 0  # times the gateway moved to another node of its broker list


class Publisher:
    """Owns the broker connection: connect with backoff, pump the buffer, track acknowledgements.

    What is said on the connection is the session's (JSON or Sparkplug B).
    """

    def __init__(self, config: Config, buffer: Buffer, session: Session) -> None:
        self.config = config
        self.mqtt = config.mqtt
        self.buffer = buffer
        self.session = session
        self.stats = PublisherStats()
        self.metrics_topic = f"{self.mqtt.topic_prefix}/_gateway/metrics"
        self.window = InflightWindow(buffer, self.mqtt.max_inflight)
        self._link: MqttLink | None = None
        self._stopping = False
        self.online = asyncio.Event()
        self.nodes = self.mqtt.nodes
        self._node = 0  # index of the node in use (or to try next)
        self._probed = 0.0  # monotonic time the first node was last probed (prefer_first)

    # -- lifecycle ---------------------------------------------------------------------------

    def _delays(self) -> Any:
        return backoff(base=self.mqtt.reconnect.min, cap=self.mqtt.reconnect.max, floor=True)

    async def run(self) -> None:
        """Connect, publish, reconnect; until cancelled.

        With a list of broker nodes, a node that cannot be reached or dies is left for the
        next one at once; the backoff waits only once every node of the list has failed.
        """
        delays = self._delays()
        failed = 0  # nodes tried in a row without a connection
        while not self._stopping:
            try:
                await self._connect()
            except BrokerError as exc:
                self._went_offline(str(exc))
                failed += 1
                if failed < len(self.nodes):
                    self._move(f"{exc}")
                    continue
                failed = 0
                await asyncio.sleep(next(delays))
                self._node = 0  # every node failed: a new round starts with the first
                continue
            delays = self._delays()
            failed = 0
            try:
                await self._pump()
            except BackToFirst as exc:
                self._move(str(exc), to=0)  # a planned move, not an outage
            except BrokerError as exc:
                self._went_offline(str(exc))
                self._move(str(exc))
            finally:
                await self._drop_link()

    def _move(self, why: str, to: int | None = None) -> None:
        """Take the next node of the list (or ``to``), when there is more than one."""
        if len(self.nodes) < 2:
            return
        before = self._node
        self._node = (before + 1) % len(self.nodes) if to is None else to
        if self._node != before:
            self.stats.moves += 1
            log.warning(
                "broker %s: %s; moving to %s (%d move(s) so far)",
                self.nodes[before],
                why,
                self.nodes[self._node],
                self.stats.moves,
            )

    async def stop(self, grace: float = 3.0) -> None:
        """Wait (bounded) for outstanding acks, say goodbye and disconnect."""
        self._stopping = True
        link = self._link
        if link is None or link.closed.done():
            return
        await self.window.wait_empty(grace)
        with contextlib.suppress(BrokerError):
            await self.session.end(link, self.window)
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
        node = self.nodes[self._node]
        link = MqttLink(
            cfg,
            cfg.client_id or self.config.gateway.name,
            will=self.session.will(),
            on_acks=self._acked,
            on_refused=self._refused,
            on_message=self.session.received,
            node=node,
        )
        self._link = link
        try:
            await link.connect(cfg.connect_timeout)
            # One SUBSCRIBE per filter: some brokers (aedes) answer a SUBSCRIBE of several
            # filters with no SUBACK at all.
            for topic, qos in self.session.subscriptions():
                await link.subscribe([topic], qos, cfg.connect_timeout)
        except BaseException:
            await link.close()
            raise
        self.stats.connects += 1
        self.stats.node = node.url
        if self.stats.state == "offline":
            log.info("broker %s: connection recovered", node)
        elif self.stats.state == "starting":
            log.info("broker %s: connected", node)
        self.stats.state = "waiting"  # online once the session has opened (births, host)
        self.stats.last_error = None

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

    # -- the pump ------------------------------------------------------------------------------

    async def _pump(self) -> None:
        """The session's opening (current values, births), then what the buffer holds: live rows
        at once, the backlog found at connect time behind them, historical and paced."""
        link = self._link
        assert link is not None
        # Once the session may open (a primary host online), everything committed so far is
        # the backlog; what the opening says (the newest values) is of those rows, never newer
        # than what follows.
        await self.session.ready(link)
        replay = ReplayCursor(self.buffer.max_id, self.mqtt.replay.order, self.mqtt.replay.max_rate)
        await self.session.begin(link, self.window)
        self.stats.state = "online"
        self.online.set()
        while True:
            if link.closed.done():
                raise BrokerError(f"connection closed: {link.closed.result()}")
            await self.session.check(link, self.window)
            if self.mqtt.prefer_first and self._node and await self._first_is_back():
                with contextlib.suppress(BrokerError):
                    await self.session.end(link, self.window)  # a planned move: say goodbye
                await link.disconnect()
                raise BackToFirst(f"the first node {self.nodes[0]} accepts connections again")
            committed = self.buffer.stats.batches_added  # before reading: no commit is missed
            if self.window.has_room():
                taken = await replay.next(self.buffer, self.window.room())
                sent = 0
                for batch in taken:
                    if not self.window.has_room() or not replay.may_send(batch):
                        break
                    historical = replay.historical(batch)
                    self.stats.messages_sent += await self.session.send(
                        link, self.window, batch, historical
                    )
                    self.stats.readings_sent += batch.count
                    if historical:
                        self.stats.replayed += batch.count
                    replay.sent(batch)
                    sent += 1
                self.buffer.let_go(b.id for b in taken[sent:])  # taken, not sent: still buffered
                if sent:
                    await asyncio.sleep(0)  # acks and scans run between bursts
                    continue
            await self._wait_for_work(link, replay.paused() or 1.0, committed)

    async def _first_is_back(self) -> bool:
        """Whether the first node accepts TCP connections (asked every PROBE_EVERY seconds)."""
        now = time.monotonic()
        if now - self._probed < PROBE_EVERY:
            return False
        self._probed = now
        first = self.nodes[0]
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(first.host, first.port), PROBE_TIMEOUT
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _wait_for_work(self, link: MqttLink, timeout: float, committed: int) -> None:
        self.window.opened.clear()
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.window.opened.wait()),
            asyncio.ensure_future(self.buffer.wait_committed(committed)),
            asyncio.ensure_future(self.session.attention.wait()),
        ]
        try:
            await asyncio.wait(
                [*waits, link.closed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                w.cancel()

    def _acked(self, mids: list[int]) -> None:
        self.window.acked(mids)
        self.stats.messages_acked = self.window.acked_messages
        self.stats.readings_acked = self.window.acked_readings
        self.stats.last_ack_ms = int(time.time() * 1000)

    def _refused(self, refusal: Refusal) -> None:
        self.window.refused(refusal)
        self.stats.refused = self.window.refused_readings
