"""The shared data model: readings, batches and their quality."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import repeat
from typing import Generic, TypeVar

# What a tag value can be once decoded: JSON-friendly on purpose.
Value = bool | int | float | str | None | list["Value"] | dict[str, "Value"]


def epoch_ms() -> int:
    """Now, in milliseconds since the epoch: the unit of every timestamp in the contract."""
    return time.time_ns() // 1_000_000


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def json_safe(value: Value) -> Value:
    """NaN and infinities are not JSON: they are stored and published as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def json_text(value: Value) -> str:
    """A value as the contract's JSON writes it (compact, UTF-8, NaN and infinities null)."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else "null"  # type: ignore[arg-type]
    return _dumps(json_safe(value))


class Quality(StrEnum):
    """OPC-style quality of one reading."""

    GOOD = "good"
    BAD = "bad"
    UNCERTAIN = "uncertain"


# Not frozen: a frozen dataclass pays for object.__setattr__ on every field, 10,000 times a scan.
@dataclass(slots=True)
class Sample:
    """What a connector read for one tag: value, quality and the device's timestamp if any."""

    value: Value
    quality: Quality = Quality.GOOD
    ts: int | None = None  # epoch ms from the device, when the protocol gives one


BAD_SAMPLE = Sample(None, Quality.BAD)


class Samples:
    """A scan's samples as columns, in the order of the tags read.

    What a connector that reads thousands of tags per scan returns instead of one
    :class:`Sample` object per tag.
    """

    __slots__ = ("qualities", "stamps", "values")

    def __init__(
        self, values: list[Value], qualities: list[Quality], stamps: list[int | None] | None = None
    ) -> None:
        self.values = values
        self.qualities = qualities
        self.stamps = stamps  # None: no device timestamps, the scan's time stands for all

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Sample]:
        stamps = self.stamps if self.stamps is not None else repeat(None)
        return map(Sample, self.values, self.qualities, stamps)

    def __repr__(self) -> str:
        return f"Samples({list(self)!r})"


@dataclass(slots=True)
class Reading:
    """One tag's value as the gateway reports it, numbered by the source's ``seq``."""

    tag: str
    value: Value
    quality: Quality
    ts: int  # epoch ms
    seq: int


K = TypeVar("K")
V = TypeVar("V")


class ByIdentity(Generic[K, V]):
    """Work done once per object that is reused (a scan's tag list), found by identity.

    Each key object is kept alive, so its id cannot be taken by another; bounded: a caller
    that makes new objects every time only empties it now and then.
    """

    def __init__(self, limit: int = 64) -> None:
        self._items: dict[int, tuple[K, V]] = {}
        self._limit = limit

    def get(self, key: K, make: Callable[[K], V]) -> V:
        """The value made for ``key`` (this very object), making it on first sight."""
        item = self._items.get(id(key))  # held here, no other object can have key's id
        if item is not None:
            return item[1]
        if len(self._items) >= self._limit:
            self._items.clear()
        value = make(key)
        self._items[id(key)] = (key, value)
        return value


class ScanTags(list[str]):
    """The tag names of a whole scan, one list object reused by every batch of that scan.

    Never mutated once made, so encoders may cache work by its identity.
    """


class Batch:
    """One source's readings from one scan: the unit of storage and of work.

    Held as columns, not as one :class:`Reading` object per tag: a 10,000-tag scan is
    numbered and packed straight from them; :attr:`readings` builds the objects on demand.
    """

    __slots__ = ("qualities", "seqs", "source", "stamps", "tags", "ts", "values")

    def __init__(self, source: str, ts: int, readings: Sequence[Reading] = ()) -> None:
        self.source = source
        self.ts = ts  # epoch ms of the scan
        self.tags: list[str] = [r.tag for r in readings]
        self.values: list[Value] = [r.value for r in readings]
        self.qualities: list[Quality] = [r.quality for r in readings]
        self.stamps: list[int] = [r.ts for r in readings]  # each reading's epoch ms
        self.seqs: Sequence[int] = [r.seq for r in readings]

    @classmethod
    def of_columns(
        cls,
        source: str,
        ts: int,
        tags: list[str],
        values: list[Value],
        qualities: list[Quality],
        stamps: list[int],
        first_seq: int,
    ) -> Batch:
        """A batch from its columns, numbered from ``first_seq`` on."""
        batch = cls(source, ts)
        batch.tags, batch.values, batch.qualities, batch.stamps = tags, values, qualities, stamps
        batch.seqs = range(first_seq, first_seq + len(tags))
        return batch

    def __len__(self) -> int:
        return len(self.tags)

    def __repr__(self) -> str:
        return f"Batch({self.source!r}, {self.ts}, {self.readings!r})"

    @property
    def readings(self) -> list[Reading]:
        """The readings, one object each (built on every call)."""
        return [
            Reading(*row)
            for row in zip(
                self.tags, self.values, self.qualities, self.stamps, self.seqs, strict=True
            )
        ]

    @property
    def first_seq(self) -> int:
        """The seq of the first reading."""
        return self.seqs[0]

    @property
    def last_seq(self) -> int:
        """The seq of the last reading."""
        return self.seqs[-1]
