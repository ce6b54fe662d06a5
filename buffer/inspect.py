"""``plantgate buffer stats``: what the buffer holds, read while the gateway runs (WAL readers)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SourceBacklog:
    """One source's share of the buffer."""

    source: str
    batches: int
    readings: int
    oldest_ts: int | None
    last_seq: int
    dropped: int


def read_stats(path: Path) -> tuple[list[SourceBacklog], int]:
    """Per-source backlog and the bytes the buffer takes on disk (database and WAL)."""
    if not path.exists():
        raise FileNotFoundError(f"no buffer at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT s.name, COUNT(b.id), COALESCE(SUM(b.count), 0), MIN(b.stored), s.last_seq, "
            "s.dropped FROM sources s LEFT JOIN batches b ON b.source = s.name "
            "GROUP BY s.name ORDER BY s.name"
        ).fetchall()
    finally:
        conn.close()
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return [SourceBacklog(*row) for row in rows], size


def format_stats(path: Path) -> str:
    """The stats as a small table."""
    backlog, size = read_stats(path)
    now = time.time() * 1000
    lines = [f"buffer {path}: {size / 2**20:.1f} MiB on disk", ""]
    lines.append(_row("source", "batches", "readings", "oldest unsent", "last seq", "dropped"))
    for s in backlog:
        age = "-" if s.oldest_ts is None else f"{(now - s.oldest_ts) / 1000:.1f}s"
        lines.append(_row(s.source, s.batches, s.readings, age, s.last_seq, s.dropped))
    batches, readings = sum(s.batches for s in backlog), sum(s.readings for s in backlog)
    lines.append(_row("total", batches, readings, "", "", sum(s.dropped for s in backlog)))
    return "\n".join(lines)


def _row(*cells: object) -> str:
    name, *numbers = cells
    widths = (8, 10, 14, 10, 9)
    return f"{name!s:<20}" + "".join(f" {c!s:>{w}}" for c, w in zip(numbers, widths, strict=True))
