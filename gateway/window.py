"""The in-flight window: what was sent and not yet acknowledged, and the release on ack.

A buffered batch may become many messages (per_tag) or one (per_batch). It is released to the
buffer (deleted) only when the broker has acknowledged every message built from it. Messages
sent at QoS 0 (Sparkplug data) have no acknowledgement of their own: their batches wait for a
*fence*, a later QoS 1 message on the same connection; the broker reads a connection in order,
so its PUBACK of the fence means it has read everything sent before.

An MQTT 5 broker may answer a message with a refusal (a reason code from 0x80, e.g. 0x87 not
authorized): the message counts as answered, and its readings are counted as refused, per
source, and said once per topic; never released in silence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from gateway.mqtt import Refusal

log = logging.getLogger(__name__)

# Readings in flight at most (besides the message bound): bounds the memory paho holds for
# unacknowledged messages while leaving room for ~100,000 readings/s at tens of ms RTT.
MAX_INFLIGHT_READINGS = 50_000
MAX_LOGGED_TOPICS = 10_000  # topics whose refusal was said; forgotten (and said again) beyond


class Holder(Protocol):
    """The buffer, as the window sees it: batches held while in flight, released on ack."""

    def hold(self, batch_id: int) -> None:
        """A batch is being published."""

    def release(self, batch_id: int) -> None:
        """A batch was acknowledged."""

    def let_go(self, batch_ids: Iterable[int]) -> None:
        """Batches no longer in flight, not acknowledged."""


class _Batch:
    """A batch in flight: messages not yet answered, its readings, those the broker refused."""

    __slots__ = ("left", "per_message", "readings", "refused", "source")

    def __init__(self, messages: int, readings: int, source: str) -> None:
        self.left = messages
        self.readings = readings
        # per_tag: one reading a message; per_batch: all of them in one
        self.per_message = readings // messages if messages else 0
        self.refused = 0
        self.source = source


_UNKNOWN = -1  # no batch id is negative: a message id not in flight (from before a reconnect)


class InflightWindow:
    """Message ids in flight, each batch's messages still unacknowledged, readings in flight."""

    def __init__(
        self,
        buffer: Holder,
        max_messages: int,
        max_readings: int = MAX_INFLIGHT_READINGS,
    ) -> None:
        self._buffer = buffer
        self.max_messages = max_messages
        self.max_readings = max_readings
        self._batch_of: dict[int, int | None] = {}  # message id -> batch id (None: no batch)
        self._batches: dict[int, _Batch] = {}  # batch id -> what is left of it
        self._unfenced: list[tuple[int, int]] = []  # (batch id, readings) sent at QoS 0
        self._fences: dict[int, list[tuple[int, int]]] = {}  # fence message id -> its batches
        self._then: dict[int, Callable[[], None]] = {}  # message id -> called on its answer
        self.readings = 0  # readings in flight
        self.acked_readings = 0  # readings whose batches were released, since the start
        self.acked_messages = 0
        self.refused_readings: dict[str, int] = {}  # the broker refused them, per source
        self._refused_topics: set[str] = set()  # topics whose refusal was logged (bounded)
        self.opened = asyncio.Event()  # set when an ack frees room

    @property
    def messages(self) -> int:
        """Messages in flight."""
        return len(self._batch_of)

    def has_room(self) -> bool:
        """True while more may be sent."""
        return len(self._batch_of) < self.max_messages and self.readings < self.max_readings

    def room(self) -> int:
        """Readings that may still be sent now."""
        return max(0, self.max_readings - self.readings)

    def expect(self, batch_id: int, readings: int, messages: int, source: str = "") -> None:
        """A batch of ``source`` is about to go out as ``messages`` QoS 1 messages (tracked as
        they go: an ack may arrive before the last of them is published)."""
        self._batches[batch_id] = _Batch(messages, readings, source)
        self.readings += readings
        self._buffer.hold(batch_id)

    def track(
        self, mid: int, batch_id: int | None = None, then: Callable[[], None] | None = None
    ) -> None:
        """A QoS 1 message went out: of a batch announced by :meth:`expect`, or of none
        (status, current values, results); ``then`` is called when it is answered."""
        self._batch_of[mid] = batch_id
        if then is not None:
            self._then[mid] = then

    def sent_unacked(self, batch_id: int, readings: int) -> None:
        """A batch went out at QoS 0: it waits for the next fence."""
        self._unfenced.append((batch_id, readings))
        self.readings += readings
        self._buffer.hold(batch_id)

    def fence(self, mid: int) -> None:
        """A QoS 1 message was sent after the QoS 0 ones: its ack releases them."""
        self._batch_of[mid] = None
        if self._unfenced:
            self._fences[mid] = self._unfenced
            self._unfenced = []

    @property
    def needs_fence(self) -> bool:
        """True when QoS 0 batches wait for a fence."""
        return bool(self._unfenced)

    def acked(self, mids: Iterable[int]) -> None:
        """The broker acknowledged messages (one read's worth): release what they complete."""
        batch_of, batches, fences = self._batch_of, self._batches, self._fences
        answered = 0
        for mid in mids:
            batch_id = batch_of.pop(mid, _UNKNOWN)
            if batch_id == _UNKNOWN:
                continue  # a stale id, from before a reconnect
            answered += 1
            if self._then:
                then = self._then.pop(mid, None)
                if then is not None:
                    then()
            if fences:
                for fenced_id, readings in fences.pop(mid, ()):
                    self._done(fenced_id, readings)
            if batch_id is not None:
                batch = batches[batch_id]
                batch.left -= 1
                if not batch.left:
                    del batches[batch_id]
                    self._done(batch_id, batch.readings, batch.refused)
        self.acked_messages += answered
        # Wake the sender at half the window, so a full window refills in bursts, not per ack.
        if len(batch_of) <= self.max_messages // 2 and self.readings <= self.max_readings // 2:
            self.opened.set()

    def refused(self, refusal: Refusal) -> None:
        """The broker refused a message (an MQTT 5 reason code): its readings are counted as
        refused, per source, and said once per topic; then it counts as answered.

        Refused, not kept: a broker that refuses a topic (an ACL, a topic it finds invalid)
        will refuse it at every attempt, and a batch kept for it would hold the buffer until
        the bounds evict it, with every other reading of that batch.
        """
        batch_id = self._batch_of.get(refusal.mid, _UNKNOWN)
        if batch_id == _UNKNOWN:
            return
        if batch_id is not None:
            batch = self._batches[batch_id]
            batch.refused += batch.per_message
            counted = self.refused_readings
            counted[batch.source] = counted.get(batch.source, 0) + batch.per_message
        if refusal.topic not in self._refused_topics:
            if len(self._refused_topics) >= MAX_LOGGED_TOPICS:
                self._refused_topics.clear()
            self._refused_topics.add(refusal.topic)
            log.warning(
                "broker refused a message on %s: %s; readings refused there are counted per "
                "source (refused) and not kept; said once per topic",
                refusal.topic,
                refusal.text,
            )
        self.acked([refusal.mid])

    def _done(self, batch_id: int, readings: int, refused: int = 0) -> None:
        self.readings -= readings
        self.acked_readings += readings - refused
        self._buffer.release(batch_id)

    def clear(self) -> None:
        """The connection is gone: forget everything in flight (it is re-sent from the buffer)."""
        self._buffer.let_go(
            [*self._batches, *(i for i, _ in self._unfenced)]
            + [i for fenced in self._fences.values() for i, _ in fenced]
        )
        self._batch_of.clear()
        self._then.clear()
        self._batches.clear()
        self._unfenced.clear()
        self._fences.clear()
        self.readings = 0
        self.opened.set()

    async def wait_empty(self, timeout: float) -> bool:
        """Wait (bounded) until nothing is in flight; True if it emptied."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._batch_of or self._unfenced:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self.opened.clear()
            try:
                await asyncio.wait_for(self.opened.wait(), left)
            except TimeoutError:
                return False
        return True
