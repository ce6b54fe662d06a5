"""The newest committed reading of every tag: what a subscriber arriving now should be told.

Kept in memory, fed by the buffer's writer after each commit. After a restart it fills again
from the first scan (report-by-exception starts empty, so every tag is reported once), so the
broker's retained values and Sparkplug births can always carry a current value and quality.
"""

from __future__ import annotations

from gateway.models import Batch, Quality, Reading, Value

Newest = tuple[Value, Quality, int, int]  # value, quality, ts, seq


class LatestValues:
    """The newest committed reading per source and tag.

    Kept lazily: a commit notes its batch (O(1), whatever its size), and a batch whose tags are
    all in a newer one is dropped unread; the readings are folded into one per tag only when
    asked (at a connect) or when a source has many different tag lists waiting (report by
    exception), so a 10,000-tag scan costs no per-reading work here.
    """

    FOLD_AFTER = 32  # tag lists noted per source before they are folded

    def __init__(self) -> None:
        self._folded: dict[str, dict[str, Newest]] = {}
        self._recent: dict[str, dict[tuple[str, ...], Batch]] = {}  # in commit order

    def update(self, batch: Batch) -> None:
        """Note a committed batch (its readings are newer than what is known of its tags)."""
        recent = self._recent.setdefault(batch.source, {})
        tags = tuple(batch.tags)
        recent.pop(tags, None)  # every reading of it is superseded by this batch
        recent[tags] = batch
        if len(recent) > self.FOLD_AFTER:
            self._fold(batch.source)

    def _fold(self, source: str) -> None:
        recent = self._recent.pop(source, None)
        if recent is None:
            return
        newest = self._folded.setdefault(source, {})
        for batch in recent.values():  # oldest first: newer ones win
            newest.update(
                zip(
                    batch.tags,
                    zip(batch.values, batch.qualities, batch.stamps, batch.seqs, strict=True),
                    strict=True,
                )
            )

    def readings(self, source: str) -> list[Reading]:
        """The newest reading of each of a source's tags (in no promised order)."""
        self._fold(source)
        return [Reading(tag, *newest) for tag, newest in self._folded.get(source, {}).items()]

    def sources(self) -> list[str]:
        """Sources with at least one committed reading."""
        return list(dict.fromkeys([*self._folded, *self._recent]))

    def forget(self, source: str, tags: set[str] | None = None) -> None:
        """Drop a source (or some of its tags) that the tag map no longer has."""
        self._fold(source)
        if tags is None:
            self._folded.pop(source, None)
            return
        known = self._folded.get(source, {})
        for tag in tags:
            known.pop(tag, None)
