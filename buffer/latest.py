"""The newest committed reading of every tag: what a subscriber arriving now should be told.

Kept in memory, fed by the buffer's writer after each commit. After a restart it fills again
from the first scan (report-by-exception starts empty, so every tag is reported once), so the
broker's retained values and Sparkplug births can always carry a current value and quality.
"""

from __future__ import annotations

from gateway.models import Batch, Quality, Reading, Value

Newest = tuple[Value, Quality, int, int]  # value, quality, ts, seq


class LatestValues:
    """The newest committed reading per source and tag."""

    def __init__(self) -> None:
        self._sources: dict[str, dict[str, Newest]] = {}

    def update(self, batch: Batch) -> None:
        """Note a committed batch (its readings are newer than what is known of its tags)."""
        tags = self._sources.setdefault(batch.source, {})
        tags.update(
            zip(
                batch.tags,
                zip(batch.values, batch.qualities, batch.stamps, batch.seqs, strict=True),
                strict=True,
            )
        )

    def readings(self, source: str) -> list[Reading]:
        """The newest reading of each of a source's tags, in the order they were first seen."""
        return [Reading(tag, *newest) for tag, newest in self._sources.get(source, {}).items()]

    def sources(self) -> list[str]:
        """Sources with at least one committed reading."""
        return list(self._sources)

    def forget(self, source: str, tags: set[str] | None = None) -> None:
        """Drop a source (or some of its tags) that the tag map no longer has."""
        if tags is None:
            self._sources.pop(source, None)
            return
        known = self._sources.get(source, {})
        for tag in tags:
            known.pop(tag, None)
