"""The source runtime with a fake connector: seq, bad quality on loss, reconnect, overruns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest

from gateway.errors import ConnectionLost
from gateway.models import Batch, Quality, Sample
from gateway.runtime import SourceRunner, scan_groups
from gateway.schema import SourceBase, TagBase
from tests.helpers import async_wait_until


@dataclass(eq=False)
class FakePlan:
    """What the fake connector planned: the tags, and on which connection."""

    tags: tuple[TagBase, ...]
    connection: int
    reads: int = 0
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(t.name for t in self.tags)


class FakeDevice:
    """Our connector interface, driven by the test."""

    def __init__(self) -> None:
        self.up = True
        self.value = 0
        self.read_delay = 0.0
        self.connects = 0
        self.plans: list[FakePlan] = []  # every plan made, in order
        self.reads: list[list[str]] = []
        self.read_plans: list[FakePlan] = []
        self.read_at: list[float] = []  # loop time each read started
        self.refused: dict[str, str] = {}  # tag name -> why the device refuses it

    async def connect(self) -> None:
        if not self.up:
            raise ConnectionLost("device is down")
        self.connects += 1

    def plan(self, tags: Sequence[TagBase]) -> FakePlan:
        plan = FakePlan(tuple(tags), self.connects)
        self.plans.append(plan)
        return plan

    async def read(self, plan: FakePlan) -> list[Sample]:
        if not self.up:
            raise ConnectionLost("device is down")
        assert plan.connection == self.connects, "a plan made on an earlier connection"
        plan.reads += 1
        self.read_plans.append(plan)
        self.reads.append(list(plan.names))
        self.read_at.append(asyncio.get_running_loop().time())
        if self.read_delay:
            await asyncio.sleep(self.read_delay)
        self.value += 1
        return [
            Sample(None, Quality.BAD, reason=self.refused[t.name])
            if t.name in self.refused
            else Sample(self.value)
            for t in plan.tags
        ]

    async def close(self) -> None:
        pass


def source(**kw: Any) -> SourceBase:
    return SourceBase.model_validate({"name": "dev", "scan": "20ms", "backoff_max": "50ms", **kw})


def tags(*specs: dict[str, Any]) -> list[TagBase]:
    return [TagBase.model_validate(s) for s in specs]


async def run_for(runner: SourceRunner, condition: Any, timeout: float = 5.0) -> None:
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(condition, timeout)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_seq_increases_by_one_per_reading_and_continues_from_last_seq() -> None:
    batches: list[Batch] = []
    t = tags({"name": "a", "report": "always"}, {"name": "b", "report": "always"})
    runner = SourceRunner(source(), t, FakeDevice(), batches.append, last_seq=41)
    await run_for(runner, lambda: len(batches) >= 5)
    seqs = [r.seq for b in batches for r in b.readings]
    assert seqs == list(range(42, 42 + len(seqs)))
    assert all(b.first_seq == b.readings[0].seq for b in batches)


async def test_report_always_and_on_change_in_one_scan() -> None:
    everything: list[Batch] = []
    always = tags({"name": "a", "report": "always"}, {"name": "b", "report": "always"})
    await run_for(
        SourceRunner(source(), always, FakeDevice(), everything.append), lambda: len(everything) > 3
    )
    # every tag every scan, with that scan's value (the fake device counts its reads)
    for n, batch in enumerate(everything[:4], 1):
        assert [(r.tag, r.value) for r in batch.readings] == [("a", n), ("b", n)]

    some: list[Batch] = []
    device = FakeDevice()
    mixed = tags({"name": "a", "report": "always"}, {"name": "b", "heartbeat": "1h"})
    runner = SourceRunner(source(), mixed, device, some.append)
    device.value = -1  # ... and then 0, 0, 0: the on_change tag reports its first value only
    read = device.read

    async def unchanging(plan: FakePlan) -> list[Sample]:
        samples = await read(plan)
        device.value = max(device.value - 1, -1)
        return samples

    device.read = unchanging  # type: ignore[method-assign]
    await run_for(runner, lambda: len(some) > 3)
    assert [[r.tag for r in b.readings] for b in some[:4]] == [["a", "b"], ["a"], ["a"], ["a"]]


async def test_lost_device_marks_tags_bad_once_then_recovers() -> None:
    batches: list[Batch] = []
    device = FakeDevice()
    t = tags({"name": "a", "report": "always"}, {"name": "b"})
    runner = SourceRunner(source(), t, device, batches.append)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: len(batches) >= 2)
        device.up = False
        await async_wait_until(lambda: runner.stats.state == "lost")
        connects_before = device.connects
        await async_wait_until(lambda: runner.stats.last_error == "device is down")
        bad = [b for b in batches if b.readings[0].quality is Quality.BAD]
        assert len(bad) == 1
        assert [(r.tag, r.value, r.quality) for r in bad[0].readings] == [
            ("a", None, Quality.BAD),
            ("b", None, Quality.BAD),
        ]
        n = len(batches)
        device.up = True
        await async_wait_until(lambda: runner.stats.state == "connected" and len(batches) > n)
        assert device.connects == connects_before + 1
        recovered = batches[n]
        assert {r.quality for r in recovered.readings} == {Quality.GOOD}
        assert [r.tag for r in recovered.readings] == [
            "a",
            "b",
        ]  # b reported again: its quality changed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    seqs = [r.seq for b in batches for r in b.readings]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_overrun_skips_missed_ticks_and_counts_them() -> None:
    batches: list[Batch] = []
    device = FakeDevice()
    device.read_delay = 0.05  # each read takes 2.5 ticks of 20 ms
    runner = SourceRunner(source(), tags({"name": "a", "report": "always"}), device, batches.append)
    ticks: list[float] = []  # the tick each read serves, as the runner scheduled it
    read = device.read

    async def note_tick(plan: FakePlan) -> list[Sample]:
        ticks.append(runner.groups[0].next_due)
        return await read(plan)

    device.read = note_tick  # type: ignore[method-assign]
    await run_for(runner, lambda: len(batches) >= 6)
    assert runner.stats.overruns >= 2 * (len(batches) - 1)
    # Skipped, not queued: after a 50 ms read the next scan serves the next free tick, three
    # ticks (60 ms) on; a queue of missed ticks would serve the very next one (20 ms). Judged
    # on the schedule, not on when a loaded machine got round to it.
    steps = [round((b - a) / 0.02) for a, b in pairwise(ticks)]
    assert min(steps) >= 3, steps


async def test_tags_with_their_own_scan_form_groups_and_due_groups_share_one_read() -> None:
    t = tags(
        {"name": "fast", "scan": "20ms"}, {"name": "slow", "scan": "60ms"}, {"name": "default"}
    )
    groups = scan_groups(source(scan="60ms"), t)
    assert [(g.interval, [x.name for x in g.tags]) for g in groups] == [
        (0.02, ["fast"]),
        (0.06, ["slow", "default"]),
    ]
    device = FakeDevice()
    runner = SourceRunner(source(scan="60ms"), t, device, lambda b: None)
    await run_for(runner, lambda: len(device.reads) >= 7)
    assert device.reads[0] == ["fast", "slow", "default"]
    assert ["fast"] in device.reads


class FakeSubscriber(FakeDevice):
    """A connector that pushes changes, like OPC UA monitored items."""

    def __init__(self, subscribes: bool = True) -> None:
        super().__init__()
        self.subscribes = subscribes  # as the source's config says
        self.deliver: Any = None
        self.lost = asyncio.Event()

    async def subscribe(self, tags: Sequence[TagBase], deliver: Any) -> None:
        self.deliver = deliver
        await self.lost.wait()
        self.lost.clear()
        self.deliver = None
        raise ConnectionLost("session died")


async def test_subscription_pushes_changes_and_recovers_after_loss() -> None:
    batches: list[Batch] = []
    device = FakeSubscriber()
    t = tags({"name": "a"}, {"name": "b", "heartbeat": "100ms"})
    runner = SourceRunner(source(scan="50ms"), t, device, batches.append)
    assert runner.subscribing
    assert not SourceRunner(source(), t, FakeSubscriber(subscribes=False), print).subscribing
    assert not SourceRunner(source(), t, FakeDevice(), print).subscribing
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: device.deliver is not None)
        device.deliver([(0, Sample(1.5, ts=1000)), (1, Sample(7, ts=1001))])
        device.deliver([(1, Sample(8, ts=1002))])
        assert [(r.tag, r.value, r.ts) for b in batches for r in b.readings] == [
            ("a", 1.5, 1000),
            ("b", 7, 1001),
            ("b", 8, 1002),
        ]
        # b's heartbeat republishes its unchanged value on the scan ticks; a stays quiet.
        await async_wait_until(lambda: len(batches) >= 4)
        assert [r.tag for r in batches[3].readings] == ["b"]
        device.lost.set()
        await async_wait_until(
            lambda: any(r.quality is Quality.BAD for b in batches for r in b.readings)
        )
        await async_wait_until(
            lambda: device.deliver is not None and runner.stats.state == "connected"
        )
        assert device.connects == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    seqs = [r.seq for b in batches for r in b.readings]
    assert seqs == list(range(1, len(seqs) + 1))


class StructDevice(FakeDevice):
    async def read(self, plan: FakePlan) -> list[Sample]:
        if not self.up:
            raise ConnectionLost("device is down")
        self.value += 1
        udt = {"speed": 1.5, "limits": {"high": 10, "low": self.value}, "name": "COLA"}
        return [Sample(udt), Sample(self.value)]


async def test_structures_are_published_as_their_members() -> None:
    batches: list[Batch] = []
    t = tags({"name": "recipe"}, {"name": "count", "report": "always"})
    runner = SourceRunner(source(), t, StructDevice(), batches.append)
    await run_for(runner, lambda: len(batches) >= 2)
    first = [(r.tag, r.value) for r in batches[0].readings]
    assert first == [
        ("recipe.speed", 1.5),
        ("recipe.limits.high", 10),
        ("recipe.limits.low", 1),
        ("recipe.name", "COLA"),
        ("count", 1),
    ]
    # Report by exception applies per member: only the member that changed comes again.
    assert [(r.tag, r.value) for r in batches[1].readings] == [
        ("recipe.limits.low", 2),
        ("count", 2),
    ]


async def test_a_lost_structure_marks_its_members_bad() -> None:
    batches: list[Batch] = []
    device = StructDevice()
    t = tags({"name": "recipe"}, {"name": "count"})
    runner = SourceRunner(source(), t, device, batches.append)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: len(batches) >= 1)
        device.up = False
        await async_wait_until(lambda: runner.stats.state == "lost")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    bad = next(b for b in batches if b.readings[0].quality is Quality.BAD)
    assert [r.tag for r in bad.readings] == [
        "recipe.speed",
        "recipe.limits.high",
        "recipe.limits.low",
        "recipe.name",
        "count",
    ]


async def test_each_scan_is_planned_once_per_connection_not_per_scan() -> None:
    device = FakeDevice()
    t = tags({"name": "fast", "scan": "20ms"}, {"name": "slow", "scan": "60ms"})
    runner = SourceRunner(source(), t, device, lambda b: None)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: len(device.reads) >= 8)
        # Each group, and both together (the first scan), planned once, before the first scan.
        assert sorted(p.names for p in device.plans) == [("fast",), ("fast", "slow"), ("slow",)]
        assert device.read_plans[0] is device.plans[-1]  # everything, read first
        device.up = False
        await async_wait_until(lambda: runner.stats.state == "lost")
        device.up = True
        await async_wait_until(lambda: device.connects == 2 and device.read_plans[-1].reads >= 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # The second connection planned each scan again, once; every read used its own plans.
    assert [p.connection for p in device.plans] == [1, 1, 1, 2, 2, 2]
    assert {p.names for p in device.plans[3:]} == {p.names for p in device.plans[:3]}


async def test_a_combination_of_groups_falling_due_together_reuses_its_scan() -> None:
    device = FakeDevice()
    t = tags(
        {"name": "a", "scan": "20ms"}, {"name": "b", "scan": "40ms"}, {"name": "c", "scan": "100ms"}
    )
    runner = SourceRunner(source(), t, device, lambda b: None)

    def combination_reads() -> int:  # a and b due together, without c: made on first use
        return sum(names == ["a", "b"] for names in device.reads)

    await run_for(runner, lambda: combination_reads() >= 3)
    plans: dict[tuple[str, ...], set[int]] = {}
    for plan in device.read_plans:
        plans.setdefault(plan.names, set()).add(id(plan))
    assert all(len(ids) == 1 for ids in plans.values()), plans  # one plan per combination
    assert len(device.plans) == len({p.names for p in device.plans}) <= 7  # 2**3 - 1 at most


async def test_a_tags_quality_change_is_logged_once_by_the_runtime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gateway")
    device = FakeDevice()
    device.refused["b"] = "read holding:5+1: Modbus exception 2 (illegal data address)"
    runner = SourceRunner(source(), tags({"name": "a"}, {"name": "b"}), device, lambda b: None)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: len(device.reads) >= 3)
        # A lost connection is one line of its own; b, still refused after it, is not news.
        device.up = False
        await async_wait_until(lambda: runner.stats.state == "lost")
        device.up = True
        await async_wait_until(lambda: device.connects == 2 and len(device.reads) >= 6)
        del device.refused["b"]
        n = len(device.reads)
        await async_wait_until(lambda: len(device.reads) >= n + 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    quality = [r.getMessage() for r in caplog.records if r.name == "gateway.quality"]
    assert quality == [
        "dev: tag(s) not good: b (read holding:5+1: Modbus exception 2 (illegal data address))",
        "dev: tag(s) good again: b",
    ]


async def test_a_subscribed_tags_quality_change_is_logged_once_by_the_runtime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gateway.quality")
    batches: list[Batch] = []
    device = FakeSubscriber()
    t = tags({"name": "a", "heartbeat": "20ms"})
    runner = SourceRunner(source(scan="20ms"), t, device, batches.append)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: device.deliver is not None)
        bad = Sample(None, Quality.BAD, reason="BadNoCommunication")
        device.deliver([(0, bad)])
        device.deliver([(0, bad)])
        n = len(batches)  # the ticks offer the latest (bad) sample again: no news either
        await async_wait_until(lambda: len(batches) >= n + 2, what="two heartbeats")
        device.deliver([(0, Sample(1.5))])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert caplog.messages == [
        "dev: tag(s) not good: a (BadNoCommunication)",
        "dev: tag(s) good again: a",
    ]
