"""The shared data model: readings, batches and their quality."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import repeat

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
    """What a connector read for one tag: value, quality, the device's timestamp if any, and
    why it is not good when the connector can say (the runtime logs it when the quality changes).
    """

    value: Value
    quality: Quality = Quality.GOOD
    ts: int | None = None  # epoch ms from the device, when the protocol gives one
    reason: str | None = None  # e.g. "Modbus exception 2 (illegal data address)"


BAD_SAMPLE = Sample(None, Quality.BAD)


class Samples:
    """A scan's samples as columns, in the order of the tags read.

    What a connector that reads thousands of tags per scan returns instead of one
    :class:`Sample` object per tag. ``reasons`` says why a sample is not good, by its index, for
    the samples the connector can explain (one entry per tag of a refused request, say); the
    runtime logs them when a tag's quality changes, so a connector never logs a tag's quality.
    """

    __slots__ = ("qualities", "reasons", "stamps", "values")

    def __init__(
        self,
        values: list[Value],
        qualities: list[Quality],
        stamps: list[int | None] | None = None,
        reasons: dict[int, str] | None = None,
    ) -> None:
        self.values = values
        self.qualities = qualities
        self.stamps = stamps  # None: no device timestamps, the scan's time stands for all
        self.reasons = reasons  # None: no sample's quality explained

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Samples:
        """The same samples as columns."""
        qualities = [s.quality for s in samples]
        reasons: dict[int, str] | None = None
        if qualities.count(Quality.GOOD) != len(qualities):  # else nothing to explain
            reasons = {i: s.reason for i, s in enumerate(samples) if s.reason is not None}
        return cls([s.value for s in samples], qualities, [s.ts for s in samples], reasons)

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Sample]:
        stamps = self.stamps if self.stamps is not None else repeat(None)
        reasons = map((self.reasons or {}).get, range(len(self.values)))
        return map(Sample, self.values, self.qualities, stamps, reasons)

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


class Batch:
    """One source's readings from one scan: the unit of storage and of work.

    Held as columns, not as one :class:`Reading` object per tag: a 10,000-tag scan is
    numbered and packed straight from them; :attr:`readings` builds the objects on demand.
    """

    __slots__ = ("qualities", "seqs", "source", "stamps", "tags", "ts", "values")

    def __init__(self, source: str, ts: int, readings: Sequence[Reading] = ()) -> None:
        self.source = source
        self.ts = ts  # epoch ms of the scan
        self.tags: Sequence[str] = [r.tag for r in readings]
        self.values: list[Value] = [r.value for r in readings]
        self.qualities: list[Quality] = [r.quality for r in readings]
        self.stamps: list[int] = [r.ts for r in readings]  # each reading's epoch ms
        self.seqs: Sequence[int] = [r.seq for r in readings]

    @classmethod
    def of_columns(
        cls,
        source: str,
        ts: int,
        tags: Sequence[str],
        values: list[Value],
        qualities: list[Quality],
        stamps: list[int],
        first_seq: int,
    ) -> Batch:
        """A batch from its columns, numbered from ``first_seq`` on.

        ``tags`` may be shared by many batches (a scan's tuple of names): it is never changed.
        """
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
