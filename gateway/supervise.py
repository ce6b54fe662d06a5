"""Supervision: no background task dies silently.

A task that ends on its own is either restarted with backoff (counted and logged, with its
traceback the first time) or, when it may not be restarted or keeps failing, the gateway is
told to stop with a reason, and the process exits non-zero after a best-effort flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.backoff import backoff

log = logging.getLogger(__name__)

MAX_RESTARTS = 5  # within RESTART_WINDOW seconds; one more is fatal
RESTART_WINDOW = 300.0


class Supervisor:
    """Runs named background tasks and says when one failed for good (``failed``)."""

    def __init__(self, first_delay: float = 1.0) -> None:
        self.first_delay = first_delay  # seconds before the first restart; doubling from there
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.stopping = False  # the gateway is stopping: a task that ends is not restarted

    def start(
        self,
        name: str,
        body: Callable[[], Coroutine[Any, Any, None]],
        restart: bool = True,
    ) -> asyncio.Task[None]:
        """Run ``body()`` as a task named ``name``, restarting it when it ends (if allowed)."""
        task = asyncio.create_task(self._guard(name, body, restart), name=name)
        self.tasks[name] = task
        return task

    async def stop_task(self, name: str) -> None:
        """Stop one task on purpose (a source removed or changed by a reload): not a failure."""
        task = self.tasks.pop(name, None)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    def watch(self, name: str, task: asyncio.Task[None]) -> None:
        """A task made elsewhere (the buffer's writer) that may not end: its end is fatal."""
        self.tasks[name] = task
        task.add_done_callback(lambda t: self._ended(name, t))

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (self.stopping and task.exception() is None):
            return
        error = task.exception()
        if error is not None:
            log.error("task %s failed", name, exc_info=error)
        self.fail(f"{name} failed: {error!r}" if error else f"{name} ended")

    def fail(self, reason: str) -> None:
        """Stop the gateway: it cannot do its job."""
        if not self.failed.done():
            self.failed.set_result(reason)

    async def _guard(
        self, name: str, body: Callable[[], Coroutine[Any, Any, None]], restart: bool
    ) -> None:
        delays = backoff(base=self.first_delay, cap=30.0, floor=True)
        recent: list[float] = []
        seen: set[str] = set()
        while True:
            try:
                await body()
                if self.stopping:
                    return
                reason = "ended by itself"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping:
                    log.warning("task %s failed while stopping: %r", name, exc)
                    return
                reason = repr(exc)
                if reason not in seen:  # the traceback once per kind of failure
                    seen.add(reason)
                    log.error("task %s failed", name, exc_info=exc)
            now = time.monotonic()
            recent = [t for t in recent if now - t < RESTART_WINDOW] + [now]
            if not restart or len(recent) > MAX_RESTARTS:
                again = "" if not restart else f" ({len(recent)} times in {RESTART_WINDOW:.0f}s)"
                self.fail(f"task {name} {reason}{again}")
                return
            self.restarts[name] = self.restarts.get(name, 0) + 1
            delay = next(delays)
            log.error(
                "task %s %s; restarting it in %.1fs (restart %d)",
                name,
                reason,
                delay,
                self.restarts[name],
            )
            await asyncio.sleep(delay)
