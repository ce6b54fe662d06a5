"""High-water marks of every source's seq, in a small file beside the database.

A mark is written *ahead* of the seqs it covers, with headroom, so a commit costs no file
write except now and then; when the database is lost the sources continue above their marks,
and a subscriber sees a jump (counted as loss), never a seq used twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

MIN_HEADROOM = 10_000  # seqs
HEADROOM_SECONDS = 60.0  # at the measured rate, a mark lasts about this long


class SeqMarks:
    """The marks file: read at open, written ahead of the seqs the buffer commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marks: dict[str, int] = {}
        self._written: dict[str, tuple[float, int]] = {}  # source -> (when, its seq then)
        self._failing: str | None = None

    def load(self) -> dict[str, int]:
        """The marks on disk ({} when there is no file or it cannot be read, said once)."""
        try:
            data = json.loads(self.path.read_text())
            self.marks = {str(k): int(v) for k, v in data["marks"].items()}
        except FileNotFoundError:
            self.marks = {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("seq marks %s unreadable (%s); starting without them", self.path, exc)
            self.marks = {}
        return dict(self.marks)

    def covers(self, last: dict[str, int]) -> bool:
        """True when every seq in ``last`` is at or below its source's mark."""
        marks = self.marks
        return all(seq <= marks.get(source, 0) for source, seq in last.items())

    def advance(self, last: dict[str, int]) -> None:
        """Move the marks ahead of ``last`` (with headroom) and write them durably.

        Call before committing seqs that :meth:`covers` says are beyond the marks. A failed
        write is logged once and retried next time: readings still flow (the marks only
        matter if the database is later lost).
        """
        now = time.monotonic()
        marks = dict(self.marks)
        for source, seq in last.items():
            when, then = self._written.get(source, (now, seq))
            rate = (seq - then) / (now - when) if now > when else 0.0
            headroom = max(MIN_HEADROOM, int(rate * HEADROOM_SECONDS))
            if seq > marks.get(source, 0) - headroom // 10:  # keep a tenth in hand
                marks[source] = seq + headroom
        try:
            write_durably(self.path, json.dumps({"version": 1, "marks": marks}).encode())
        except OSError as exc:
            if self._failing != str(exc):
                log.error("cannot write seq marks %s: %s (retrying)", self.path, exc)
            self._failing = str(exc)
            return
        if self._failing is not None:
            log.info("seq marks %s written again", self.path)
            self._failing = None
        self.marks = marks
        self._written.update((source, (now, seq)) for source, seq in last.items())


def write_durably(path: Path, data: bytes) -> None:
    """Replace a file atomically and durably (temporary file, fsync, rename, fsync the dir)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
