"""The source runtime with a fake connector: seq, bad quality on loss, reconnect, overruns."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from gateway.errors import ConnectionLost
from gateway.models import Batch, Quality, Sample
from gateway.runtime import SourceRunner, scan_groups
from gateway.schema import SourceBase, TagBase
from tests.helpers import async_wait_until


class FakeDevice:
    """Our connector interface, driven by the test."""

    def __init__(self) -> None:
        self.up = True
        self.value = 0
        self.read_delay = 0.0
        self.connects = 0
        self.reads: list[list[str]] = []
        self.read_at: list[float] = []  # loop time each read started

    async def connect(self) -> None:
        if not self.up:
            raise ConnectionLost("device is down")
        self.connects += 1

    async def read(self, tags: Sequence[TagBase]) -> list[Sample]:
        if not self.up:
            raise ConnectionLost("device is down")
        self.reads.append([t.name for t in tags])
        self.read_at.append(asyncio.get_running_loop().time())
        if self.read_delay:
            await asyncio.sleep(self.read_delay)
        self.value += 1
        return [Sample(self.value) for _ in tags]

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

    async def unchanging(t: Sequence[TagBase]) -> list[Sample]:
        samples = await read(t)
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

    async def note_tick(tags: Sequence[TagBase]) -> list[Sample]:
        ticks.append(runner.groups[0].next_due)
        return await read(tags)

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

    def __init__(self) -> None:
        super().__init__()
        self.deliver: Any = None
        self.lost = asyncio.Event()

    async def subscribe(self, tags: Sequence[TagBase], deliver: Any) -> None:
        self.deliver = deliver
        await self.lost.wait()
        self.lost.clear()
        self.deliver = None
        raise ConnectionLost("session died")


class SubscribingSource(SourceBase):
    subscribe: bool = True


async def test_subscription_pushes_changes_and_recovers_after_loss() -> None:
    batches: list[Batch] = []
    device = FakeSubscriber()
    src = SubscribingSource.model_validate({"name": "dev", "scan": "50ms", "backoff_max": "50ms"})
    t = tags({"name": "a"}, {"name": "b", "heartbeat": "100ms"})
    runner = SourceRunner(src, t, device, batches.append)
    assert runner.subscribing
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
    async def read(self, tags: Sequence[TagBase]) -> list[Sample]:
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


class PlanningDevice(FakeDevice):
    """A connector that plans per tag list, as the Modbus one does."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[int] = []  # ids of the tag lists planned, in order
        self.read_lists: list[int] = []

    def prepare(self, tags: Sequence[TagBase]) -> None:
        assert not self.read_lists, "prepared after a scan had started"
        self.prepared.append(id(tags))

    async def read(self, tags: Sequence[TagBase]) -> list[Sample]:
        self.read_lists.append(id(tags))
        return await super().read(tags)


async def test_every_tag_list_a_scan_reads_was_prepared_before_the_first_scan() -> None:
    batches: list[Batch] = []
    device = PlanningDevice()
    t = tags({"name": "fast", "scan": "20ms"}, {"name": "slow", "scan": "60ms"})
    runner = SourceRunner(source(), t, device, batches.append)
    await run_for(runner, lambda: len(device.read_lists) >= 8)
    assert len(device.prepared) == 3  # each group, and both together
    assert set(device.read_lists) <= set(device.prepared)
    assert len(set(device.read_lists)) >= 2  # scans of the fast group alone and of both
