"""How a batch's readings are packed into one SQLite row.

The payload is the JSON array of the MQTT contract's ``per_batch`` readings
(``[{"tag", "value", "quality", "ts", "seq"}, ...]``): a per_batch message is built around
it without decoding anything, and a row stays readable with any SQLite shell.
"""

from __future__ import annotations

import json
import math

from gateway.models import Batch, Quality, Reading, json_text

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
    # this runs for every reading the gateway takes, and is 2-3x faster. Numbers are written
    # exactly as json writes them.
    quoted = _QUOTED.get
    isfinite = math.isfinite
    parts = []
    for tag, value, quality, ts, seq in zip(
        batch.tags, batch.values, batch.qualities, batch.stamps, batch.seqs, strict=True
    ):
        kind = type(value)  # the common numbers inline; the rest as json_text writes them
        if kind is int:
            text = int.__repr__(value)
        elif kind is float:
            text = float.__repr__(value) if isfinite(value) else "null"  # type: ignore[arg-type]
        else:
            text = json_text(value)
        parts.append(_READING % (quoted(tag) or _quoted(tag), text, quality, ts, seq))
    return f"[{','.join(parts)}]".encode()


def unpack(payload: bytes) -> list[Reading]:
    """The inverse of :func:`pack`."""
    return [
        Reading(d["tag"], d["value"], _QUALITY[d["quality"]], d["ts"], d["seq"])
        for d in json.loads(payload)
    ]
