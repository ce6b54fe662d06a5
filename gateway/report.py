"""Report by exception: which of a scan's samples become readings (deadband, heartbeat, always)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.models import Quality, Value
from gateway.schema import TagBase


@dataclass(slots=True)
class _Last:
    value: Value
    quality: Quality
    sent_at: float  # monotonic seconds


def changed(old: Value, new: Value, deadband: float) -> bool:
    """True when ``new`` differs from ``old`` by more than the deadband (numbers) or at all."""
    numeric = (int, float)
    if (
        deadband > 0
        and isinstance(old, numeric)
        and isinstance(new, numeric)
        and not isinstance(old, bool)
        and not isinstance(new, bool)
    ):
        return abs(new - old) > deadband
    return old != new or type(old) is not type(new)


def _client_deadband(tag: TagBase) -> float:
    """A percent deadband is the server's job (OPC UA): here it would wrongly act as absolute."""
    return 0.0 if getattr(tag, "deadband_type", None) == "percent" else tag.deadband


class ExceptionReporter:
    """Remembers the last reported value of each tag of one source."""

    def __init__(self) -> None:
        self._last: dict[str, _Last] = {}

    def select(
        self,
        tags: Sequence[TagBase],
        values: Sequence[Value],
        qualities: Sequence[Quality],
        now: float,
    ) -> list[int]:
        """Indices of the samples to report now, and remember them as reported."""
        chosen: list[int] = []
        for i, (tag, value, quality) in enumerate(zip(tags, values, qualities, strict=True)):
            if tag.report == "always":  # nothing to compare with later: nothing to remember
                chosen.append(i)
                continue
            last = self._last.get(tag.name)
            due = (
                last is None
                or quality is not last.quality
                or changed(last.value, value, _client_deadband(tag))
                or (tag.heartbeat is not None and now - last.sent_at >= tag.heartbeat)
            )
            if due:
                chosen.append(i)
                self._last[tag.name] = _Last(value, quality, now)
        return chosen
