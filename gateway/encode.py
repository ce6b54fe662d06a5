"""The JSON MQTT contract: topics and payloads for the per_tag and per_batch layouts."""

from __future__ import annotations

import json
from collections.abc import Iterator

from gateway.models import Reading

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def _reading(r: Reading, historical: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "value": r.value,
        "quality": r.quality.value,
        "ts": r.ts,
        "seq": r.seq,
    }
    if historical:
        body["historical"] = True
    return body


def _safe(value: object) -> object:
    """NaN and infinities are not JSON: publish them as null (the quality still tells)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def per_tag(
    prefix: str, source: str, readings: list[Reading], historical: bool
) -> Iterator[tuple[str, bytes]]:
    """One message per reading on ``{prefix}/{source}/{tag}``."""
    for r in readings:
        body = _reading(r, historical)
        body["value"] = _safe(r.value)
        yield f"{prefix}/{source}/{r.tag}", _dumps(body).encode()


def per_batch(
    prefix: str, source: str, ts: int, readings: list[Reading], historical: bool
) -> tuple[str, bytes]:
    """One message per batch on ``{prefix}/{source}``."""
    items = []
    for r in readings:
        item = {
            "tag": r.tag,
            "value": _safe(r.value),
            "quality": r.quality.value,
            "ts": r.ts,
            "seq": r.seq,
        }
        items.append(item)
    body: dict[str, object] = {"ts": ts, "readings": items}
    if historical:
        body["historical"] = True
    return f"{prefix}/{source}", _dumps(body).encode()
