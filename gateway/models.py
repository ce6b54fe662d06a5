"""The shared data model: readings, batches and their quality."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

# What a tag value can be once decoded: JSON-friendly on purpose.
Value = bool | int | float | str | None | list["Value"] | dict[str, "Value"]


def epoch_ms() -> int:
    """Now, in milliseconds since the epoch: the unit of every timestamp in the contract."""
    return time.time_ns() // 1_000_000


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


@dataclass(slots=True)
class Reading:
    """One tag's value as the gateway reports it, numbered by the source's ``seq``."""

    tag: str
    value: Value
    quality: Quality
    ts: int  # epoch ms
    seq: int


@dataclass(slots=True)
class Batch:
    """One source's readings from one scan: the unit of storage and of work."""

    source: str
    ts: int  # epoch ms of the scan
    readings: list[Reading] = field(default_factory=list)

    @property
    def first_seq(self) -> int:
        """The seq of the first reading."""
        return self.readings[0].seq

    @property
    def last_seq(self) -> int:
        """The seq of the last reading."""
        return self.readings[-1].seq
