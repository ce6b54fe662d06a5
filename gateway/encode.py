"""The JSON MQTT contract: topics and payloads for the per_tag and per_batch layouts.

Encoders work from a stored batch's columns (``buffer.rows.StoredBatch``) or from readings;
the buffer knows none of this. Payloads are formatted, not ``json.dumps``'d from one dict per
reading (this is the hot path of every reading), and are byte-for-byte what ``json.dumps``
with compact separators would write (NaN and infinities as ``null``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain

from buffer.rows import StoredBatch, TagSet
from gateway.models import Reading, Value, json_text

_BODY = '{"value":%s,"quality":"%s","ts":%d,"seq":%d%s'
_HISTORICAL = ',"historical":true}'
_LIVE = "}"


def value_texts(values: list[Value]) -> list[str]:
    """Each value as the contract's JSON writes it."""
    kinds = set(map(type, values))
    if kinds == {float}:
        try:
            finite = math.isfinite(sum(values))  # type: ignore[arg-type]
        except OverflowError:
            finite = False
        if finite:
            return list(map(float.__repr__, values))
    elif kinds == {int}:
        return list(map(int.__repr__, values))
    return list(map(json_text, values))


class TagTopics:
    """The topic strings of a tag set under one source, made once per tag set (bounded)."""

    def __init__(self, prefix: str, limit: int = 256) -> None:
        self.prefix = prefix
        self._known: dict[tuple[str, TagSet], list[str]] = {}
        self._limit = limit

    def of(self, source: str, tags: TagSet) -> list[str]:
        """``{prefix}/{source}/{tag}`` for each tag of the set."""
        key = (source, tags)
        topics = self._known.get(key)
        if topics is None:
            if len(self._known) >= self._limit:
                self._known.clear()
            head = f"{self.prefix}/{source}/"
            topics = self._known[key] = [head + tag for tag in tags.names]
        return topics


class BatchTemplates:
    """The readings array of a tag set with holes for its values, one per tag set (bounded)."""

    def __init__(self, limit: int = 256) -> None:
        self._known: dict[TagSet, str] = {}
        self._limit = limit

    def of(self, tags: TagSet) -> str:
        """``[{"tag":"a","value":%s,"quality":"%s","ts":%d,"seq":%d},...]``."""
        template = self._known.get(tags)
        if template is None:
            if len(self._known) >= self._limit:
                self._known.clear()
            reading = '{"tag":%s,"value":%%s,"quality":"%%s","ts":%%d,"seq":%%d}'
            template = self._known[tags] = (
                "["
                + ",".join(reading % json_text(tag).replace("%", "%%") for tag in tags.names)
                + "]"
            )
        return template


class JsonEncoder:
    """per_tag and per_batch messages for one topic prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._topics = TagTopics(prefix)
        self._templates = BatchTemplates()

    def per_tag(self, batch: StoredBatch, historical: bool) -> list[tuple[str, bytes]]:
        """One message per reading on ``{prefix}/{source}/{tag}``."""
        tail = _HISTORICAL if historical else _LIVE
        return [
            (topic, (_BODY % (text, quality, ts, seq, tail)).encode())
            for topic, text, quality, ts, seq in zip(
                self._topics.of(batch.source, batch.tags),
                value_texts(batch.values),
                batch.qualities,
                batch.stamps,
                batch.seqs,
                strict=True,
            )
        ]

    def per_batch(self, batch: StoredBatch, historical: bool) -> tuple[str, bytes]:
        """One message per batch on ``{prefix}/{source}``."""
        head = '{"ts":%d,"historical":true,"readings":' if historical else '{"ts":%d,"readings":'
        columns = zip(
            value_texts(batch.values), batch.qualities, batch.stamps, batch.seqs, strict=True
        )
        body = self._templates.of(batch.tags) % tuple(chain.from_iterable(columns))
        return f"{self.prefix}/{batch.source}", ((head % batch.ts) + body + "}").encode()

    def current(self, source: str, readings: Sequence[Reading]) -> list[tuple[str, bytes]]:
        """Per-tag messages of a source's newest readings (live, to be retained)."""
        head = f"{self.prefix}/{source}/"
        return [
            (head + r.tag, (_BODY % (json_text(r.value), r.quality, r.ts, r.seq, _LIVE)).encode())
            for r in readings
        ]
