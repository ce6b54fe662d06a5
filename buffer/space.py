"""The buffer's disk budget: how ``max_bytes`` is shared, what the files take, the reserve.

``max_bytes`` bounds everything the buffer puts on disk: the database, its WAL and
shared-memory files and a reserve file. The reserve is real disk blocks held back so that,
when the filesystem fills up, SQLite still has room to delete and checkpoint (in WAL mode a
delete is a write, and a checkpoint may grow the database file).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PAGE = 4096
MIN_BYTES = 2**20  # the smallest max_bytes that still holds a few scans beside WAL and reserve
MAX_BYTES = 2**40
SHM_BYTES = 32 * 1024  # the WAL index: one 32 KiB block per 4,096 WAL frames


@dataclass(frozen=True, slots=True)
class Budget:
    """How ``max_bytes`` is shared between the files of the buffer."""

    max_bytes: int
    wal: int  # the WAL is checkpointed before it grows past this
    reserve: int  # the reserve file's size
    data: int  # database file: pages of rows, indexes and free pages

    @classmethod
    def of(cls, max_bytes: int) -> Budget:
        """Split a ``max_bytes`` (MIN_BYTES or more; less squeezes the database to a minimum)."""
        wal = min(16 * 2**20, max(256 * 1024, max_bytes // 8))
        reserve = wal  # enough to checkpoint a full WAL into a growing database file
        data = max(64 * PAGE, max_bytes - wal - reserve - SHM_BYTES)
        return cls(max_bytes, wal, reserve, data - data % PAGE)

    @classmethod
    def fitted(cls, max_bytes: int, path: Path) -> Budget:
        """``max_bytes``, or what the buffer's filesystem can give (its free space and what the
        buffer already takes), with a tenth kept for everything else on that disk."""
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            return cls.of(max_bytes)
        room = (free + sum(footprint(path).values())) * 9 // 10
        return cls.of(min(max_bytes, room))

    @property
    def pages(self) -> int:
        """The database's page limit (SQLite's max_page_count)."""
        return self.data // PAGE

    @property
    def commit_bytes(self) -> int:
        """Row bytes per transaction at most, so one commit never overfills the WAL."""
        return self.wal // 4


def footprint(path: Path) -> dict[str, int]:
    """Bytes on disk of each of the buffer's files that exists (database, -wal, -shm, reserve)."""
    sizes = {}
    for suffix in ("", "-wal", "-shm", "-reserve"):
        with contextlib.suppress(FileNotFoundError):
            sizes[suffix or "db"] = os.stat(f"{path}{suffix}").st_size
    return sizes


class Reserve:
    """Disk blocks held back in ``<buffer>-reserve``, given up only when the disk is full."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = Path(f"{path}-reserve")
        self.size = size

    @property
    def held(self) -> bool:
        """True while the reserve file holds its blocks."""
        try:
            return self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def hold(self) -> bool:
        """Allocate the reserve (real blocks, not a sparse file); False when there is no room."""
        if self.held:
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                # This filesystem cannot preallocate: written zeros hold real blocks too.
                os.ftruncate(fd, 0)
                left = self.size
                while left > 0:
                    left -= os.write(fd, b"\0" * min(left, 65536))
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                self.path.unlink()
            return False
        return True

    def release(self) -> bool:
        """Give the blocks back to the filesystem; True if there was a reserve to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
