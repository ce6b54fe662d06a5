"""The JSON MQTT contract: topics and payloads for the per_tag and per_batch layouts."""

from __future__ import annotations

import json
from collections.abc import Iterator

from gateway.models import Reading

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def per_tag(
    prefix: str, source: str, readings: list[Reading], historical: bool
) -> Iterator[tuple[str, bytes]]:
    """One message per reading on ``{prefix}/{source}/{tag}`` (values come JSON-safe from the
    buffer: NaN and infinities were stored as null)."""
    for r in readings:
        body: dict[str, object] = {
            "value": r.value,
            "quality": r.quality.value,
            "ts": r.ts,
            "seq": r.seq,
        }
        if historical:
            body["historical"] = True
        yield f"{prefix}/{source}/{r.tag}", _dumps(body).encode()


def per_batch(
    prefix: str, source: str, ts: int, payload: bytes, historical: bool
) -> tuple[str, bytes]:
    """One message per batch on ``{prefix}/{source}``, built around the stored readings array."""
    head = (
        f'{{"ts":{ts},"historical":true,"readings":' if historical else f'{{"ts":{ts},"readings":'
    )
    return f"{prefix}/{source}", head.encode() + payload + b"}"
