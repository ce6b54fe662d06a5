"""The store-and-forward buffer: SQLite in WAL mode, one row of neutral columns per batch."""

from buffer.rows import StoredBatch
from buffer.store import Buffer, BufferStats

__all__ = ["Buffer", "BufferStats", "StoredBatch"]
