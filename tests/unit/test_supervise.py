"""Supervision: a task that dies is restarted and counted, or the gateway is told to stop."""

from __future__ import annotations

import asyncio

from gateway import supervise
from gateway.supervise import Supervisor
from tests.helpers import async_wait_until


async def test_a_failing_task_is_restarted_and_counted() -> None:
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("boom")
        await asyncio.Event().wait()  # then it runs on

    supervisor = Supervisor(first_delay=0.001)
    task = supervisor.start("source:press1", flaky)
    await async_wait_until(lambda: runs == 3)
    assert supervisor.restarts == {"source:press1": 2}
    assert not supervisor.failed.done()
    task.cancel()


async def test_a_task_that_keeps_failing_stops_the_gateway() -> None:
    async def broken() -> None:
        raise ValueError("always")

    supervisor = Supervisor(first_delay=0.001)
    supervisor.start("publisher", broken)
    reason = await asyncio.wait_for(supervisor.failed, 5)
    assert reason.startswith("task publisher ValueError('always')")
    assert f"({supervise.MAX_RESTARTS + 1} times" in reason
    assert supervisor.restarts["publisher"] == supervise.MAX_RESTARTS


async def test_a_task_that_may_not_restart_stops_the_gateway_at_once() -> None:
    async def ends() -> None:
        return

    supervisor = Supervisor(first_delay=0.001)
    supervisor.start("metrics", ends, restart=False)
    assert await asyncio.wait_for(supervisor.failed, 5) == "task metrics ended by itself"


async def test_a_watched_task_that_dies_is_fatal_and_one_that_stops_when_told_is_not() -> None:
    async def writer() -> None:
        raise OverflowError("date value out of range")

    supervisor = Supervisor(first_delay=0.001)
    supervisor.watch("buffer-writer", asyncio.create_task(writer()))
    reason = await asyncio.wait_for(supervisor.failed, 5)
    assert reason == "buffer-writer failed: OverflowError('date value out of range')"

    calm = Supervisor(first_delay=0.001)
    calm.stopping = True

    async def done() -> None:
        return

    calm.watch("buffer-writer", asyncio.create_task(done()))
    calm.start("source:press1", done)
    await asyncio.sleep(0.05)
    assert not calm.failed.done()
    assert calm.restarts == {}
