"""The shared source runtime: scans on absolute ticks, reconnects with backoff, numbers readings."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from connectors.base import Connector, Subscriber
from gateway.backoff import backoff
from gateway.errors import ConnectionLost
from gateway.models import Batch, Quality, Sample, Samples, Value, epoch_ms
from gateway.quality import QualityLog
from gateway.report import ExceptionReporter
from gateway.schema import SourceBase, TagBase

log = logging.getLogger(__name__)


class Scan:
    """What one scan reads and reports, worked out once instead of on every scan.

    One per scan group, and one per combination of groups that fell due at the same tick
    (made the first time, then kept). It holds the tags, their names (one tuple, shared by
    every batch of the scan), whether every tag says ``report: always`` (then there is nothing
    to select), and the connector's plan for reading the tags, made again after each connect.
    """

    __slots__ = ("always", "names", "plan", "tags")

    def __init__(self, tags: Sequence[TagBase]) -> None:
        self.tags: tuple[TagBase, ...] = tuple(tags)
        self.names: tuple[str, ...] = tuple(t.name for t in tags)
        self.always = all(t.report == "always" for t in tags)
        self.plan: Any = None  # the connector's own type: only the connector looks inside

    def __repr__(self) -> str:
        return f"Scan({list(self.names)!r})"


@dataclass(slots=True)
class ScanGroup:
    """The tags of one source that share a scan interval: their Scan and when it is next due."""

    interval: float
    scan: Scan
    next_due: float = 0.0

    @property
    def tags(self) -> tuple[TagBase, ...]:
        """The group's tags."""
        return self.scan.tags


@dataclass(slots=True)
class SourceStats:
    """Counters and state of one source, for metrics and health."""

    state: str = "starting"  # starting | connected | lost
    scans: int = 0
    overruns: int = 0
    readings: int = 0
    connects: int = 0
    last_error: str | None = None
    last_scan_ms: float = 0.0


def scan_groups(source: SourceBase, tags: Sequence[TagBase]) -> list[ScanGroup]:
    """Group a source's tags by their effective scan interval, fastest first."""
    groups: dict[float, list[TagBase]] = {}
    for tag in tags:
        groups.setdefault(tag.scan or source.scan, []).append(tag)
    return [ScanGroup(interval, Scan(members)) for interval, members in sorted(groups.items())]


