"""Upgrading a buffer written by an earlier plantgate, loudly and with nothing lost.

Schema 1 stored each batch as the JSON array of the ``per_batch`` layout. Schema 2 stores
neutral columns with a checksum (``buffer/rows.py``). The migration rewrites every row in one
transaction, keeping its id (so the order of the backlog is kept) and when it was stored (so
``max_age`` still counts from then). A row whose JSON cannot be read is quarantined and
counted as corrupt, never dropped silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from typing import Any

import aiosqlite

from buffer.rows import COLUMNS, encode
from gateway.models import Batch, Quality, Reading

log = logging.getLogger(__name__)

V2_BATCHES = """
CREATE TABLE batches_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    ts INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    tags BLOB NOT NULL,
    kind TEXT NOT NULL,
    vals BLOB NOT NULL,
    qualities BLOB NOT NULL,
    stamps BLOB,
    crc INTEGER NOT NULL
)
"""
QUARANTINE = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    moved INTEGER NOT NULL,
    reason TEXT NOT NULL,
    source TEXT, ts INTEGER, stored INTEGER, first_seq INTEGER, count INTEGER,
    tags BLOB, kind TEXT, vals BLOB, qualities BLOB, stamps BLOB, crc INTEGER
)
"""
CHUNK = 500
_QUALITY = {q.value: q for q in Quality}


def v1_batch(source: str, ts: int, payload: bytes) -> Batch:
    """A schema-1 row's batch (its payload is the per_batch readings array)."""
    readings = [
        Reading(d["tag"], d["value"], _QUALITY[d["quality"]], d["ts"], d["seq"])
        for d in json.loads(payload)
    ]
    return Batch(source, ts, readings)


async def migrate_v1(db: aiosqlite.Connection, chunk: int = CHUNK) -> None:
    """Rewrite a schema-1 buffer as schema 2, in one transaction."""
    async with db.execute("SELECT COUNT(*), COALESCE(SUM(count), 0) FROM batches") as cur:
        batches, readings = await cur.fetchone() or (0, 0)
    log.warning(
        "buffer: written by an earlier plantgate (schema 1); migrating %d batch(es), %d "
        "reading(s) to schema 2",
        batches,
        readings,
    )
    moved = 0
    corrupt: dict[str, int] = {}
    await db.execute("BEGIN")
    try:
        await db.execute(V2_BATCHES)
        await db.execute(QUARANTINE)
        for column in ("corrupt", "lost"):
            await db.execute(f"ALTER TABLE sources ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        after = 0
        while True:
            async with db.execute(
                "SELECT id, source, ts, stored, first_seq, count, payload FROM batches "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (after, chunk),
            ) as cur:
                rows = list(await cur.fetchall())
            if not rows:
                break
            after = rows[-1][0]
            good: list[tuple[Any, ...]] = []
            for id_, source, ts, stored, first_seq, count, payload in rows:
                try:
                    batch = v1_batch(source, ts, payload)
                    if len(batch) != count or batch.first_seq != first_seq:
                        raise ValueError("its readings disagree with its seq and count")
                    good.append((id_, stored, *encode(batch)))
                except (ValueError, KeyError, TypeError) as exc:
                    corrupt[source] = corrupt.get(source, 0) + count
                    await db.execute(
                        "INSERT INTO quarantine (id, moved, reason, source, ts, stored, "
                        "first_seq, count, vals) VALUES (?, strftime('%s') * 1000, ?, ?, ?, ?, "
                        "?, ?, ?)",
                        (
                            id_,
                            f"schema 1 row unreadable: {exc}",
                            source,
                            ts,
                            stored,
                            first_seq,
                            count,
                            payload,
                        ),
                    )
            await db.executemany(
                f"INSERT INTO batches_v2 (id, stored, {COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                good,
            )
            moved += len(good)
        await db.executemany(
            "UPDATE sources SET corrupt = corrupt + ? WHERE name = ?",
            [(n, s) for s, n in corrupt.items()],
        )
        await db.execute("DROP TABLE batches")
        await db.execute("ALTER TABLE batches_v2 RENAME TO batches")
        await db.execute("PRAGMA user_version = 2")
        await db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise
    log.warning(
        "buffer: migrated %d batch(es) to schema 2%s",
        moved,
        f"; quarantined the unreadable ones: {corrupt}" if corrupt else "",
    )
    # A schema-1 file has no incremental vacuum: switching it on takes one VACUUM (room for a
    # copy of the file). Without it a full disk is still survived, just less gracefully.
    try:
        await db.execute("VACUUM")
    except sqlite3.Error as exc:
        log.warning("buffer: could not VACUUM after the migration (%s); continuing", exc)
