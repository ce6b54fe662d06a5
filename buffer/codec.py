"""How a batch's readings are packed into one SQLite row.

The payload is the JSON array of the MQTT contract's ``per_batch`` readings
(``[{"tag", "value", "quality", "ts", "seq"}, ...]``): a per_batch message is built around
it without decoding anything, and a row stays readable with any SQLite shell.
"""

from __future__ import annotations

import json
import math
from itertools import chain

from gateway.models import Batch, ByIdentity, Quality, Reading, ScanTags, Value, json_text

_QUALITY = {q.value: q for q in Quality}


_READING = '{"tag":%s,"value":%s,"quality":"%s","ts":%d,"seq":%d}'
_QUOTED: dict[str, str] = {}  # tag names recur every scan: each is escaped once
_QUOTED_MAX = 100_000


def _quoted(tag: str) -> str:
    quoted = _QUOTED.get(tag)
    if quoted is None:
        if len(_QUOTED) >= _QUOTED_MAX:  # bounded, whatever names come and go
            _QUOTED.clear()
        quoted = _QUOTED[tag] = json_text(tag)
    return quoted


def pack(batch: Batch) -> bytes:
    """A batch's readings to the per_batch JSON array."""
    # Formatted by hand from the batch's columns, not by json.dumps of one dict per reading:
    # this runs for every reading the gateway takes. Numbers are written exactly as json does.
    if isinstance(batch.tags, ScanTags) and _plain_numbers(batch.values):
        template = _TEMPLATES.get(batch.tags, _template)
        columns = zip(batch.values, batch.qualities, batch.stamps, batch.seqs, strict=True)
        return (template % tuple(chain.from_iterable(columns))).encode()
    quoted = _QUOTED.get
    parts = [
        _READING % (quoted(tag) or _quoted(tag), json_text(value), quality, ts, seq)
        for tag, value, quality, ts, seq in zip(
            batch.tags, batch.values, batch.qualities, batch.stamps, batch.seqs, strict=True
        )
    ]
    return f"[{','.join(parts)}]".encode()


def _template(tags: ScanTags) -> str:
    """A whole scan's array with holes for its values: one C-level format per batch."""
    reading = '{"tag":%s,"value":%%r,"quality":"%%s","ts":%%d,"seq":%%d}'
    return "[" + ",".join(reading % (_quoted(tag).replace("%", "%%")) for tag in tags) + "]"


# Per list of tag names a source reuses every scan.
_TEMPLATES: ByIdentity[ScanTags, str] = ByIdentity()


def _plain_numbers(values: list[Value]) -> bool:
    """True when every value is an int or a finite float, written by %r exactly as json does."""
    kinds = set(map(type, values))
    if not kinds <= {int, float}:
        return False
    try:  # any NaN or infinity makes the sum one (so may a huge one: then the slow way)
        return float not in kinds or math.isfinite(sum(values))  # type: ignore[arg-type]
    except OverflowError:
        return False


def unpack(payload: bytes) -> list[Reading]:
    """The inverse of :func:`pack`."""
    return [
        Reading(d["tag"], d["value"], _QUALITY[d["quality"]], d["ts"], d["seq"])
        for d in json.loads(payload)
    ]
