"""The top-level wiring: the one module that imports connectors, buffer and publisher together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from buffer import Buffer
from connectors import connector_for
from gateway import __version__
from gateway.config import Config
from gateway.health import health_path, write_health
from gateway.models import epoch_ms
from gateway.publisher import Publisher
from gateway.runtime import SourceRunner

log = logging.getLogger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task[None]], patience: float = 5.0) -> None:
    """Cancel tasks and wait for them, cancelling again while one is still running.

    A library may swallow one cancellation (asyncio.wait_for does in Python 3.11 when its
    inner future completes at the same moment); shutdown must not hang on that.
    """
    pending = {t for t in tasks if not t.done()}
    for attempt in range(3):
        for task in pending:
            task.cancel()
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=patience)
        if pending:
            names = ", ".join(t.get_name() for t in pending)
            log.warning("still stopping after %.0fs: %s (attempt %d)", patience, names, attempt + 1)


class Gateway:
    """Buffer, publisher and one runner per source, started in order and stopped in reverse."""

    def __init__(self, config: Config) -> None:
        self.config = config
        cfg = config.gateway.buffer
        self.buffer = Buffer(
            cfg.path, max_bytes=cfg.max_bytes, max_age=cfg.max_age, durability=cfg.durability
        )
        self.publisher = Publisher(config, self.buffer)
        self.runners: list[SourceRunner] = []
        self.started = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down cleanly with a final flush."""
        await self.buffer.open()
        self.runners = [
            SourceRunner(
                src, src.tags, connector_for(src), self.buffer.add, self.buffer.last_seq(src.name)
            )
            for src in self.config.sources
        ]
        tasks: list[asyncio.Task[None]] = []
        try:
            # Publisher first, sources last: nothing is read before it has somewhere to go.
            publisher = asyncio.create_task(self.publisher.run(), name="publisher")
            metrics = asyncio.create_task(self._metrics_loop(), name="metrics")
            tasks = [publisher, metrics]
            for runner in self.runners:
                tasks.append(asyncio.create_task(runner.run(), name=f"source:{runner.source.name}"))
            log.info(
                "plantgate %s running: %d source(s), %d tag(s), buffer %s",
                __version__,
                len(self.runners),
                sum(len(r.tags) for r in self.runners),
                self.config.gateway.buffer.path,
            )
            self.started.set()
            stopped = asyncio.create_task(stop.wait(), name="stop")
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stopped:
                    continue
                # A task that ends by itself is a bug: say which, and stop cleanly rather than
                # run on half-alive.
                error = None if task.cancelled() else task.exception()
                log.error("task %s ended unexpectedly: %r; stopping", task.get_name(), error)
            stopped.cancel()
        finally:
            await self._shutdown(tasks)

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        # Reverse order: sources stop first, their last batches reach the buffer, the publisher
        # gets a bounded moment to have them acknowledged, then the buffer closes.
        log.info("stopping: sources first")
        for runner in self.runners:
            runner.stop()
        sources = [t for t in tasks if t.get_name().startswith("source:")]
        await stop_tasks(reversed(sources))
        log.info("stopping: flushing what the sources read last")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush(), 3.0)
        await self.publisher.stop()
        await stop_tasks(tasks)
        log.info("stopping: closing the buffer")
        await self.buffer.close()
        with contextlib.suppress(OSError):
            write_health(
                health_path(self.config.gateway.buffer.path), {"ts": 0, "state": "stopped"}
            )
        log.info("plantgate stopped")

    async def _flush(self) -> None:
        """Wait until what the sources queued is committed and, while online, acknowledged."""
        # Polls two components at once; the caller bounds it with a timeout.
        while self.buffer.queued:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        while self.publisher.online.is_set() and (await self.buffer.backlog())[0]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def metrics(self) -> dict[str, Any]:
        """A snapshot of every counter, as published on the metrics topic."""
        buffered, pub = self.buffer.stats, self.publisher.stats
        dropped = buffered.dropped
        return {
            "ts": epoch_ms(),
            "gateway": self.config.gateway.name,
            "readings": {
                "polled": sum(r.stats.readings for r in self.runners),
                "buffered": buffered.readings_added,
                "published": pub.readings_sent,
                "acknowledged": pub.readings_acked,
                "replayed": pub.replayed,
                "dropped": sum(dropped.values()),
            },
            "publisher": asdict(pub),
            "buffer": {**asdict(buffered), "queued": self.buffer.queued},
            "sources": {
                r.source.name: {
                    **asdict(r.stats),
                    "seq": r.seq,
                    "dropped": dropped.get(r.source.name, 0),
                }
                for r in self.runners
            },
        }

    async def _metrics_loop(self) -> None:
        """Publish the counters and refresh the health file, every metrics_interval."""
        interval = self.config.gateway.metrics_interval
        health = health_path(self.config.gateway.buffer.path)
        replayed, stamp = self.publisher.stats.replayed, time.monotonic()
        while True:
            snapshot = self.metrics()
            batches, readings, oldest = await self.buffer.backlog()
            age = None if oldest is None else max(0.0, snapshot["ts"] - oldest) / 1000
            snapshot["backlog"] = {
                "batches": batches,
                "readings": readings,
                "oldest_ts": oldest,
                "oldest_unsent_age_s": age,
            }
            now = time.monotonic()
            rate = (self.publisher.stats.replayed - replayed) / max(1e-9, now - stamp)
            snapshot["readings"]["replay_rate"] = round(rate, 1)
            replayed, stamp = self.publisher.stats.replayed, now
            try:
                await asyncio.to_thread(write_health, health, snapshot)
            except OSError as exc:
                log.warning("cannot write %s: %s", health, exc)
            self.publisher.publish_metrics(json.dumps(snapshot, separators=(",", ":")).encode())
            await asyncio.sleep(interval)
