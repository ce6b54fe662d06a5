"""SQLite store-and-forward buffer: add a batch, take batches, release them once acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from buffer import diskfull, evict
from buffer.latest import LatestValues
from buffer.marks import SeqMarks
from buffer.migrate import migrate_v1
from buffer.rows import COLUMNS, Row, RowCorrupt, StoredBatch, TagSets, decode, encode
from buffer.salvage import Salvage, salvage
from buffer.space import PAGE, Budget, Reserve
from gateway.errors import StoreCorrupt, StoreError
from gateway.models import Batch, epoch_ms

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    ts INTEGER NOT NULL,
    stored INTEGER NOT NULL,  -- epoch ms of the commit: max_age counts from here, not device time
    first_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    tags BLOB NOT NULL,
    kind TEXT NOT NULL,
    vals BLOB NOT NULL,
    qualities BLOB NOT NULL,
    stamps BLOB,
    crc INTEGER NOT NULL
);
-- Rows that failed their checksum: never published, kept for inspection (the newest few).
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    moved INTEGER NOT NULL,
    reason TEXT NOT NULL,
    source TEXT, ts INTEGER, stored INTEGER, first_seq INTEGER, count INTEGER,
    tags BLOB, kind TEXT, vals BLOB, qualities BLOB, stamps BLOB, crc INTEGER
);
-- Writes commanded by MES: every command, its result and the values before and after.
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,       -- epoch ms of the result
    source TEXT NOT NULL,
    tag TEXT NOT NULL,
    record TEXT NOT NULL,      -- the whole entry, as JSON
    published INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,  -- evicted by the bounds or a full disk
    corrupt INTEGER NOT NULL DEFAULT 0,  -- quarantined: failed their checksum
    lost INTEGER NOT NULL DEFAULT 0      -- gone with a damaged database file
);
PRAGMA user_version = {SCHEMA_VERSION};
"""
QUARANTINE_KEPT = 100  # quarantined rows kept for inspection; older ones are deleted
AUDIT_KEPT = 10_000  # published audit entries kept for `plantgate audit`; unpublished: all
SLOW_DOWN = 0.2  # seconds between retries of a failing commit
REPORT_EVERY = 10.0  # seconds between two reports of ongoing drops or a full disk
FIT_EVERY = 10.0  # seconds between two looks at the filesystem's free space


def move_aside(path: Path, aside: Path) -> None:
    """Rename a database and its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(Path(f"{aside}{suffix}"))


def is_full(exc: sqlite3.Error) -> bool:
    """True for SQLite's 'database or disk is full' (by its error code, not its text)."""
    return (exc.sqlite_errorcode & 0xFF) == sqlite3.SQLITE_FULL


