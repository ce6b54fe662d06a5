"""The eviction policy: which batches go when the buffer is over its bounds, oldest first.

Every function here runs inside the writer's open transaction, so a batch is deleted and its
readings counted as dropped (per source, in the ``sources`` table) in the same commit.
"""

from __future__ import annotations

import aiosqlite

from buffer.space import PAGE

ROW_OVERHEAD = 64  # bytes a row costs beyond its blobs (record header, b-tree cell), roughly
ROW_BYTES = "length(tags) + length(vals) + length(qualities) + ifnull(length(stamps), 0)"


async def used_bytes(db: aiosqlite.Connection) -> int:
    """Bytes of database pages holding data (free pages are reused before the file grows)."""
    values = []
    for pragma in ("page_count", "freelist_count"):
        async with db.execute(f"PRAGMA {pragma}") as cur:
            row = await cur.fetchone()
            values.append(int(row[0]) if row else 0)
    return (values[0] - values[1]) * PAGE


async def oldest_worth(db: aiosqlite.Connection, nbytes: int) -> int:
    """The id up to which the oldest batches hold at least ``nbytes`` (0: none)."""
    upto, freed = 0, 0
    async with db.execute(f"SELECT id, {ROW_BYTES} FROM batches ORDER BY id LIMIT 100000") as cur:
        async for id_, size in cur:
            upto = id_
            freed += size + ROW_OVERHEAD
            if freed >= nbytes:
                break
    return upto


async def expired_upto(db: aiosqlite.Connection, cutoff_ms: int) -> int:
    """The newest id of the batches stored before ``cutoff_ms`` (0: none)."""
    async with db.execute(
        "SELECT COALESCE(MAX(id), 0) FROM batches WHERE stored < ?", (cutoff_ms,)
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def drop_upto(db: aiosqlite.Connection, upto: int) -> dict[str, int]:
    """Delete every batch with ``id <= upto`` and count its readings as dropped, per source."""
    if upto <= 0:
        return {}
    async with db.execute(
        "SELECT source, SUM(count) FROM batches WHERE id <= ? GROUP BY source", (upto,)
    ) as cur:
        lost = {str(s): int(n) for s, n in await cur.fetchall()}
    await count_dropped(db, lost)
    await db.execute("DELETE FROM batches WHERE id <= ?", (upto,))
    return lost


async def count_dropped(db: aiosqlite.Connection, dropped: dict[str, int]) -> None:
    """Add to the persisted per-source drop counters."""
    await db.executemany(
        "INSERT INTO sources (name, dropped) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET dropped = dropped + excluded.dropped",
        list(dropped.items()),
    )


async def make_room(db: aiosqlite.Connection, incoming: int, limit: int) -> dict[str, int]:
    """Drop the oldest batches so that ``incoming`` more bytes stay within ``limit``."""
    over = await used_bytes(db) + incoming - limit
    if over <= 0:
        return {}
    return await drop_upto(db, await oldest_worth(db, over))
