"""How a batch is stored: one row of neutral columns, sealed with a checksum.

The row knows no output format (JSON, Sparkplug): those are encoders applied when publishing.
Columns, per batch:

- ``tags``: the tag names joined by newlines (a tag name never holds one);
- ``kind`` and ``vals``: the values, as little-endian float64s (``d``) or int64s (``q``) when
  the whole scan is of that one type, else a JSON array (``j``; NaN and infinities kept);
- ``qualities``: one byte per reading (``g``, ``u``, ``b``), or empty when all are good;
- ``stamps``: little-endian int64 epoch ms per reading, or NULL when all are the batch's ``ts``;
- ``first_seq`` and ``count``: a batch's seqs are consecutive;
- ``crc``: CRC-32 over every column, so a damaged row is refused instead of published.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import StoreError
from gateway.models import Batch, Quality, Reading, Value

COLUMNS = "source, ts, first_seq, count, tags, kind, vals, qualities, stamps, crc"
"""The stored columns of a batch row, in the order :func:`encode` returns them."""

_HEADER = struct.Struct("<qqq")
_QUALITY_BYTE = {Quality.GOOD: ord("g"), Quality.UNCERTAIN: ord("u"), Quality.BAD: ord("b")}
_BYTE_QUALITY = {byte: quality for quality, byte in _QUALITY_BYTE.items()}
_LITTLE = sys.byteorder == "little"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

Row = tuple[str, int, int, int, bytes, str, bytes, bytes, bytes | None, int]
"""A batch's stored columns (:data:`COLUMNS`)."""


class RowCorrupt(StoreError):
    """A stored row that fails its checksum or cannot be decoded; it is never published."""


class TagSet:
    """The tag names of one stored batch, compared and hashed by their stored bytes.

    Scans repeat their tag list, so encoders keep per-TagSet work (topics, templates) in a
    dict: equal lists find the same entry whatever object they arrived in.
    """

    __slots__ = ("_hash", "key", "names")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.names: list[str] = key.decode().split("\n")
        self._hash = hash(key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TagSet) and other.key == self.key

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


class TagSets:
    """The TagSets seen lately, so a scan's names are split once, not on every read (bounded)."""

    def __init__(self, limit: int = 256) -> None:
        self._known: dict[bytes, TagSet] = {}
        self._limit = limit

    def get(self, key: bytes) -> TagSet:
        """The TagSet of these stored names."""
        found = self._known.get(key)
        if found is None:
            if len(self._known) >= self._limit:
                self._known.clear()
            found = self._known[key] = TagSet(key)
        return found


@dataclass(slots=True)
class StoredBatch:
    """A committed batch as read back for publishing: its readings as columns."""

    id: int
    source: str
    ts: int  # epoch ms of the scan
    first_seq: int
    tags: TagSet
    values: list[Value]
    qualities: list[Quality]
    stamps: list[int]  # each reading's epoch ms

    @property
    def count(self) -> int:
        """Readings in the batch."""
        return len(self.values)

    @property
    def seqs(self) -> range:
        """The readings' seqs."""
        return range(self.first_seq, self.first_seq + len(self.values))

    @property
    def readings(self) -> list[Reading]:
        """One Reading object per reading, built on every call (tests and tools; publishing
        works on the columns)."""
        return [
            Reading(*row)
            for row in zip(
                self.tags.names, self.values, self.qualities, self.stamps, self.seqs, strict=True
            )
        ]


def _array(code: str, values: Sequence[Any]) -> bytes:
    data = array(code, values)
    if not _LITTLE:
        data.byteswap()
    return data.tobytes()


def _unarray(code: str, blob: bytes) -> list[Any]:
    data = array(code)
    data.frombytes(blob)
    if not _LITTLE:
        data.byteswap()
    return data.tolist()


def _pack_values(values: list[Value]) -> tuple[str, bytes]:
    kinds = set(map(type, values))
    if kinds == {float}:
        return "d", _array("d", values)
    if kinds == {int}:
        try:
            return "q", _array("q", values)
        except OverflowError:  # beyond int64: JSON keeps any int exactly
            pass
    return "j", _dumps(values).encode()


def _crc(source: str, ts: int, first_seq: int, count: int, *blobs: bytes | None) -> int:
    crc = zlib.crc32(_HEADER.pack(ts, first_seq, count))
    crc = zlib.crc32(source.encode(), crc)
    for blob in blobs:
        crc = zlib.crc32(b"\x00" if blob is None else b"\x01" + blob, crc)
    return crc


def encode(batch: Batch) -> Row:
    """A batch's columns as stored (its seqs must be consecutive)."""
    count = len(batch)
    first = batch.seqs[0]
    if batch.seqs[-1] != first + count - 1:
        raise ValueError(f"batch of {batch.source}: seqs are not consecutive")
    tags = "\n".join(batch.tags).encode()
    if tags.count(b"\n") != count - 1:
        raise ValueError(f"batch of {batch.source}: a tag name holds a newline")
    kind, vals = _pack_values(batch.values)
    good = Quality.GOOD
    qualities = (
        b""
        if all(q is good for q in batch.qualities)
        else bytes(map(_QUALITY_BYTE.__getitem__, batch.qualities))
    )
    ts = batch.ts
    stamps = None if batch.stamps.count(ts) == count else _array("q", batch.stamps)
    crc = _crc(batch.source, ts, first, count, tags, kind.encode(), vals, qualities, stamps)
    return (batch.source, ts, first, count, tags, kind, vals, qualities, stamps, crc)


def decode(id_: int, row: Row | tuple[Any, ...], tagsets: TagSets | None = None) -> StoredBatch:
    """A stored row back to its columns; raises RowCorrupt when it is damaged."""
    source, ts, first, count, tags, kind, vals, qualities, stamps, crc = row
    try:
        if _crc(source, ts, first, count, tags, kind.encode(), vals, qualities, stamps) != crc:
            raise RowCorrupt(f"batch {id_}: checksum mismatch")
        if kind == "d":
            values: list[Value] = _unarray("d", vals)
        elif kind == "q":
            values = _unarray("q", vals)
        elif kind == "j":
            values = json.loads(vals)
            if not isinstance(values, list):
                raise RowCorrupt(f"batch {id_}: values are not a list")
        else:
            raise RowCorrupt(f"batch {id_}: unknown value kind {kind!r}")
        tagset = TagSet(bytes(tags)) if tagsets is None else tagsets.get(bytes(tags))
        marks = (
            [Quality.GOOD] * count
            if not qualities
            else list(map(_BYTE_QUALITY.__getitem__, qualities))
        )
        times = [ts] * count if stamps is None else _unarray("q", stamps)
    except RowCorrupt:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise RowCorrupt(f"batch {id_}: cannot decode: {type(exc).__name__}") from exc
    if not len(tagset) == len(values) == len(marks) == len(times) == count:
        raise RowCorrupt(f"batch {id_}: columns disagree on the number of readings")
    return StoredBatch(id_, source, ts, first, tagset, values, marks, times)
