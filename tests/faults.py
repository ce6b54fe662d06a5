"""Fault-test helpers: the gateway as a real process, and seq checks that say what went wrong.

A seq check here never judges a stream that is still arriving: it waits (with a deadline) for
everything the gateway committed to reach the subscriber, leaves out what is provably still in
the buffer, and on failure names the missing and conflicting seqs and shows the gateway's log.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import Recorder, wait_until

ROOT = Path(__file__).resolve().parents[1]


def ranges(seqs: Iterable[int], limit: int = 20) -> str:
    """``1-5, 9, 12-40`` (the first ``limit`` runs), for failure messages."""
    runs: list[list[int]] = []
    for s in sorted(set(seqs)):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit])
    return text + (f", ... ({len(runs) - limit} more runs)" if len(runs) > limit else "")


@dataclass
class SeqAudit:
    """What a subscriber received from one source, judged against what the gateway committed."""

    received: int = 0
    first: int = 0
    last: int = 0
    missing: list[int] = field(default_factory=list)
    duplicates: int = 0
    # A seq delivered twice with different tag, value or ts: a seq reused, never acceptable.
    conflicts: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)

    def describe(self) -> str:
        """One paragraph for a failure message."""
        parts = [
            f"received {self.received} readings, seqs {self.first}..{self.last}",
            f"missing {len(self.missing)}: {ranges(self.missing) or '-'}",
            f"duplicates {self.duplicates}",
        ]
        if self.conflicts:
            shown = sorted(self.conflicts.items())[:10]
            parts.append(f"seqs reused with different content {len(self.conflicts)}: {shown}")
        return "; ".join(parts)


def audit(readings: list[dict[str, Any]], upto: int | None = None, first: int = 1) -> SeqAudit:
    """Missing seqs in ``first..upto`` (default: the highest received), duplicates, reuses."""
    content: dict[int, tuple[Any, ...]] = {}
    result = SeqAudit(received=len(readings))
    for r in readings:
        seq = r["seq"]
        body = (r.get("tag"), r.get("value"), r.get("ts"))
        before = content.setdefault(seq, body)
        if before is not body:
            result.duplicates += 1
            if before != body:
                result.conflicts.setdefault(seq, [before]).append(body)
    if content:
        result.first, result.last = min(content), max(content)
    end = result.last if upto is None else upto
    result.missing = [s for s in range(first, end + 1) if s not in content]
    return result


@dataclass(frozen=True)
class BufferState:
    """What a stopped gateway's buffer says about one source."""

    last_seq: int  # the last seq the gateway committed
    buffered: frozenset[int]  # seqs still waiting in the buffer: not delivered, not lost


def buffer_state(db: Path, source: str) -> BufferState:
    """Read the buffer file of a gateway that has stopped (or been killed)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT last_seq FROM sources WHERE name = ?", (source,)).fetchone()
        spans = conn.execute(
            "SELECT first_seq, count FROM batches WHERE source = ?", (source,)
        ).fetchall()
    finally:
        conn.close()
    buffered = frozenset(s for first, count in spans for s in range(first, first + count))
    return BufferState(row[0] if row else 0, buffered)


def assert_delivered(
    rec: Recorder,
    source: str,
    db: Path,
    log: Path | None = None,
    timeout: float = 30.0,
) -> SeqAudit:
    """Every seq the gateway committed reached ``rec``, except what is still in the buffer.

    Waits for the stream to settle first: the broker may still be delivering what the gateway
    published last (live readings go out before older backlog, so a stream cut short has gaps).
    """
    state = buffer_state(db, source)
    deadline = time.monotonic() + timeout
    while True:
        result = audit(rec.readings(source), upto=state.last_seq)
        result.missing = [s for s in result.missing if s not in state.buffered]
        if (not result.missing and not result.conflicts) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if result.missing or result.conflicts or result.last > state.last_seq:
        where = f"\n--- gateway log {log} ---\n{log.read_text()}" if log is not None else ""
        raise AssertionError(
            f"{source}: the gateway committed seqs up to {state.last_seq} "
            f"({len(state.buffered)} still buffered); {result.describe()}{where}"
        )
    return result


class GatewayProcess:
    """``plantgate run`` as a real child process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process, appending its output to the log."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        """SIGTERM, then its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code of a process that ends by itself."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def wait_gap_free(
        self,
        rec: Recorder,
        until: Callable[[], bool],
        timeout: float,
        source: str = "press1",
        except_seqs: frozenset[int] | set[int] = frozenset(),
    ) -> None:
        """Wait for ``until`` and no gap in seq (but ``except_seqs``); on failure say which
        seqs and show the log."""

        def gap_free() -> bool:
            return set(audit(rec.readings(source)).missing) <= except_seqs

        try:
            wait_until(lambda: until() and gap_free(), timeout)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; {audit(rec.readings(source)).describe()}\n"
                f"--- gateway log ---\n{self.log.read_text()}"
            ) from None

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def last_seq(rec: Recorder, source: str = "press1") -> int:
    """The highest seq received from a source."""
    return max((r["seq"] for r in rec.readings(source)), default=0)