class SourceRunner:
    """Owns one source's connection and scan schedule; one task per source."""

    def __init__(
        self,
        source: SourceBase,
        tags: Sequence[TagBase],
        connector: Connector[Any, Any],
        emit: Callable[[Batch], None],
        last_seq: int = 0,
    ) -> None:
        self.source = source
        self.tags = list(tags)
        self.connector = connector
        self.emit = emit
        self.seq = last_seq
        self.groups = scan_groups(source, tags)
        # Every Scan, by the positions in ``groups`` of the groups it reads: one per group from
        # the start, one per combination once it has fallen due (at most 2**groups - 1).
        self._scans: dict[tuple[int, ...], Scan] = {(i,): g.scan for i, g in enumerate(self.groups)}
        self.stats = SourceStats()
        self._reporter = ExceptionReporter()
        self._qualities = QualityLog(source.name)
        self._delays = backoff(base=0.5, cap=source.backoff_max)
        self._stopping = False
        self._latest: dict[int, Sample] = {}  # subscription mode: last sample of each tag
        self._members: dict[str, TagBase] = {}  # structure members, named tag.member.sub

    def stop(self) -> None:
        """Ask the scan loop to end at its next tick (the task is also cancelled)."""
        self._stopping = True

    @property
    def subscribing(self) -> bool:
        """True when the connector can push changes and the source's config asks for it."""
        return self._subscriber() is not None

    def _subscriber(self) -> Subscriber[Any] | None:
        connector = self.connector
        return connector if isinstance(connector, Subscriber) and connector.subscribes else None

    async def run(self) -> None:
        """Scan (or subscribe) until cancelled; never raises for device trouble."""
        loop = asyncio.get_running_loop()
        if self.stats.state == "connected":  # restarted after a failure: connect afresh
            self.stats.state = "starting"
        try:
            subscriber = self._subscriber()
            if subscriber is not None:
                await self._run_subscribed(loop, subscriber)
            while not self._stopping:
                if self.stats.state != "connected":
                    await self._connect(loop.time())
                    if self.stats.state != "connected":
                        await asyncio.sleep(next(self._delays))
                        continue
                    self._plan()
                    self._realign(loop.time())
                due_at = min(g.next_due for g in self.groups)
                delay = due_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                due = tuple(i for i, g in enumerate(self.groups) if g.next_due <= due_at)
                await self._scan(self._scan_of(due), due_at)
                self._advance(due, loop.time())
        finally:
            await asyncio.shield(self.connector.close())

    async def _run_subscribed(
        self, loop: asyncio.AbstractEventLoop, connector: Subscriber[Any]
    ) -> None:
        """Changes are pushed as they come; every scan the latest samples are offered again,
        so ``heartbeat`` and ``report: always`` keep their meaning."""
        while not self._stopping:
            await self._connect(loop.time())
            if self.stats.state != "connected":
                await asyncio.sleep(next(self._delays))
                continue
            ticker = asyncio.create_task(self._offer_latest(loop), name=f"{self.source.name}:ticks")
            try:
                await connector.subscribe(self.tags, self._deliver)
                raise ConnectionLost("the subscription ended")
            except ConnectionLost as exc:
                await self.connector.close()
                self._latest.clear()
                self._lost(str(exc), loop.time())
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)

    def _deliver(self, changes: Sequence[tuple[int, Sample]]) -> None:
        tags, samples = [], []
        for index, sample in changes:
            self._latest[index] = sample
            tags.append(self.tags[index])
            samples.append(sample)
        if tags:
            self.stats.scans += 1
            columns = Samples.of(samples)
            self._qualities.note([t.name for t in tags], columns.qualities, columns.reasons)
            loop_time = asyncio.get_running_loop().time()
            self._report(tags, columns, loop_time, epoch_ms())

    async def _offer_latest(self, loop: asyncio.AbstractEventLoop) -> None:
        next_tick = loop.time() + self.source.scan
        while True:
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            next_tick += self.source.scan
            if self._latest:
                indices = sorted(self._latest)
                tags = [self.tags[i] for i in indices]
                samples = [self._latest[i] for i in indices]
                # The device's own timestamp stays: an unchanged value keeps the time it was read.
                self._report(tags, Samples.of(samples), loop.time(), epoch_ms())

    async def _connect(self, now: float) -> None:
        try:
            await self.connector.connect()
        except ConnectionLost as exc:
            self._lost(str(exc), now)
            return
        self.stats.connects += 1
        if self.stats.state == "lost":
            log.info("%s: connection recovered", self.source.name)
        else:
            log.info("%s: connected", self.source.name)
        self.stats.state = "connected"
        self.stats.last_error = None
        self._delays = backoff(base=0.5, cap=self.source.backoff_max)

    def _lost(self, reason: str, now: float) -> None:
        """Mark every tag bad once, and log the loss once, however long it lasts."""
        if self.stats.state != "lost":
            log.warning(
                "%s: connection lost: %s; tags bad, retrying with backoff", self.source.name, reason
            )
            # A structure's members were published, not the structure: they are what go bad.
            tags = [
                member
                for tag in self.tags
                for member in (
                    [m for name, m in self._members.items() if name.startswith(f"{tag.name}.")]
                    or [tag]
                )
            ]
            bad = Samples([None] * len(tags), [Quality.BAD] * len(tags))
            self._report(tags, bad, now, wall_ms=epoch_ms())
        self.stats.state = "lost"
        self.stats.last_error = reason

    async def _scan(self, scan: Scan, tick: float) -> None:
        wall_ms = epoch_ms()
        started = time.perf_counter()
        try:
            read = await self.connector.read(scan.plan)
        except ConnectionLost as exc:
            await self.connector.close()
            self._lost(str(exc), tick)
            return
        self.stats.scans += 1
        self.stats.last_scan_ms = (time.perf_counter() - started) * 1000
        samples = read if isinstance(read, Samples) else Samples.of(read)
        self._qualities.note(scan.names, samples.qualities, samples.reasons)
        self._report(scan.tags, samples, tick, wall_ms, scan)

    def _scan_of(self, due: tuple[int, ...]) -> Scan:
        """The Scan of these groups together: made (and planned) the first time they fall due
        at once, then kept."""
        scan = self._scans.get(due)
        if scan is None:
            scan = self._scans[due] = Scan([t for i in due for t in self.groups[i].tags])
            scan.plan = self.connector.plan(scan.tags)
        return scan

    def _report(
        self,
        tags: Sequence[TagBase],
        samples: Samples,
        tick: float,
        wall_ms: int,
        scan: Scan | None = None,  # the Scan that read them, when these are its samples
    ) -> None:
        if any(map(isinstance, samples.values, repeat(dict))):
            tags, samples = self._flatten(tags, samples)
            scan = None  # its names are no longer the readings' names
        values, qualities, stamps = samples.values, samples.qualities, samples.stamps
        names = scan.names if scan is not None else None
        if scan is not None and scan.always:  # report: always on every tag: nothing to select
            chosen: Sequence[int] = range(len(values))
        else:
            chosen = self._reporter.select(tags, values, qualities, tick)
        if not chosen:
            return
        if len(chosen) < len(values):
            tags = [tags[i] for i in chosen]
            values, qualities = [values[i] for i in chosen], [qualities[i] for i in chosen]
            stamps = None if stamps is None else [stamps[i] for i in chosen]
            names = None
        batch = Batch.of_columns(
            self.source.name,
            wall_ms,
            names if names is not None else [t.name for t in tags],
            values,
            qualities,
            [wall_ms] * len(values)
            if stamps is None
            else [wall_ms if ts is None else ts for ts in stamps],
            self.seq + 1,
        )
        self.seq += len(batch)
        self.stats.readings += len(batch)
        self.emit(batch)

    def _flatten(self, tags: Sequence[TagBase], samples: Samples) -> tuple[list[TagBase], Samples]:
        """A structure (e.g. a Logix UDT) is published as its members: ``recipe.speed``."""
        out_tags: list[TagBase] = []
        values: list[Value] = []
        qualities: list[Quality] = []
        stamps: list[int | None] = []

        def walk(tag: TagBase, name: str, value: Any, quality: Quality, ts: int | None) -> None:
            if isinstance(value, dict):
                for key, member in value.items():
                    walk(tag, f"{name}.{key}", member, quality, ts)
                return
            member_tag = self._members.get(name)
            if member_tag is None:
                member_tag = self._members[name] = tag.model_copy(update={"name": name})
            out_tags.append(member_tag)
            values.append(value)
            qualities.append(quality)
            stamps.append(ts)

        given = samples.stamps or [None] * len(samples)
        for row in zip(tags, samples.values, samples.qualities, given, strict=True):
            walk(row[0], row[0].name, *row[1:])
        return out_tags, Samples(values, qualities, stamps)

    def _advance(self, due: tuple[int, ...], now: float) -> None:
        """Move scanned groups to their next tick; ticks already missed are skipped and counted."""
        for group in map(self.groups.__getitem__, due):
            group.next_due += group.interval
            if group.next_due <= now:
                missed = math.floor((now - group.next_due) / group.interval) + 1
                group.next_due += missed * group.interval
                self.stats.overruns += missed
                log.debug(
                    "%s: scan overran by %d tick(s) of %.3fs",
                    self.source.name,
                    missed,
                    group.interval,
                )

    def _plan(self) -> None:
        """After a connect, have the connector plan every Scan known so far, before the tick
        grid starts, so the first scan is as quick as the rest and overruns nothing."""
        everything = tuple(range(len(self.groups)))  # what the first scan reads
        if everything not in self._scans:
            self._scans[everything] = Scan([t for g in self.groups for t in g.tags])
        for scan in self._scans.values():
            scan.plan = self.connector.plan(scan.tags)

    def _realign(self, now: float) -> None:
        """After a (re)connect, scan at once; the tick grid continues from here."""
        for group in self.groups:
            group.next_due = now