@dataclass(slots=True)
class BufferStats:
    """Counters of the buffer, for metrics."""

    batches_added: int = 0
    readings_added: int = 0
    commits: int = 0
    released: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # readings evicted, per source
    corrupt: dict[str, int] = field(default_factory=dict)  # readings quarantined, per source
    lost: dict[str, int] = field(default_factory=dict)  # readings lost with a damaged file
    seq_jumps: dict[str, int] = field(default_factory=dict)  # source -> first seq after a jump
    write_errors: int = 0
    disk_full: bool = False
    disk_full_events: int = 0  # times a commit found the disk (or the database) full
    last_commit_ms: int = 0  # epoch ms of the last successful commit
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
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.budget = Budget.of(max_bytes)  # fitted to the filesystem at open, then now and then
        self.max_age = max_age
        self.durability = durability
        self.queue_limit = queue_limit
        self.stats = BufferStats()
        self.latest = LatestValues()
        self.marks = SeqMarks(Path(f"{path}.marks"))
        self.reserve = Reserve(path, self.budget.reserve)
        self._tagsets = TagSets()
        self._pending: deque[Batch] = deque()
        self._pending_readings = 0
        self._in_commit = 0  # the oldest queued batches that the writer is committing now
        self._unsaved_drops: dict[str, int] = {}  # dropped from the queue, not yet persisted
        self._releases: list[int] = []
        self._released: set[int] = set()  # released, not yet deleted: never handed out again
        self._held: set[int] = set()  # being published: never evicted meanwhile
        self._evicting = asyncio.Lock()  # eviction waits for a take() to hold what it read
        self._deleted_last: list[int] = []  # kept one more commit for reads begun before it
        self._bad: dict[int, str] = {}  # ids that failed their checksum -> why; to quarantine
        self._audits: list[tuple[tuple[int, str, str, str], asyncio.Future[int]]] = []
        self._audits_published: list[int] = []
        self._last_seq: dict[str, int] = {}
        self._max_id = 0
        self._wake = asyncio.Event()
        self._committed = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._last_evict = 0.0
        self._last_fit = time.monotonic()
        self._failing: str | None = None  # the commit error being retried, logged once
        self._room_failing: str | None = None  # why no room could be made on a full disk
        self._reported = 0.0
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the database; a damaged file is moved aside, what can be read of
        it is salvaged into a new one, and seq continues above everything ever committed."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create buffer directory {self.path.parent}: {exc}") from exc
        if not os.access(self.path.parent, os.W_OK):
            raise StoreError(f"buffer directory {self.path.parent} is not writable")
        marks = await asyncio.to_thread(self.marks.load)
        existed = self.path.exists()
        saved: Salvage | None = None
        try:
            await self._connect()
        except sqlite3.OperationalError as exc:  # locked, read-only, I/O: not damage
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
            saved = await asyncio.to_thread(salvage, aside, self.path)
            await self._load_state()
            log.warning(
                "buffer: salvaged %d batch(es) from the damaged file; last seqs %s; lost %s",
                saved.rows,
                saved.last_seq or "unreadable",
                {n: c[2] for n, c in saved.counters.items() if c[2]} or "none counted",
            )
        if saved is not None or not existed:
            self._continue_seqs(marks, exact=saved.exact if saved is not None else set())
        await self._fit_budget()
        if not await asyncio.to_thread(self.reserve.hold):
            log.warning(
                "buffer: no room for the %d KiB reserve beside %s; a full disk will cost more "
                "readings",
                self.reserve.size // 1024,
                self.path,
            )
        self.writer = asyncio.create_task(self._write_loop(), name="buffer-writer")

    async def _connect(self) -> None:
        db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db = db
        # Before any table exists: free pages can then be handed back to the filesystem.
        await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA busy_timeout=5000")
        sync = "FULL" if self.durability == "full" else "NORMAL"
        await db.execute(f"PRAGMA synchronous={sync}")
        await db.execute(f"PRAGMA journal_size_limit={self.budget.wal}")
        await db.execute(f"PRAGMA wal_autocheckpoint={self.budget.wal // 2 // PAGE}")
        check = await self._pragma("quick_check")
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check or 'no answer'}")
        version = int(await self._pragma("user_version") or 0)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"buffer {self.path} was written by a newer plantgate (schema {version})"
            )
        if version == 1:
            await migrate_v1(db)
        await db.executescript(SCHEMA)
        # The hard bound of the database file; eviction keeps it from being reached.
        await self._pragma(f"max_page_count={self.budget.pages}")
        await self._load_state()
        # A second connection for reads: it sees only committed rows (WAL snapshot).
        self._reader = await aiosqlite.connect(
            f"file:{self.path}?mode=ro", uri=True, isolation_level=None
        )

    async def _load_state(self) -> None:
        """Each source's last seq and counters, and the newest batch id, from the database."""
        db = self._require(self._db)
        async with db.execute("SELECT name, last_seq, dropped, corrupt, lost FROM sources") as cur:
            for name, last_seq, dropped, corrupt, lost in await cur.fetchall():
                self._last_seq[name] = last_seq
                for counter, n in (
                    (self.stats.dropped, dropped),
                    (self.stats.corrupt, corrupt),
                    (self.stats.lost, lost),
                ):
                    if n:
                        counter[name] = n
        async with db.execute("SELECT COALESCE(MAX(id), 0) FROM batches") as cur:
            self._max_id = int((await cur.fetchone() or (0,))[0])

    async def rebound(self, max_bytes: int, max_age: float, durability: str) -> None:
        """New bounds from a reloaded tag map (the path cannot change while running)."""
        self.max_age = max_age
        if max_bytes != self.max_bytes:
            self.max_bytes = max_bytes
            self.budget = Budget.of(max_bytes + 1)  # anything different: refitted below
            await self._fit_budget()
        if durability != self.durability:
            self.durability = durability
            await self._pragma(f"synchronous={'FULL' if durability == 'full' else 'NORMAL'}")

    async def _fit_budget(self) -> None:
        """Bound the buffer by ``max_bytes`` or by what its filesystem can hold, if less: the
        buffer then evicts before the disk is full (said when the bound changes)."""
        budget = await asyncio.to_thread(Budget.fitted, self.max_bytes, self.path)
        if abs(budget.max_bytes - self.budget.max_bytes) <= self.budget.max_bytes // 20:
            return  # the same within 5%: not worth a change
        if budget.max_bytes < self.max_bytes:
            log.warning(
                "buffer: max_bytes is %.1f MiB but its filesystem can give %.1f MiB; bounding "
                "the buffer at that",
                self.max_bytes / 2**20,
                budget.max_bytes / 2**20,
            )
        elif self.budget.max_bytes < self.max_bytes:
            log.info("buffer: the filesystem has room again; bounding at max_bytes")
        self.budget = budget
        db = self._require(self._db)
        pages = int(await self._pragma("page_count") or 0)
        await self._pragma(f"max_page_count={max(budget.pages, pages)}")
        await db.execute(f"PRAGMA journal_size_limit={budget.wal}")
        await db.execute(f"PRAGMA wal_autocheckpoint={budget.wal // 2 // PAGE}")
        if self.reserve.size != budget.reserve:
            await asyncio.to_thread(self.reserve.release)
            self.reserve.size = budget.reserve

    async def _pragma(self, pragma: str) -> str | None:
        db = self._require(self._db)
        async with db.execute(f"PRAGMA {pragma}") as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    def _continue_seqs(self, marks: dict[str, int], exact: set[str]) -> None:
        """After a lost or damaged database, seq continues above the high-water marks where the
        file's own last seqs could not be read: a jump, counted, never a seq used twice."""
        for source, mark in marks.items():
            known = self._last_seq.get(source, 0)
            if source not in exact and mark > known:
                self._last_seq[source] = mark
                self.stats.seq_jumps[source] = mark + 1
                log.error(
                    "%s: the buffer's database was lost; seq continues at %d (its high-water "
                    "mark; the last seq known is %s): readings not yet delivered before the "
                    "loss are lost",
                    source,
                    mark + 1,
                    known or "unknown",
                )

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the database."""
        self._closing = True
        self._wake.set()
        if self.writer is not None:
            await asyncio.wait({self.writer})  # shielded: the writer finishes its commit
            self.writer = None
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
        # Batches being committed right now are not the queue's to drop.
        while len(self._pending) > self._in_commit and (
            self._pending_readings + len(batch) > self.queue_limit
        ):
            old = self._pending[self._in_commit]
            del self._pending[self._in_commit]
            self._pending_readings -= len(old)
            self._count_dropped(old.source, len(old))
        self._pending.append(batch)
        self._pending_readings += len(batch)
        self._wake.set()

    async def take(
        self, after: int, max_readings: int, up_to: int | None = None
    ) -> list[StoredBatch]:
        """Committed batches with ``after < id <= up_to``, oldest first, not yet released, up to
        ``max_readings`` readings (at least one batch): only what will be sent is decoded.

        A row that fails its checksum is left out and quarantined, never returned. The batches
        returned are held (see :meth:`hold`): the caller lets go of those it does not send.
        """
        async with self._evicting:  # no eviction between reading a row and holding it
            batches = await self._take(after, max_readings, up_to)
            self._held.update(b.id for b in batches)
        return batches

    async def _take(self, after: int, max_readings: int, up_to: int | None) -> list[StoredBatch]:
        reader = self._require(self._reader)
        last = up_to if up_to is not None else 2**63 - 1
        chosen: list[int] = []
        total, cursor, full = 0, after, False
        skip = self._released
        while not full:
            # Only ids and counts first: blobs are read for the chosen rows alone. Rows
            # released but not yet deleted are skipped without ending the look.
            async with reader.execute(
                "SELECT id, count FROM batches WHERE id > ? AND id <= ? ORDER BY id LIMIT 1000",
                (cursor, last),
            ) as cur:
                index = list(await cur.fetchall())
            for id_, count in index:
                if id_ in skip or id_ in self._bad:
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
        try:
            rows = await self._rows(reader, chosen[0], chosen[-1])
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(f"buffer {self.path}: cannot read: {exc}") from exc
            rows = await self._rows_one_by_one(reader, chosen)
        wanted = set(chosen)
        out = []
        for id_, row in rows:
            if id_ not in wanted:
                continue
            try:
                out.append(decode(id_, row, self._tagsets))
            except RowCorrupt as exc:
                self._quarantine(id_, row[0], row[2], row[3], str(exc))
        return out

    @staticmethod
    async def _rows(reader: aiosqlite.Connection, first: int, last: int) -> list[tuple[int, Row]]:
        async with reader.execute(
            f"SELECT id, {COLUMNS} FROM batches WHERE id >= ? AND id <= ? ORDER BY id",
            (first, last),
        ) as cur:
            return [(row[0], tuple(row[1:])) for row in await cur.fetchall()]

    async def _rows_one_by_one(
        self, reader: aiosqlite.Connection, ids: list[int]
    ) -> list[tuple[int, Row]]:
        """SQLite refused a range of rows (a damaged record): find which, keep the others."""
        rows = []
        for id_ in ids:
            try:
                rows += await self._rows(reader, id_, id_)
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreError(f"buffer {self.path}: cannot read: {exc}") from exc
                self._quarantine(id_, None, None, None, f"unreadable: {exc}")
        return rows

    def _quarantine(
        self, id_: int, source: str | None, first: int | None, count: int | None, why: str
    ) -> None:
        if id_ in self._bad:
            return
        self._bad[id_] = why
        seqs = f"seqs {first}..{first + count - 1}" if first and count else "seqs unknown"
        log.error(
            "buffer: batch %d of %s (%s) is damaged (%s); quarantined, not published",
            id_,
            source or "an unknown source",
            seqs,
            why,
        )
        self._wake.set()

    def hold(self, batch_id: int) -> None:
        """This batch is being published: eviction leaves it alone until it is released (the
        broker acknowledged it) or let go (the connection broke before that)."""
        self._held.add(batch_id)

    def let_go(self, batch_ids: Iterable[int]) -> None:
        """These batches are no longer being published (they stay buffered)."""
        self._held.difference_update(batch_ids)

    def release(self, batch_id: int) -> None:
        """The broker acknowledged every message of this batch: delete it at the next commit.

        It stays held until that commit: it was delivered, so it is never counted as dropped.
        """
        if batch_id not in self._released:
            self._released.add(batch_id)
            self._releases.append(batch_id)
            self.stats.released += 1
            self._wake.set()

    async def audit(self, at: int, source: str, tag: str, record: str) -> int:
        """Commit an audit entry (a write command and its result); returns its id once
        committed."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._audits.append(((at, source, tag, record), done))
        self._wake.set()
        return await done

    def audit_published(self, audit_id: int) -> None:
        """The broker acknowledged an audit entry's messages."""
        self._audits_published.append(audit_id)
        self._wake.set()

    async def audit_pending(self) -> list[tuple[int, str]]:
        """Audit entries not yet published (id, record), oldest first."""
        reader = self._require(self._reader)
        async with reader.execute(
            "SELECT id, record FROM audit WHERE published = 0 ORDER BY id"
        ) as cur:
            return [(int(i), str(r)) for i, r in await cur.fetchall()]

    @property
    def max_id(self) -> int:
        """The newest committed batch id (0 when empty)."""
        return self._max_id

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

    @property
    def oldest_queued_ms(self) -> int | None:
        """Epoch ms of the oldest batch waiting for its commit (None when none waits)."""
        return self._pending[0].ts if self._pending else None

    # -- the writer --------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        closing_attempts = 0
        while True:
            with contextlib.suppress(TimeoutError):  # housekeeping runs even when all is quiet
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            work = (
                self._pending
                or self._releases
                or self._bad
                or self._unsaved_drops
                or self._audits
                or self._audits_published
            )
            if work and await self._commit() and self._pending:
                self._wake.set()  # committed in chunks
            if time.monotonic() - self._last_evict > 1.0:
                self._last_evict = time.monotonic()
                await self._housekeeping()
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

    def _chunk(self) -> tuple[list[Batch], list[Row]]:
        """The oldest queued batches, up to one commit's worth of bytes, encoded."""
        batches: list[Batch] = []
        rows: list[Row] = []
        size = 0
        for batch in self._pending:
            if rows and size > self.budget.commit_bytes:
                break
            row = encode(batch)
            batches.append(batch)
            rows.append(row)
            size += row_bytes(row)
        return batches, rows

    async def _commit(self) -> bool:
        """One transaction: the oldest queued batches, releases and quarantines, within the
        bounds. False when it failed (it is retried; nothing is lost from the queue)."""
        db = self._require(self._db)
        batches, rows = self._chunk()
        last = {b.source: b.last_seq for b in batches}
        if last and not self.marks.covers(last):
            await asyncio.to_thread(self.marks.advance, last)
        releases, self._releases = self._releases, []
        audits, self._audits = self._audits, []
        published, self._audits_published = self._audits_published, []
        bad = dict(self._bad)
        drops = dict(self._unsaved_drops)
        now_ms = epoch_ms()
        self._in_commit = len(batches)
        try:
            async with self._evicting:
                newest, evicted, corrupt = await self._transaction(
                    db, rows, last, releases, bad, drops, now_ms, audits, published
                )
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            self._in_commit = 0
            self._releases = releases + self._releases
            self._audits = audits + self._audits
            self._audits_published = published + self._audits_published
            await self._commit_failed(exc, rows)
            return False
        self._in_commit = 0
        if self._failing is not None:
            log.info("buffer commits work again")
            self._failing = None
            self.stats.disk_full = False
        for batch in batches:
            self._pending.popleft()
            self._pending_readings -= len(batch)
            self.latest.update(batch)
        # A take() that began before this commit may still return these rows: filter them once more.
        self._released.difference_update(self._deleted_last)
        self._deleted_last = releases
        self._held.difference_update(releases)
        for source, n in drops.items():
            self._unsaved_drops[source] -= n
            if not self._unsaved_drops[source]:
                del self._unsaved_drops[source]
        for id_ in bad:
            self._bad.pop(id_, None)
        self._add_counts(self.stats.corrupt, corrupt)
        self._add_counts(self.stats.dropped, evicted)
        self._report_drops(evicted)
        self._last_seq.update(last)
        self.stats.commits += 1
        self.stats.last_commit_ms = now_ms
        self._max_id = newest
        if rows:
            self.stats.batches_added += len(rows)
            self.stats.readings_added += sum(r[3] for r in rows)
            self._committed.set()
        return True

    async def _transaction(
        self,
        db: aiosqlite.Connection,
        rows: list[Row],
        last: dict[str, int],
        releases: list[int],
        bad: dict[int, str],
        drops: dict[str, int],
        now_ms: int,
        audits: list[tuple[tuple[int, str, str, str], asyncio.Future[int]]],
        published: list[int],
    ) -> tuple[int, dict[str, int], dict[str, int]]:
        """The commit itself: deletes, room, inserts, seqs, counters, quarantine. Returns the
        newest batch id and the readings evicted and quarantined, per source."""
        newest, corrupt = self._max_id, {}
        await db.execute("BEGIN")
        if releases:
            await db.executemany("DELETE FROM batches WHERE id = ?", [(i,) for i in releases])
        evicted = await evict.make_room(
            db, sum(row_bytes(r) for r in rows), self.budget.data * 9 // 10, self._held
        )
        if rows:
            await db.executemany(
                f"INSERT INTO batches (stored, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(now_ms, *row) for row in rows],
            )
            async with db.execute("SELECT last_insert_rowid()") as cur:
                newest = int((await cur.fetchone() or (0,))[0])
        await db.executemany(
            "INSERT INTO sources (name, last_seq) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET last_seq = excluded.last_seq",
            list(last.items()),
        )
        if drops:
            await evict.count_dropped(db, drops)
        if bad:
            corrupt = await self._move_to_quarantine(db, bad, now_ms)
        ids = []
        for entry, _ in audits:
            async with db.execute(
                "INSERT INTO audit (at, source, tag, record) VALUES (?, ?, ?, ?)", entry
            ) as cur:
                ids.append(cur.lastrowid)
        if published:
            await db.executemany(
                "UPDATE audit SET published = 1 WHERE id = ?", [(i,) for i in published]
            )
            await db.execute(
                "DELETE FROM audit WHERE published = 1 AND id < "
                "(SELECT COALESCE(MIN(id), 0) FROM (SELECT id FROM audit WHERE published = 1 "
                "ORDER BY id DESC LIMIT ?))",
                (AUDIT_KEPT,),
            )
        await db.execute("COMMIT")
        for (_, done), id_ in zip(audits, ids, strict=True):
            if not done.done():
                done.set_result(int(id_ or 0))
        return newest, evicted, corrupt

    async def _commit_failed(self, exc: sqlite3.Error, rows: list[Row]) -> None:
        self.stats.write_errors += 1
        if self._failing != str(exc):
            log.error(
                "buffer commit failed (%s); %d batch(es) kept in memory, retrying",
                exc,
                len(self._pending),
            )
        self._failing = str(exc)
        if is_full(exc):
            if not self.stats.disk_full:
                self.stats.disk_full_events += 1
            self.stats.disk_full = True
            async with self._evicting:
                freed, problem = await diskfull.recover(
                    self._require(self._db),
                    self.reserve,
                    need=2 * sum(map(row_bytes, rows)),
                    held=self._held,
                )
            if problem is not None and self._room_failing != problem:
                log.error("buffer: cannot make room on the full disk: %s", problem)
            self._room_failing = problem
            self._add_counts(self.stats.dropped, freed)
            self._report_drops(freed, disk_full=True)
            if not freed and self._pending:
                # Nothing left to evict and still no room: the oldest waiting batch goes.
                old = self._pending.popleft()
                self._pending_readings -= len(old)
                self._count_dropped(old.source, len(old))
        await asyncio.sleep(SLOW_DOWN)
        self._wake.set()

    async def _move_to_quarantine(
        self, db: aiosqlite.Connection, bad: dict[int, str], now_ms: int
    ) -> dict[str, int]:
        """Move damaged rows out of the batches table (inside the open transaction)."""
        counts: dict[str, int] = {}
        for id_, why in bad.items():
            try:
                async with db.execute(
                    "SELECT source, count FROM batches WHERE id = ?", (id_,)
                ) as cur:
                    found = await cur.fetchone()
                await db.execute(
                    f"INSERT OR REPLACE INTO quarantine (id, moved, reason, stored, {COLUMNS}) "
                    f"SELECT id, ?, ?, stored, {COLUMNS} FROM batches WHERE id = ?",
                    (now_ms, why, id_),
                )
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise
                found = None  # not even copyable: deleted below, counted if we can
                await db.execute(
                    "INSERT OR REPLACE INTO quarantine (id, moved, reason) VALUES (?, ?, ?)",
                    (id_, now_ms, f"{why}; not copyable: {exc}"),
                )
            await db.execute("DELETE FROM batches WHERE id = ?", (id_,))
            if found is not None:
                source, count = str(found[0]), int(found[1])
                counts[source] = counts.get(source, 0) + count
        await db.executemany(
            "INSERT INTO sources (name, corrupt) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET corrupt = corrupt + excluded.corrupt",
            list(counts.items()),
        )
        await db.execute(
            "DELETE FROM quarantine WHERE id NOT IN "
            "(SELECT id FROM quarantine ORDER BY id DESC LIMIT ?)",
            (QUARANTINE_KEPT,),
        )
        return counts

    async def _housekeeping(self) -> None:
        """Once a second: drop what is older than max_age, keep the WAL small, hold the reserve."""
        db = self._require(self._db)
        cutoff = epoch_ms() - int(self.max_age * 1000)
        try:
            async with self._evicting:
                await db.execute("BEGIN")
                upto = await evict.expired_upto(db, cutoff)
                dropped = await evict.drop_upto(db, upto, self._held)
                await db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            if self._failing != str(exc):
                log.error("buffer eviction by age failed: %s", exc)
            return
        self._add_counts(self.stats.dropped, dropped)
        self._report_drops(dropped)
        await diskfull.keep_wal_small(db, self.path, self.budget.wal)
        if time.monotonic() - self._last_fit > FIT_EVERY:
            self._last_fit = time.monotonic()
            await self._fit_budget()
        if not self.stats.disk_full and not self.reserve.held:
            await asyncio.to_thread(self.reserve.hold)

    def _report_drops(self, dropped: dict[str, int], disk_full: bool = False) -> None:
        """Say once per REPORT_EVERY that readings are being dropped, and why."""
        if not dropped or time.monotonic() - self._reported < REPORT_EVERY:
            return
        self._reported = time.monotonic()
        why = "the disk is full" if disk_full else "the buffer is over its bounds"
        total = ", ".join(f"{s}={n}" for s, n in sorted(self.stats.dropped.items()))
        log.warning(
            "buffer: %s: dropped the oldest readings (%s); dropped so far: %s",
            why,
            ", ".join(f"{s}={n}" for s, n in sorted(dropped.items())),
            total,
        )

    def _count_dropped(self, source: str, readings: int) -> None:
        self.stats.dropped[source] = self.stats.dropped.get(source, 0) + readings
        self._unsaved_drops[source] = self._unsaved_drops.get(source, 0) + readings
        self._report_drops({source: readings}, disk_full=self.stats.disk_full)
        self._wake.set()  # persisted with the next commit

    @staticmethod
    def _add_counts(counter: dict[str, int], add: dict[str, int]) -> None:
        for source, n in add.items():
            counter[source] = counter.get(source, 0) + n

    @staticmethod
    def _require(conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise StoreError("buffer is not open")
        return conn


def row_bytes(row: Row) -> int:
    """What a stored row's blobs take, roughly its share of the database."""
    return len(row[4]) + len(row[6]) + len(row[7]) + (len(row[8]) if row[8] else 0) + 64


__all__ = ["Buffer", "BufferStats", "StoreCorrupt", "StoredBatch"]
