"""The shared source runtime: scans on absolute ticks, reconnects with backoff, numbers readings."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, cast

from connectors.base import Connector, Subscriber
from gateway.backoff import backoff
from gateway.errors import ConnectionLost
from gateway.models import (
    BAD_SAMPLE,
    Batch,
    ByIdentity,
    Quality,
    Sample,
    Samples,
    ScanTags,
    Value,
    epoch_ms,
)
from gateway.report import ExceptionReporter
from gateway.schema import SourceBase, TagBase

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ScanGroup:
    """The tags of one source that share a scan interval."""

    interval: float
    tags: list[TagBase]
    next_due: float = 0.0


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
    return [ScanGroup(interval, members) for interval, members in sorted(groups.items())]


class SourceRunner:
    """Owns one source's connection and scan schedule; one task per source."""

    def __init__(
        self,
        source: SourceBase,
        tags: Sequence[TagBase],
        connector: Connector[Any],
        emit: Callable[[Batch], None],
        last_seq: int = 0,
    ) -> None:
        self.source = source
        self.tags = list(tags)
        self.connector = connector
        self.emit = emit
        self.seq = last_seq
        self.groups = scan_groups(source, tags)
        self.stats = SourceStats()
        self._reporter = ExceptionReporter()
        self._delays = backoff(base=0.5, cap=source.backoff_max)
        self._stopping = False
        self._latest: dict[int, Sample] = {}  # subscription mode: last sample of each tag
        self._combos: dict[tuple[int, ...], list[TagBase]] = {}
        self._members: dict[str, TagBase] = {}  # structure members, named tag.member.sub
        self._names: ByIdentity[Sequence[TagBase], tuple[ScanTags, bool]] = ByIdentity()

    def stop(self) -> None:
        """Ask the scan loop to end at its next tick (the task is also cancelled)."""
        self._stopping = True

    @property
    def subscribing(self) -> bool:
        """True when the source asks for subscriptions and its connector can push changes."""
        return bool(getattr(self.source, "subscribe", False)) and hasattr(
            self.connector, "subscribe"
        )

    async def run(self) -> None:
        """Scan (or subscribe) until cancelled; never raises for device trouble."""
        loop = asyncio.get_running_loop()
        if self.stats.state == "connected":  # restarted after a failure: connect afresh
            self.stats.state = "starting"
        try:
            if self.subscribing:
                await self._run_subscribed(loop)
            while not self._stopping:
                if self.stats.state != "connected":
                    await self._connect(loop.time())
                    if self.stats.state != "connected":
                        await asyncio.sleep(next(self._delays))
                        continue
                    self._prepare()
                    self._realign(loop.time())
                due_at = min(g.next_due for g in self.groups)
                delay = due_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                due = [g for g in self.groups if g.next_due <= due_at]
                await self._scan(due, due_at)
                self._advance(due, loop.time())
        finally:
            await asyncio.shield(self.connector.close())

    async def _run_subscribed(self, loop: asyncio.AbstractEventLoop) -> None:
        """Changes are pushed as they come; every scan the latest samples are offered again,
        so ``heartbeat`` and ``report: always`` keep their meaning."""
        connector = cast("Subscriber[Any]", self.connector)
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
                await connector.close()
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
            loop_time = asyncio.get_running_loop().time()
            self._report(tags, samples, loop_time, epoch_ms())

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
                self._report(tags, samples, loop.time(), epoch_ms())

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
            self._report(tags, [BAD_SAMPLE] * len(tags), now, wall_ms=epoch_ms())
        self.stats.state = "lost"
        self.stats.last_error = reason

    async def _scan(self, due: list[ScanGroup], tick: float) -> None:
        tags = due[0].tags if len(due) == 1 else self._combined(due)
        wall_ms = epoch_ms()
        started = time.perf_counter()
        try:
            samples = await self.connector.read(tags)
        except ConnectionLost as exc:
            await self.connector.close()
            self._lost(str(exc), tick)
            return
        self.stats.scans += 1
        self.stats.last_scan_ms = (time.perf_counter() - started) * 1000
        self._report(tags, samples, tick, wall_ms, whole=True)

    def _combined(self, due: list[ScanGroup]) -> list[TagBase]:
        """One list per combination of groups falling due together, built once and reused:
        connectors key their request plans on it."""
        key = tuple(id(g) for g in due)
        tags = self._combos.get(key)
        if tags is None:
            tags = self._combos[key] = [t for g in due for t in g.tags]
        return tags

    def _report(
        self,
        tags: Sequence[TagBase],
        samples: Sequence[Sample] | Samples,
        tick: float,
        wall_ms: int,
        whole: bool = False,  # tags is a scan group's own list, reused every scan
    ) -> None:
        if not isinstance(samples, Samples):
            samples = Samples(
                [s.value for s in samples], [s.quality for s in samples], [s.ts for s in samples]
            )
        if any(map(isinstance, samples.values, repeat(dict))):
            tags, samples = self._flatten(tags, samples)
            whole = False
        values, qualities, stamps = samples.values, samples.qualities, samples.stamps
        names, always = self._names.get(tags, self._names_of) if whole else (None, False)
        if always:  # report: always on every tag of the scan: nothing to select
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

    @staticmethod
    def _names_of(tags: Sequence[TagBase]) -> tuple[ScanTags, bool]:
        """A scan's tag names, and whether every one of its tags says ``report: always``."""
        return ScanTags(t.name for t in tags), all(t.report == "always" for t in tags)

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

    def _advance(self, due: list[ScanGroup], now: float) -> None:
        """Move scanned groups to their next tick; ticks already missed are skipped and counted."""
        for group in due:
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

    def _prepare(self) -> None:
        """Let the connector do its once-per-tag-list work (e.g. request plans) before the
        tick grid starts, so the first scan is as quick as the rest and overruns nothing."""
        prepare = getattr(self.connector, "prepare", None)
        if prepare is None:
            return
        for group in self.groups:
            prepare(group.tags)
        if len(self.groups) > 1:  # the first scan, and later ones, read every group at once
            prepare(self._combined(self.groups))

    def _realign(self, now: float) -> None:
        """After a (re)connect, scan at once; the tick grid continues from here."""
        for group in self.groups:
            group.next_due = now
