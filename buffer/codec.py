"""How a batch's readings are packed into one SQLite row.

The payload is the JSON array of the MQTT contract's ``per_batch`` readings
(``[{"tag", "value", "quality", "ts", "seq"}, ...]``): a per_batch message is built around
it without decoding anything, and a row stays readable with any SQLite shell.
"""

from __future__ import annotations

import json
import math

from gateway.models import Quality, Reading, Value

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
_QUALITY = {q.value: q for q in Quality}


def json_safe(value: Value) -> Value:
    """NaN and infinities are not JSON: they are stored and published as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def pack(readings: list[Reading]) -> bytes:
    """Readings to the per_batch JSON array."""
    return _dumps(
        [
            {
                "tag": r.tag,
                "value": json_safe(r.value) if type(r.value) in (float, list) else r.value,
                "quality": r.quality.value,
                "ts": r.ts,
                "seq": r.seq,
            }
            for r in readings
        ]
    ).encode()


def unpack(payload: bytes) -> list[Reading]:
    """The inverse of :func:`pack`."""
    return [
        Reading(d["tag"], d["value"], _QUALITY[d["quality"]], d["ts"], d["seq"])
        for d in json.loads(payload)
    ]
