"""Surviving a full disk: give up the reserve, make room, hand free pages back, hold it again.

In WAL mode a delete is a write, and a checkpoint may grow the database file, so on a full
filesystem SQLite could not even delete. The reserve file's blocks are released first; then
the acknowledged rows are already gone (the failed commit's releases are retried in the next
one) and the oldest batches are evicted, counted; the WAL is checkpointed and truncated and
the database's free pages are handed back to the filesystem, so the reserve can be held again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Collection
from pathlib import Path

import aiosqlite

from buffer import evict
from buffer.space import Reserve

log = logging.getLogger(__name__)


async def recover(
    db: aiosqlite.Connection, reserve: Reserve, need: int, held: Collection[int] = ()
) -> tuple[dict[str, int], str | None]:
    """Make at least ``need`` bytes of room after SQLite said the disk is full; returns the
    readings dropped per source (persisted), and why no room could be made (None if it was).
    Never raises for SQLite trouble: the commit that follows tells whether it worked."""
    if await asyncio.to_thread(reserve.release):
        log.warning("buffer: the disk is full; released the %d KiB reserve", reserve.size // 1024)
    dropped: dict[str, int] = {}
    problem = None
    try:
        await db.execute("BEGIN")
        upto = await evict.oldest_worth(db, max(need, reserve.size), held)
        dropped = await evict.drop_upto(db, upto, held)
        await db.execute("COMMIT")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        problem = str(exc)
        dropped = {}
    await give_back(db)
    # Held again only once room was really made: until then its blocks are SQLite's to use.
    if problem is None and await asyncio.to_thread(reserve.hold):
        log.info("buffer: room made on the full disk; the reserve is held again")
    return dropped, problem


async def give_back(db: aiosqlite.Connection) -> None:
    """Checkpoint and truncate the WAL, then hand free database pages to the filesystem."""
    with contextlib.suppress(sqlite3.Error):
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with contextlib.suppress(sqlite3.Error):
        async with db.execute("PRAGMA incremental_vacuum") as cur:
            await cur.fetchall()  # the pragma frees pages one step per row it returns
    with contextlib.suppress(sqlite3.Error):
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def keep_wal_small(db: aiosqlite.Connection, path: Path, limit: int) -> None:
    """Checkpoint when the WAL has grown past half its budget (a reader held it back)."""
    try:
        size = os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return
    if size > limit // 2:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("PRAGMA wal_checkpoint(RESTART)")
