"""How a batch's readings are packed into one SQLite row."""

from __future__ import annotations

import json

from gateway.models import Quality, Reading

_QUALITY = {Quality.GOOD: 0, Quality.BAD: 1, Quality.UNCERTAIN: 2}
_QUALITY_BACK = {v: k for k, v in _QUALITY.items()}


def pack(readings: list[Reading]) -> bytes:
    """Readings to a compact JSON array; their seqs are implicit (consecutive from first_seq)."""
    return json.dumps(
        [[r.tag, r.value, _QUALITY[r.quality], r.ts] for r in readings], separators=(",", ":")
    ).encode()


def unpack(payload: bytes, first_seq: int) -> list[Reading]:
    """The inverse of :func:`pack`."""
    return [
        Reading(tag, value, _QUALITY_BACK[q], ts, first_seq + i)
        for i, (tag, value, q, ts) in enumerate(json.loads(payload))
    ]
