"""The eviction policy: which batches go when the buffer is over its bounds, oldest first.

Every function here runs inside the writer's open transaction, so a batch is deleted and its
readings counted as dropped (per source, in the ``sources`` table) in the same commit.
"""

from __future__ import annotations

import json
from collections.abc import Collection

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


async def oldest_worth(db: aiosqlite.Connection, nbytes: int, held: Collection[int] = ()) -> int:
    """The id up to which the oldest batches not held hold at least ``nbytes`` (0: none)."""
    upto, freed = 0, 0
    async with db.execute(f"SELECT id, {ROW_BYTES} FROM batches ORDER BY id LIMIT 100000") as cur:
        async for id_, size in cur:
            upto = id_
            if id_ in held:
                continue
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


async def drop_upto(
    db: aiosqlite.Connection, upto: int, held: Collection[int] = ()
) -> dict[str, int]:
    """Delete every batch with ``id <= upto`` but those held (being published: their fate is
    the broker's answer), and count their readings as dropped, per source."""
    if upto <= 0:
        return {}
    keep = json.dumps(sorted(i for i in held if i <= upto))
    chosen = "id <= ? AND id NOT IN (SELECT value FROM json_each(?))"
    async with db.execute(
        f"SELECT source, SUM(count) FROM batches WHERE {chosen} GROUP BY source", (upto, keep)
    ) as cur:
        lost = {str(s): int(n) for s, n in await cur.fetchall()}
    await count_dropped(db, lost)
    await db.execute(f"DELETE FROM batches WHERE {chosen}", (upto, keep))
    return lost


async def count_dropped(db: aiosqlite.Connection, dropped: dict[str, int]) -> None:
    """Add to the persisted per-source drop counters."""
    await db.executemany(
        "INSERT INTO sources (name, dropped) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET dropped = dropped + excluded.dropped",
        list(dropped.items()),
    )


async def make_room(
    db: aiosqlite.Connection, incoming: int, limit: int, held: Collection[int] = ()
) -> dict[str, int]:
    """Drop the oldest batches not held so that ``incoming`` more bytes stay within ``limit``."""
    over = await used_bytes(db) + incoming - limit
    if over <= 0:
        return {}
    return await drop_upto(db, await oldest_worth(db, over, held), held)
