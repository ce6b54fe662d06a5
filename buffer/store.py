"""SQLite store-and-forward buffer: add a batch, take batches, release them once acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import aiosqlite

from buffer.codec import pack, unpack
from gateway.errors import StoreError
from gateway.models import Batch, Reading, epoch_ms

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    ts INTEGER NOT NULL,
    stored INTEGER NOT NULL,  -- epoch ms of the commit: max_age counts from here, not device time
    first_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0
);
"""


def move_aside(path: Path, aside: Path) -> None:
    """Rename a database and its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(Path(f"{aside}{suffix}"))


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A committed batch as read back for publishing; its readings are decoded on demand."""

    id: int
    source: str
    ts: int
    count: int
    payload: bytes  # the per_batch JSON array of its readings

    def readings(self) -> list[Reading]:
        """Decode the readings."""
        return unpack(self.payload)


@dataclass(slots=True)
class BufferStats:
    """Counters of the buffer, for metrics."""

    batches_added: int = 0
    readings_added: int = 0
    commits: int = 0
    released: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # readings evicted, per source
    write_errors: int = 0
    moved_aside: str | None = None  # where an unusable database file was moved at start


class Buffer:
    """Store-and-forward buffer; one writer task owns the write connection."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 2**30,
        max_age: float = 7 * 86400.0,
        durability: str = "normal",
        queue_limit: int = 200_000,  # readings waiting for their commit, at most
        page_limit: int | None = None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        # The WAL is truncated to this after each checkpoint; table pages get the rest of max_bytes.
        self.wal_limit = min(16 * 2**20, max_bytes // 4)
        self.max_age = max_age
        self.durability = durability
        self.queue_limit = queue_limit
        self.page_limit = page_limit
        self.stats = BufferStats()
        self._pending: deque[Batch] = deque()
        self._pending_readings = 0
        self._releases: list[int] = []
        self._released: set[int] = set()  # released, not yet deleted: never handed out again
        self._deleted_last: list[int] = []  # kept one more commit for reads begun before it
        self._last_seq: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._committed = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._last_evict = 0.0
        self._failing: str | None = None  # the commit error being retried, logged once
        self._chunk = 2**31  # batches per commit; shrinks while the disk is full
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the database; a corrupt file is moved aside and a new one started."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create buffer directory {self.path.parent}: {exc}") from exc
        if not os.access(self.path.parent, os.W_OK):
            raise StoreError(f"buffer directory {self.path.parent} is not writable")
        try:
            await self._connect()
        except sqlite3.OperationalError as exc:  # locked, read-only, I/O: not corruption
            await self._close_connections()
            raise StoreError(f"cannot open buffer {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            await self._close_connections()
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
            )
            log.error(
                "buffer %s is unusable (%s); moved aside to %s, starting a new one",
                self.path,
                exc,
                aside,
            )
            await asyncio.to_thread(move_aside, self.path, aside)
            self.stats.moved_aside = str(aside)  # published with the metrics
            await self._connect()
        self._writer = asyncio.create_task(self._write_loop(), name="buffer-writer")

    async def _connect(self) -> None:
        db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db = db
        await db.execute("PRAGMA journal_mode=WAL")
        if self.page_limit is not None:  # tests stand a full disk in with this
            async with db.execute(f"PRAGMA max_page_count={self.page_limit}"):
                pass
        sync = "FULL" if self.durability == "full" else "NORMAL"
        await db.execute(f"PRAGMA synchronous={sync}")
        await db.execute(f"PRAGMA journal_size_limit={self.wal_limit}")
        async with db.execute("PRAGMA quick_check") as cur:
            row = await cur.fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        async with db.execute("PRAGMA user_version") as cur:
            version = (await cur.fetchone() or (0,))[0]
        async with db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'batches'") as cur:
            has_tables = (await cur.fetchone() or (0,))[0] > 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"buffer {self.path} was written by a newer plantgate (schema {version})"
            )
        if has_tables and version < SCHEMA_VERSION:
            # No migration exists yet: an older layout is set aside like a corrupt file.
            raise sqlite3.DatabaseError(f"schema {version} is not {SCHEMA_VERSION}")
        await db.executescript(SCHEMA)
        await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        async with db.execute("SELECT name, last_seq, dropped FROM sources") as cur:
            for name, last_seq, dropped in await cur.fetchall():
                self._last_seq[name] = last_seq
                if dropped:
                    self.stats.dropped[name] = dropped
        # A second connection for reads: it sees only committed rows (WAL snapshot).
        self._reader = await aiosqlite.connect(
            f"file:{self.path}?mode=ro", uri=True, isolation_level=None
        )

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the database."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await asyncio.wait({self._writer})  # shielded: the writer finishes its commit
            self._writer = None
        await self._close_connections()

    async def _close_connections(self) -> None:
        for conn in (self._reader, self._db):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._reader = self._db = None

    # -- the transaction interface -----------------------------------------------------------

    def last_seq(self, source: str) -> int:
        """The last seq committed for a source (0 if none): sources continue from here."""
        return self._last_seq.get(source, 0)

    def add(self, batch: Batch) -> None:
        """Queue a batch for the next commit; never blocks. A full queue drops its oldest."""
        if not batch:
            return
        while self._pending and self._pending_readings + len(batch) > self.queue_limit:
            old = self._pending.popleft()
            self._pending_readings -= len(old)
            self._count_dropped(old.source, len(old))
            log.warning("buffer write queue full: dropped the oldest batch of %s", old.source)
        self._pending.append(batch)
        self._pending_readings += len(batch)
        self._wake.set()

    async def take(
        self, after: int, max_readings: int, up_to: int | None = None
    ) -> list[StoredBatch]:
        """Committed batches with ``after < id <= up_to``, oldest first, not yet released, up to
        ``max_readings`` readings (at least one batch): only what will be sent is decoded."""
        reader = self._require(self._reader)
        last = up_to if up_to is not None else 2**63 - 1
        chosen: list[int] = []
        total, cursor, full = 0, after, False
        while not full:
            # Only ids and counts first: payloads are read for the chosen rows alone. Rows
            # released but not yet deleted are skipped without ending the look.
            async with reader.execute(
                "SELECT id, count FROM batches WHERE id > ? AND id <= ? ORDER BY id LIMIT 1000",
                (cursor, last),
            ) as cur:
                index = list(await cur.fetchall())
            for id_, count in index:
                if id_ in self._released:
                    continue
                if chosen and total + count > max_readings:
                    full = True
                    break
                chosen.append(id_)
                total += count
            if len(index) < 1000:
                break
            cursor = index[-1][0]
        if not chosen:
            return []
        async with reader.execute(
            "SELECT id, source, ts, count, payload FROM batches WHERE id >= ? AND id <= ? "
            "ORDER BY id",
            (chosen[0], chosen[-1]),
        ) as cur:
            rows = await cur.fetchall()
        wanted = set(chosen)
        return [StoredBatch(*row) for row in rows if row[0] in wanted]

    def release(self, batch_id: int) -> None:
        """The broker acknowledged every message of this batch: delete it at the next commit."""
        if batch_id not in self._released:
            self._released.add(batch_id)
            self._releases.append(batch_id)
            self.stats.released += 1
            self._wake.set()

    async def max_id(self) -> int:
        """The newest committed batch id (0 when empty)."""
        reader = self._require(self._reader)
        async with reader.execute("SELECT COALESCE(MAX(id), 0) FROM batches") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def backlog(self) -> tuple[int, int, int | None]:
        """Batches, readings and the oldest batch's ts still in the buffer."""
        reader = self._require(self._reader)
        async with reader.execute(
            "SELECT COUNT(*), COALESCE(SUM(count), 0), MIN(ts) FROM batches"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), row[2]

    async def wait_committed(self, seen: int) -> None:
        """Wait until more than ``seen`` batches were committed (``stats.batches_added``).

        Taking the count before reading the buffer means a commit landing in between is never
        missed (clearing an event at wait time would lose it).
        """
        while self.stats.batches_added <= seen:
            self._committed.clear()
            await self._committed.wait()

    @property
    def queued(self) -> int:
        """Batches waiting for their commit."""
        return len(self._pending)

    # -- the writer --------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        closing_attempts = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending or self._releases:
                await self._commit()
                if self._pending:  # committed in chunks, or retrying a failed commit
                    self._wake.set()
            if time.monotonic() - self._last_evict > 1.0:
                self._last_evict = time.monotonic()
                await self._evict()
            if self._closing:
                if not self._pending and not self._releases:
                    return
                closing_attempts += 1
                if closing_attempts > 25:  # the disk stays full: closing must end anyway
                    for old in self._pending:
                        self._count_dropped(old.source, len(old))
                    log.error(
                        "buffer closed with %d batch(es) it could not commit", len(self._pending)
                    )
                    return

    async def _commit(self) -> None:
        db = self._require(self._db)
        batches = list(islice(self._pending, self._chunk))
        releases = self._releases
        self._releases = []
        now_ms = epoch_ms()
        rows = [(b.source, b.ts, now_ms, b.first_seq, len(b), pack(b)) for b in batches]
        last: dict[str, int] = {}
        for b in batches:
            last[b.source] = b.last_seq
        try:
            await db.execute("BEGIN")
            await db.executemany(
                "INSERT INTO batches (source, ts, stored, first_seq, count, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            await db.executemany(
                "INSERT INTO sources (name, last_seq) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET last_seq = excluded.last_seq",
                list(last.items()),
            )
            if releases:
                await db.executemany("DELETE FROM batches WHERE id = ?", [(i,) for i in releases])
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            self.stats.write_errors += 1
            if self._failing != str(exc):
                log.error(
                    "buffer commit failed (%s); %d batch(es) kept in memory, retrying",
                    exc,
                    len(batches),
                )
            self._failing = str(exc)
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                # The disk (or max_page_count) is full: what was acknowledged goes first, then
                # the oldest make room for twice what waits, and commits get smaller. When not
                # even one batch fits an emptied buffer, that batch is dropped. All counted.
                await self._delete(releases)
                evicted = await self._evict(room=2 * sum(len(r[5]) + 64 for r in rows))
                if not evicted and self._chunk == 1:
                    old = self._pending.popleft()
                    self._pending_readings -= len(old)
                    self._count_dropped(old.source, len(old))
                self._chunk = max(1, len(batches) // 2)
            else:
                self._releases = releases + self._releases
            await asyncio.sleep(0.2)
            self._wake.set()
            return
        if self._failing is not None:
            log.info("buffer commits work again")
            self._failing = None
        self._chunk = min(self._chunk * 2, 2**31)
        for _ in batches:
            self._pending_readings -= len(self._pending.popleft())
        # A take() that began before this commit may still return these rows: filter them once more.
        self._released.difference_update(self._deleted_last)
        self._deleted_last = releases
        self._last_seq.update(last)
        self.stats.commits += 1
        self.stats.batches_added += len(batches)
        self.stats.readings_added += sum(r[4] for r in rows)
        if batches:
            self._committed.set()

    async def _delete(self, ids: list[int]) -> None:
        """Delete acknowledged rows on their own (deleting needs no free space)."""
        if not ids:
            return
        db = self._require(self._db)
        try:
            await db.execute("BEGIN")
            await db.executemany("DELETE FROM batches WHERE id = ?", [(i,) for i in ids])
            await db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            self._releases = ids + self._releases
            return
        self._deleted_last.extend(ids)  # filtered from take() until the next commit

    async def _evict(self, room: int = 0) -> bool:
        """Drop the oldest batches beyond max_age and max_bytes, or to make ``room`` bytes when
        the disk is full; count what each source lost."""
        db = self._require(self._db)
        cutoff = int((time.time() - self.max_age) * 1000)
        async with db.execute(
            "SELECT COALESCE(MAX(id), 0) FROM batches WHERE stored < ?", (cutoff,)
        ) as cur:
            row = await cur.fetchone()
        upto = int(row[0]) if row else 0
        target = max(room, await self._pages_in_use() - (self.max_bytes - self.wal_limit))
        if target > 0:
            async with db.execute(
                "SELECT id, length(payload) FROM batches ORDER BY id LIMIT 100000"
            ) as cur:
                freed = 0
                async for id_, size in cur:
                    upto = max(upto, id_)
                    freed += size + 64  # the row's own overhead, roughly
                    if freed >= target:
                        break
        if upto <= 0:
            return False
        try:
            await db.execute("BEGIN")
            async with db.execute(
                "SELECT source, SUM(count) FROM batches WHERE id <= ? GROUP BY source", (upto,)
            ) as cur:
                lost = [(int(n), str(s)) for s, n in await cur.fetchall()]
            await db.executemany(
                "INSERT INTO sources (name, dropped) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET dropped = dropped + excluded.dropped",
                [(s, n) for n, s in lost],
            )
            await db.execute("DELETE FROM batches WHERE id <= ?", (upto,))
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            log.error("buffer eviction failed: %s", exc)
            return False
        for n, s in lost:
            self.stats.dropped[s] = self.stats.dropped.get(s, 0) + n
        if lost:
            log.warning(
                "buffer over its bounds: dropped oldest readings %s",
                ", ".join(f"{s}={n}" for n, s in lost),
            )
        return bool(lost)

    async def _pages_in_use(self) -> int:
        """Bytes of pages holding data (free pages are reused, so the file stops growing)."""
        db = self._require(self._db)
        values = []
        for pragma in ("page_count", "freelist_count", "page_size"):
            async with db.execute(f"PRAGMA {pragma}") as cur:
                row = await cur.fetchone()
                values.append(int(row[0]) if row else 0)
        pages, free, page_size = values
        return (pages - free) * page_size

    def _count_dropped(self, source: str, readings: int) -> None:
        self.stats.dropped[source] = self.stats.dropped.get(source, 0) + readings

    @staticmethod
    def _require(conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise StoreError("buffer is not open")
        return conn
