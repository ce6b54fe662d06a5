"""The SQLite buffer: transactions, seq persistence, release only on ack, bounds, corruption.

One contract suite, run against every buffer configuration (durability normal and full).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from buffer import Buffer
from gateway.errors import StoreError
from gateway.models import Batch, Quality, Reading
from tests.helpers import async_wait_until


def batch(source: str, first_seq: int, n: int = 3, ts: int = 1_700_000_000_000) -> Batch:
    readings = [
        Reading(f"t{i}", float(i) + 0.5, Quality.GOOD, ts + i, first_seq + i) for i in range(n)
    ]
    return Batch(source, ts, readings)


@pytest.fixture(params=["normal", "full"])
def durability(request: pytest.FixtureRequest) -> str:
    """Every test runs against each durability setting."""
    return str(request.param)


async def committed(buf: Buffer, batches: int) -> None:
    await async_wait_until(lambda: buf.stats.batches_added >= batches and not buf.queued)


async def test_add_take_release(tmp_path: Path, durability: str) -> None:
    buf = Buffer(tmp_path / "b.db", durability=durability)
    await buf.open()
    buf.add(batch("press1", 1))
    buf.add(batch("press1", 4))
    await committed(buf, 2)
    taken = await buf.take(0, 10)
    assert [b.id for b in taken] == [1, 2]
    assert [r.seq for r in taken[1].readings] == [4, 5, 6]
    assert taken[0].readings[0] == Reading("t0", 0.5, Quality.GOOD, 1_700_000_000_000, 1)
    buf.release(taken[0].id)
    assert [b.id for b in await buf.take(0, 10)] == [2]  # gone from take() at once
    await async_wait_until(lambda: buf.stats.commits >= 2)
    assert (await buf.backlog())[:2] == (1, 3)
    await buf.close()


async def test_unreleased_batches_and_last_seq_survive_a_restart(
    tmp_path: Path, durability: str
) -> None:
    buf = Buffer(tmp_path / "b.db", durability=durability)
    await buf.open()
    buf.add(batch("press1", 1))
    buf.add(batch("oven", 1, n=2))
    await committed(buf, 2)
    buf.release(1)
    await buf.close()

    again = Buffer(tmp_path / "b.db", durability=durability)
    await again.open()
    assert again.last_seq("press1") == 3
    assert again.last_seq("oven") == 2
    assert again.last_seq("new") == 0
    assert [b.source for b in await again.take(0, 10)] == ["oven"]
    await again.close()


async def test_take_is_windowed(tmp_path: Path, durability: str) -> None:
    buf = Buffer(tmp_path / "b.db", durability=durability)
    await buf.open()
    for i in range(10):
        buf.add(batch("s", 1 + i * 3))
    await committed(buf, 10)
    assert [b.id for b in await buf.take(3, 12)] == [4, 5, 6, 7]
    assert [b.id for b in await buf.take(0, 100, up_to=2)] == [1, 2]
    # The budget is in readings (3 per batch here), and at least one batch always comes.
    assert [b.id for b in await buf.take(0, 7)] == [1, 2]
    assert [b.id for b in await buf.take(0, 1)] == [1]
    assert buf.max_id == 10
    await buf.close()


async def test_max_age_drops_oldest_and_counts(tmp_path: Path, durability: str) -> None:
    buf = Buffer(tmp_path / "b.db", max_age=3600, durability=durability)
    await buf.open()
    buf.add(batch("press1", 1))
    buf.add(batch("press1", 4))
    await committed(buf, 2)
    # Age counts from when the gateway stored a batch, never from the device's clock.
    assert buf.stats.dropped == {}
    await buf._db.execute("UPDATE batches SET stored = stored - 3601000")  # type: ignore[union-attr]
    buf._last_evict = 0.0
    buf.add(batch("press1", 7))
    await async_wait_until(lambda: buf.stats.dropped.get("press1") == 6)
    assert [r.seq for b in await buf.take(0, 10) for r in b.readings] == [7, 8, 9]
    await buf.close()
    again = Buffer(tmp_path / "b.db", durability=durability)
    await again.open()
    assert again.stats.dropped == {"press1": 6}  # the count is kept in the database
    await again.close()


async def test_max_bytes_drops_oldest_first(tmp_path: Path, durability: str) -> None:
    buf = Buffer(tmp_path / "b.db", max_bytes=2**20, durability=durability)
    await buf.open()
    seq = 1
    for _ in range(3000):
        buf.add(batch("press1", seq, n=50))
        seq += 50
        if buf.queued > 100:
            await async_wait_until(lambda: buf.queued < 10)
    await async_wait_until(lambda: not buf.queued)
    assert buf.stats.dropped.get("press1", 0) > 0
    kept = [r.seq for b in await buf.take(0, 10**9) for r in b.readings]
    dropped = buf.stats.dropped["press1"]
    assert kept == list(range(dropped + 1, seq))  # exactly the oldest ones went
    await buf.close()


async def test_corrupt_file_is_moved_aside(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "b.db"
    path.write_bytes(b"this is not a database" * 100)
    buf = Buffer(path, durability=durability)
    await buf.open()
    buf.add(batch("press1", 1))
    await committed(buf, 1)
    await buf.close()
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]  # noqa: ASYNC240
    assert len(aside) == 1
    assert buf.stats.moved_aside == str(tmp_path / aside[0])
    assert (tmp_path / aside[0]).read_bytes().startswith(b"this is not a database")


async def test_a_buffer_path_that_cannot_be_a_directory_is_a_clear_error(
    tmp_path: Path, durability: str
) -> None:
    (tmp_path / "data").write_text("a file where the data directory should be")
    with pytest.raises(StoreError, match="cannot create buffer directory"):
        await Buffer(tmp_path / "data" / "b.db").open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
async def test_read_only_directory_is_a_clear_error(tmp_path: Path, durability: str) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(StoreError, match="not writable"):
        await Buffer(ro / "b.db").open()


async def test_a_full_database_evicts_the_oldest_and_carries_on(
    tmp_path: Path, durability: str
) -> None:
    buf = Buffer(tmp_path / "b.db", durability=durability)
    await buf.open()
    # SQLite answers SQLITE_FULL past max_page_count, exactly as on a full disk.
    assert buf._db is not None
    async with buf._db.execute("PRAGMA page_count") as cur:
        pages = (await cur.fetchone() or (0,))[0]
    async with buf._db.execute(f"PRAGMA max_page_count={pages + 12}"):
        pass
    seq = 1
    for _ in range(300):
        buf.add(batch("press1", seq, n=20))
        seq += 20
        if buf.queued > 50:
            await async_wait_until(lambda: buf.queued < 10, 20, "the writer to catch up")
    await async_wait_until(lambda: not buf.queued, 20, "every batch committed or dropped")
    assert buf.stats.write_errors > 0  # the database did fill up
    dropped = buf.stats.dropped["press1"]
    kept = [r.seq for b in await buf.take(0, 10**9) for r in b.readings]
    assert kept == list(range(dropped + 1, seq))  # oldest dropped and counted, newest kept
    await buf.close()
    again = Buffer(tmp_path / "b.db", durability=durability)
    await again.open()
    assert again.stats.dropped == {"press1": dropped}  # every drop was persisted
    await again.close()


async def test_the_write_queue_is_bounded_in_readings(tmp_path: Path, durability: str) -> None:
    buf = Buffer(tmp_path / "b.db", durability=durability, queue_limit=10)
    await buf.open()
    for i in range(5):  # queued faster than the writer runs: only the newest 10 readings stay
        buf.add(batch("press1", 1 + 3 * i))
    assert buf.stats.dropped == {"press1": 6}
    await committed(buf, 3)
    assert [r.seq for b in await buf.take(0, 100) for r in b.readings] == list(range(7, 16))
    await buf.close()
    again = Buffer(tmp_path / "b.db", durability=durability)
    await again.open()
    assert again.stats.dropped == {"press1": 6}  # drops from the queue are persisted too
    await again.close()


async def test_take_looks_past_released_rows_not_yet_deleted(
    tmp_path: Path, durability: str
) -> None:
    buf = Buffer(tmp_path / "b.db", durability=durability)
    await buf.open()
    for i in range(1500):
        buf.add(batch("s", 1 + 3 * i))
    await committed(buf, 1500)
    for batch_id in range(1, 1201):  # acknowledged, the deletes not committed yet
        buf._released.add(batch_id)
    assert [b.id for b in await buf.take(0, 6)] == [1201, 1202]
    assert [b.id for b in await buf.take(0, 10, up_to=1200)] == []
    await buf.close()


async def test_a_commit_between_a_read_and_the_wait_is_not_missed(
    tmp_path: Path, durability: str
) -> None:
    buf = Buffer(tmp_path / "b.db", durability=durability)
    await buf.open()
    seen = buf.stats.batches_added
    buf.add(batch("s", 1))
    await committed(buf, 1)  # the commit lands before the publisher starts waiting
    await asyncio.wait_for(buf.wait_committed(seen), 1)  # returns at once: nothing lost
    await buf.close()


V1_SCHEMA = """
CREATE TABLE batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, ts INTEGER NOT NULL,
    stored INTEGER NOT NULL, first_seq INTEGER NOT NULL, count INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE sources (
    name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0
);
PRAGMA user_version = 1;
"""


async def test_a_buffer_of_the_previous_release_is_migrated_with_nothing_lost(
    tmp_path: Path, durability: str, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import sqlite3

    path = tmp_path / "b.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    readings = [
        {"tag": "temp", "value": 21.5, "quality": "good", "ts": 1000, "seq": 1},
        {"tag": "state", "value": "RUN", "quality": "uncertain", "ts": 1001, "seq": 2},
    ]
    rows = [
        ("press1", 1000, 1, json.dumps(readings).encode()),
        ("press1", 2000, 3, b'[{"tag": "temp", "value": 2'),  # damaged: cut short
        ("press1", 3000, 5, json.dumps([dict(readings[0], seq=5)]).encode()),
    ]
    for source, ts, first, payload in rows:
        count = 2 if first != 5 else 1
        conn.execute(
            "INSERT INTO batches (source, ts, stored, first_seq, count, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (source, ts, ts, first, count, payload),
        )
    conn.execute("INSERT INTO sources VALUES ('press1', 5, 7)")
    conn.commit()
    conn.close()
    buf = Buffer(path, durability=durability)
    await buf.open()
    taken = await buf.take(0, 100)
    assert [(b.id, [r.seq for r in b.readings]) for b in taken] == [(1, [1, 2]), (3, [5])]
    assert taken[0].readings[1] == Reading("state", "RUN", Quality.UNCERTAIN, 1001, 2)
    assert buf.last_seq("press1") == 5
    assert buf.stats.dropped == {"press1": 7}
    assert buf.stats.corrupt == {"press1": 2}  # the damaged row: quarantined, counted
    buf.add(batch("press1", 6))
    await committed(buf, 1)
    assert [b.id for b in await buf.take(3, 100)] == [4]  # new ids continue after the old
    await buf.close()
    assert "migrating 3 batch(es), 5 reading(s) to schema 2" in caplog.text
