"""Reading what can still be read from a buffer file that was moved aside as unusable.

SQLite's damage is often local: the sources table (each source's last seq) and most batch rows
usually read fine. Every row that reads and passes its checksum is copied into the new
database; the readings of the others are counted as lost. Blocking: run it in a thread.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buffer.rows import COLUMNS, RowCorrupt, decode

log = logging.getLogger(__name__)

MAX_ROWS = 10_000_000  # a damaged b-tree can loop; never read more rows than this
CHUNK = 500  # rows copied per transaction


@dataclass
class Salvage:
    """What was read from a damaged buffer file."""

    rows: int = 0  # batches copied into the new database
    last_seq: dict[str, int] = field(default_factory=dict)
    exact: set[str] = field(default_factory=set)  # sources whose last seq the file still told
    counters: dict[str, tuple[int, int, int]] = field(
        default_factory=dict
    )  # dropped, corrupt, lost


def salvage(damaged: Path, into: Path) -> Salvage:
    """Copy the intact batches of a damaged buffer file into a new one (whose schema exists);
    return the last seqs and counters it held, with the unreadable readings counted lost."""
    found = Salvage()
    try:
        conn = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        log.error("salvage: cannot open %s: %s", damaged, exc)
        return found
    target = sqlite3.connect(into, isolation_level=None, timeout=10)
    try:
        _read_sources(conn, found)
        _copy_batches(conn, target, found)
        target.executemany(
            "INSERT INTO sources (name, last_seq, dropped, corrupt, lost) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq), "
            "dropped = dropped + excluded.dropped, corrupt = corrupt + excluded.corrupt, "
            "lost = lost + excluded.lost",
            [
                (name, found.last_seq.get(name, 0), *found.counters.get(name, (0, 0, 0)))
                for name in set(found.last_seq) | set(found.counters)
            ],
        )
    finally:
        conn.close()
        target.close()
    return found


def _read_sources(conn: sqlite3.Connection, found: Salvage) -> None:
    try:
        rows = conn.execute("SELECT name, last_seq, dropped, corrupt, lost FROM sources").fetchall()
    except sqlite3.Error as exc:
        log.error("salvage: the sources table is unreadable: %s", exc)
        return
    for name, last_seq, dropped, corrupt, lost in rows:
        found.last_seq[str(name)] = int(last_seq)
        found.exact.add(str(name))
        found.counters[str(name)] = (int(dropped), int(corrupt), int(lost))


def _copy_batches(conn: sqlite3.Connection, target: sqlite3.Connection, found: Salvage) -> None:
    """Intact rows, read id by id so that one damaged record costs only itself."""
    try:
        ids = [
            r[0] for r in conn.execute("SELECT id FROM batches ORDER BY id LIMIT ?", (MAX_ROWS,))
        ]
    except sqlite3.Error as exc:
        log.error("salvage: the batches table is unreadable: %s", exc)
        return
    lost: dict[str, int] = {}
    chunk: list[tuple[Any, ...]] = []
    for id_ in ids:
        try:
            row = conn.execute(
                f"SELECT stored, {COLUMNS} FROM batches WHERE id = ?", (id_,)
            ).fetchone()
            if row is None:
                continue
            decode(id_, row[1:])  # the checksum decides
        except (sqlite3.Error, RowCorrupt) as exc:
            source, count = _source_and_count(conn, id_)
            lost[source] = lost.get(source, 0) + count
            log.error("salvage: batch %d of %s lost: %s", id_, source, exc)
            continue
        chunk.append(tuple(row))
        source, last = str(row[1]), int(row[3]) + int(row[4]) - 1
        found.last_seq[source] = max(found.last_seq.get(source, 0), last)
        if len(chunk) >= CHUNK:
            _insert(target, chunk)
            found.rows += len(chunk)
            chunk = []
    _insert(target, chunk)
    found.rows += len(chunk)
    for source, n in lost.items():
        dropped, corrupt, before = found.counters.get(source, (0, 0, 0))
        found.counters[source] = (dropped, corrupt, before + n)


def _insert(target: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        target.execute("BEGIN")
        target.executemany(
            f"INSERT INTO batches (stored, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        target.execute("COMMIT")


def _source_and_count(conn: sqlite3.Connection, id_: int) -> tuple[str, int]:
    try:
        row = conn.execute("SELECT source, count FROM batches WHERE id = ?", (id_,)).fetchone()
    except sqlite3.Error:
        row = None
    return ("(unknown)", 0) if row is None else (str(row[0]), int(row[1]))
