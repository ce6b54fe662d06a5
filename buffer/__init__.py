"""The store-and-forward buffer: SQLite in WAL mode, one row per batch."""

from buffer.store import Buffer, BufferStats, StoredBatch

__all__ = ["Buffer", "BufferStats", "StoredBatch"]
