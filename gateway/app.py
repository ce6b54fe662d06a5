"""The top-level wiring: the one module that imports connectors, buffer and publisher together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from buffer import Buffer
from connectors import WRITERS, connector_for
from gateway import __version__
from gateway.commands import Target, WriteDesk
from gateway.config import Config, load_config
from gateway.errors import ConfigError, GatewayFailed
from gateway.health import health_path, process_identity, write_health
from gateway.models import epoch_ms
from gateway.publisher import Publisher
from gateway.reload import Diff, diff, fingerprint, refusals, stamp
from gateway.runtime import SourceRunner
from gateway.session import JsonSession, Session
from gateway.sparkplug.session import SparkplugSession
from gateway.supervise import Supervisor

log = logging.getLogger(__name__)

WATCH_EVERY = 2.0  # seconds between two looks at the tag map's file (gateway.watch_config)


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

    def __init__(self, config: Config, path: Path | None = None) -> None:
        self.config = config
        self.path = path  # the tag map's file: reloaded from there (SIGHUP, reload, watch)
        self._reload = asyncio.Event()
        self.config_state: dict[str, Any] = {
            "loaded_at": epoch_ms(),
            "hash": fingerprint(path) if path is not None else None,
            "last_error": None,
        }
        cfg = config.gateway.buffer
        self.buffer = Buffer(
            cfg.path, max_bytes=cfg.max_bytes, max_age=cfg.max_age, durability=cfg.durability
        )
        self.desk = WriteDesk(config, self.buffer, self._target)
        self.publisher = Publisher(config, self.buffer, self._session())
        self.runners: list[SourceRunner] = []
        self.supervisor: Supervisor | None = None
        self.started = asyncio.Event()
        self.health = health_path(cfg.path)

    def _session(self) -> Session:
        """The output format's session: JSON, or the Sparkplug B edge node."""
        if self.config.mqtt.format == "sparkplug":
            return SparkplugSession(
                self.config,
                self.buffer,
                source_states=lambda: {r.source.name: r.stats.state for r in self.runners},
                desk=self.desk,
            )
        return JsonSession(self.config, self.buffer, self.desk)

    def _target(self, source: str, tag: str) -> Target | None:
        """Where a write command goes: the source's tag and its live connector."""
        for runner in self.runners:
            if runner.source.name == source:
                found = next((t for t in runner.tags if t.name == tag), None)
                if found is None:
                    return None
                connector = runner.connector
                writer = connector if isinstance(connector, WRITERS) else None
                return Target(runner.source, found, writer, runner.stats.state == "connected")
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down cleanly with a final flush.

        Raises GatewayFailed (after the same best-effort shutdown) when a task that may not be
        restarted died, or one kept failing.
        """
        await self.buffer.open()
        supervisor = self.supervisor = Supervisor()
        assert self.buffer.writer is not None
        supervisor.watch("buffer-writer", self.buffer.writer)
        self.runners = [
            SourceRunner(
                src, src.tags, connector_for(src), self.buffer.add, self.buffer.last_seq(src.name)
            )
            for src in self.config.sources
        ]
        failure: str | None = None
        try:
            # Publisher first, sources last: nothing is read before it has somewhere to go.
            supervisor.start("publisher", self.publisher.run)
            supervisor.start("metrics", self._metrics_loop)
            supervisor.start("reloader", self._reloader)
            for runner in self.runners:
                supervisor.start(f"source:{runner.source.name}", runner.run)
            log.info(
                "plantgate %s running: %d source(s), %d tag(s), buffer %s",
                __version__,
                len(self.runners),
                sum(len(r.tags) for r in self.runners),
                self.config.gateway.buffer.path,
            )
            self.started.set()
            stopped = asyncio.create_task(stop.wait(), name="stop")
            waits: list[asyncio.Future[Any]] = [stopped, supervisor.failed]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if supervisor.failed.done():
                failure = supervisor.failed.result()
                log.error("stopping: %s", failure)
        finally:
            await self._shutdown(list(supervisor.tasks.values()), failure)
        if failure is not None:
            raise GatewayFailed(failure)

    # -- hot reload ------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Reload the tag map from its file soon (SIGHUP, ``plantgate reload``)."""
        self._reload.set()

    async def _reloader(self) -> None:
        """Reload when asked, and when the file changes if ``gateway.watch_config`` is on."""
        seen = stamp(self.path) if self.path is not None else None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload.wait(), WATCH_EVERY)
            if self.path is None:
                self._reload.clear()
                continue
            if not self._reload.is_set():
                if not self.config.gateway.watch_config:
                    continue
                try:
                    now = stamp(self.path)
                except OSError:
                    continue  # being replaced: look again next time
                if now == seen:
                    continue
                log.info("reload: %s changed", self.path)
            self._reload.clear()
            with contextlib.suppress(OSError):
                seen = stamp(self.path)
            await self.reload()

    async def reload(self) -> bool:
        """Validate the tag map's file and apply what changed; False when it was refused (the
        running config stays, and the refusal is in the status and metrics)."""
        assert self.path is not None
        try:
            new = await asyncio.to_thread(load_config, self.path)
        except ConfigError as exc:
            return await self._refuse("; ".join(exc.problems), str(exc))
        refused = refusals(self.config, new)
        if refused:
            return await self._refuse("; ".join(refused), "\n  ".join(refused))
        change = diff(self.config, new)
        self.config_state = {
            "loaded_at": epoch_ms(),
            "hash": fingerprint(self.path),
            "last_error": None,
        }
        if not change.anything:
            log.info("reload: %s: nothing changed", self.path)
            await self._stamp_health()
            return True
        await self._apply(new, change)
        log.info("reload: %s applied: %s", self.path, change)
        await self._stamp_health()
        return True

    async def _refuse(self, short: str, full: str) -> bool:
        log.error("reload: %s refused, the running config stays: %s", self.path, full)
        self.config_state = {**self.config_state, "last_error": short}
        await self._stamp_health()
        return False

    async def _stamp_health(self) -> None:
        """Write the health file now (``plantgate reload`` reads the outcome from it)."""
        with contextlib.suppress(OSError):
            await asyncio.to_thread(write_health, self.health, self.metrics())

    async def _apply(self, new: Config, change: Diff) -> None:
        """Apply a validated new tag map: per source, then the broker, then the rest."""
        supervisor = self.supervisor
        assert supervisor is not None
        old_runners = {r.source.name: r for r in self.runners}
        seqs: dict[str, int] = {}
        for name in change.changed + change.removed:
            runner = old_runners[name]
            runner.stop()
            await supervisor.stop_task(f"source:{name}")
            seqs[name] = runner.seq  # the changed source continues from here
        self.config = new
        self.desk.config = new
        runners = []
        for src in new.sources:
            if src.name in change.changed or src.name in change.added:
                seq = seqs.get(src.name, self.buffer.last_seq(src.name))
                runner = SourceRunner(src, src.tags, connector_for(src), self.buffer.add, seq)
                supervisor.start(f"source:{src.name}", runner.run)
            else:
                runner = old_runners[src.name]
            runners.append(runner)
        self.runners = runners
        if change.mqtt:
            # A new connection with the new settings; what was in flight is re-sent from the
            # buffer, so nothing is lost.
            await self.publisher.stop()
            await supervisor.stop_task("publisher")
            self.publisher = Publisher(new, self.buffer, self._session())
            supervisor.start("publisher", self.publisher.run)
        else:
            self.publisher.config = new
            self.publisher.session.reconfigure(new, change.changed + change.added, change.removed)
        buffer = new.gateway.buffer
        await self.buffer.rebound(buffer.max_bytes, buffer.max_age, buffer.durability)

    async def _shutdown(self, tasks: list[asyncio.Task[None]], failure: str | None) -> None:
        # Reverse order: sources stop first, their last batches reach the buffer, the publisher
        # gets a bounded moment to have them acknowledged, then the buffer closes.
        log.info("stopping: sources first")
        if self.supervisor is not None:
            self.supervisor.stopping = True
        for runner in self.runners:
            runner.stop()
        sources = [t for t in tasks if t.get_name().startswith("source:")]
        await stop_tasks(reversed(sources))
        writer = self.buffer.writer
        if writer is not None and not writer.done():
            log.info("stopping: flushing what the sources read last")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(), 3.0)
        await self.desk.close()  # commands in hand get their result first
        await self.publisher.stop()
        await stop_tasks(t for t in tasks if t is not writer)
        log.info("stopping: closing the buffer")
        await self.buffer.close()
        final = {"ts": epoch_ms(), "state": "stopped" if failure is None else "failed"}
        if failure is not None:
            final["reason"] = failure
        with contextlib.suppress(OSError):
            write_health(self.health, final)
        log.info("plantgate stopped" if failure is None else "plantgate stopped after a failure")

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
        restarts = self.supervisor.restarts if self.supervisor is not None else {}
        per_source = {
            name: {k: getattr(buffered, k).get(name, 0) for k in ("dropped", "corrupt", "lost")}
            for name in (r.source.name for r in self.runners)
        }
        return {
            "ts": epoch_ms(),
            "state": "running",
            "config": dict(self.config_state),
            "gateway": self.config.gateway.name,
            "process": process_identity(),
            # health judges "readings are not moving" against this many seconds
            "stall_after_s": max(10.0, 3 * self.config.gateway.metrics_interval),
            "readings": {
                "polled": sum(r.stats.readings for r in self.runners),
                "buffered": buffered.readings_added,
                "published": pub.readings_sent,
                "acknowledged": pub.readings_acked,
                "replayed": pub.replayed,
                "dropped": sum(buffered.dropped.values()),
                "corrupt": sum(buffered.corrupt.values()),
                "lost": sum(buffered.lost.values()),
            },
            "publisher": {**asdict(pub), "restarts": restarts.get("publisher", 0)},
            "writes": dict(self.desk.counts),
            "buffer": {
                **asdict(buffered),
                "queued": self.buffer.queued,
                "oldest_queued_ms": self.buffer.oldest_queued_ms,
            },
            "sources": {
                r.source.name: {
                    **asdict(r.stats),
                    "seq": r.seq,
                    **per_source[r.source.name],
                    "restarts": restarts.get(f"source:{r.source.name}", 0),
                }
                for r in self.runners
            },
        }

    async def _metrics_loop(self) -> None:
        """Publish the counters and refresh the health file, every metrics_interval."""
        replayed, stamp = self.publisher.stats.replayed, time.monotonic()
        failing: str | None = None
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
            # max(0, ...): a reload that changed mqtt: starts a new publisher, counting from 0
            rate = max(0, self.publisher.stats.replayed - replayed) / max(1e-9, now - stamp)
            snapshot["readings"]["replay_rate"] = round(rate, 1)
            replayed, stamp = self.publisher.stats.replayed, now
            try:
                await asyncio.to_thread(write_health, self.health, snapshot)
            except OSError as exc:
                if failing != str(exc):  # e.g. a full disk: said once, not every interval
                    log.warning("cannot write %s: %s", self.health, exc)
                failing = str(exc)
            else:
                failing = None
            self.publisher.publish_metrics(json.dumps(snapshot, separators=(",", ":")).encode())
            await asyncio.sleep(self.config.gateway.metrics_interval)  # a reload may change it
