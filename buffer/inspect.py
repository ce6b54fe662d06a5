"""``plantgate buffer stats``: what the buffer holds, read while the gateway runs (WAL readers)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from buffer.space import footprint


@dataclass(frozen=True, slots=True)
class SourceBacklog:
    """One source's share of the buffer."""

    source: str
    batches: int
    readings: int
    oldest_ts: int | None
    last_seq: int
    dropped: int
    corrupt: int
    lost: int


def read_stats(path: Path) -> tuple[list[SourceBacklog], dict[str, int]]:
    """Per-source backlog, and the bytes of each of the buffer's files on disk."""
    if not path.exists():
        raise FileNotFoundError(f"no buffer at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT s.name, COUNT(b.id), COALESCE(SUM(b.count), 0), MIN(b.stored), s.last_seq, "
            "s.dropped, s.corrupt, s.lost FROM sources s LEFT JOIN batches b "
            "ON b.source = s.name GROUP BY s.name ORDER BY s.name"
        ).fetchall()
    finally:
        conn.close()
    return [SourceBacklog(*row) for row in rows], footprint(path)


def format_stats(path: Path) -> str:
    """The stats as a small table."""
    backlog, files = read_stats(path)
    now = time.time() * 1000
    parts = ", ".join(f"{name} {size / 2**20:.2f}" for name, size in files.items())
    lines = [f"buffer {path}: {sum(files.values()) / 2**20:.2f} MiB on disk ({parts})", ""]
    lines.append(
        _row(
            "source",
            "batches",
            "readings",
            "oldest unsent",
            "last seq",
            "dropped",
            "corrupt",
            "lost",
        )
    )
    for s in backlog:
        age = "-" if s.oldest_ts is None else f"{(now - s.oldest_ts) / 1000:.1f}s"
        lines.append(
            _row(s.source, s.batches, s.readings, age, s.last_seq, s.dropped, s.corrupt, s.lost)
        )
    lines.append(
        _row(
            "total",
            sum(s.batches for s in backlog),
            sum(s.readings for s in backlog),
            "",
            "",
            sum(s.dropped for s in backlog),
            sum(s.corrupt for s in backlog),
            sum(s.lost for s in backlog),
        )
    )
    return "\n".join(lines)


def _row(*cells: object) -> str:
    name, *numbers = cells
    widths = (8, 10, 14, 10, 9, 8, 8)
    return f"{name!s:<20}" + "".join(f" {c!s:>{w}}" for c, w in zip(numbers, widths, strict=True))


def read_audit(path: Path, limit: int) -> list[dict[str, object]]:
    """The newest ``limit`` audit entries (write commands and their results), oldest first."""
    if not path.exists():
        raise FileNotFoundError(f"no buffer at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT record, published FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
    except sqlite3.OperationalError:  # a buffer from before writes existed: no table yet
        rows = []
    finally:
        conn.close()
    entries = []
    for record, published in reversed(rows):
        entry = dict(json.loads(record))
        entry["published"] = bool(published)
        entries.append(entry)
    return entries


def format_audit(path: Path, limit: int) -> str:
    """The audit trail, one line per command."""
    lines = []
    for e in read_audit(path, limit):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(str(e["ts"])) / 1000))
        why = f" {e['rule']}:" if e.get("rule") else ""
        reason = f"{why} {e['reason']}" if e.get("reason") else why
        change = f" before={e.get('before')!r} after={e.get('after')!r}"
        sent = "" if e["published"] else " (not yet published)"
        lines.append(
            f"{when} {e['source']}/{e['tag']} = {e.get('value')!r} id={e.get('id')} "
            f"{e['result']}{reason}{change}{sent}"
        )
    return "\n".join(lines) if lines else "no write commands recorded"
