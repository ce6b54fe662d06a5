"""Which buffered batches go next after a (re)connect: live ones at once, the backlog paced.

Rows committed before the connection (``id <= boundary``) are the backlog: historical,
paced at ``replay.max_rate`` readings/s, never retained. ``live_first``: newer rows go out as
they are committed while a second cursor drains the backlog behind them. ``in_order``: one
cursor, oldest first, paced until it passes the boundary.
"""

from __future__ import annotations

import time

from buffer import Buffer, StoredBatch


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


class ReplayCursor:
    """Where one connection is in the buffer: the live cursor, the backlog cursor, the pacer."""

    def __init__(self, boundary: int, order: str, max_rate: float) -> None:
        self.boundary = boundary  # rows committed before this connection
        live_first = order == "live_first"
        self.live = boundary if live_first else 0  # the last row sent by the first cursor
        self.backlog = 0 if live_first else boundary  # ... and by the backlog cursor
        self.pacer = Pacer(max_rate)
        self.paced_until = 0.0  # the pacer said wait: no backlog is even read before then

    def historical(self, batch: StoredBatch) -> bool:
        """True for a row of the backlog."""
        return batch.id <= self.boundary

    @property
    def draining(self) -> bool:
        """True while the backlog is not all sent."""
        return self.live < self.boundary or self.backlog < self.boundary

    def paused(self) -> float:
        """Seconds until the pacer lets the backlog go on (0 when it may go now)."""
        return max(0.0, self.paced_until - time.monotonic())

    async def next(self, buffer: Buffer, budget: int) -> list[StoredBatch]:
        """The batches to send next, at most ``budget`` readings (read only what may go now:
        re-reading a large backlog on every wake of a slow pacer would starve the scans)."""
        paused = self.paused() > 0
        in_backlog = self.live < self.boundary  # in_order, still in the backlog
        if not (in_backlog and paused):
            take = self.pacer.allowance(budget) if in_backlog else budget
            batches = await buffer.take(self.live, take)
            if batches:
                return batches
        if self.backlog < self.boundary and not paused:
            older = await buffer.take(self.backlog, self.pacer.allowance(budget), self.boundary)
            if not older:
                self.backlog = self.boundary  # nothing left behind the live cursor
            return older
        return []

    def may_send(self, batch: StoredBatch) -> bool:
        """Live rows may always go; a backlog row when the pacer has its readings (spent)."""
        if not self.historical(batch):
            return True
        wait = self.pacer.wait_for(batch.count)
        if wait > 0:
            self.paced_until = time.monotonic() + wait
            return False
        return True

    def sent(self, batch: StoredBatch) -> None:
        """Move the cursor that this batch came from."""
        if batch.id > self.live and (batch.id > self.boundary or self.live < self.boundary):
            self.live = batch.id
        else:
            self.backlog = max(self.backlog, batch.id)
