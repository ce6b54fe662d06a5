"""The JSON MQTT contract: topics and payloads for the per_tag and per_batch layouts."""

from __future__ import annotations

import json
from collections.abc import Iterator

from gateway.models import json_text

# Formatted, not json.dumps'd: one message per reading is the hot path of the per_tag layout.
_BODY = '{"value":%s,"quality":"%s","ts":%d,"seq":%d%s'


def per_tag(
    prefix: str, source: str, payload: bytes, historical: bool
) -> Iterator[tuple[str, bytes]]:
    """One message per reading on ``{prefix}/{source}/{tag}``, from a stored readings array
    (its values are JSON-safe already: NaN and infinities were stored as null)."""
    topic = f"{prefix}/{source}/"
    tail = ',"historical":true}' if historical else "}"
    for r in json.loads(payload):
        body = _BODY % (json_text(r["value"]), r["quality"], r["ts"], r["seq"], tail)
        yield topic + r["tag"], body.encode()


def per_batch(
    prefix: str, source: str, ts: int, payload: bytes, historical: bool
) -> tuple[str, bytes]:
    """One message per batch on ``{prefix}/{source}``, built around the stored readings array."""
    head = (
        f'{{"ts":{ts},"historical":true,"readings":' if historical else f'{{"ts":{ts},"readings":'
    )
    return f"{prefix}/{source}", head.encode() + payload + b"}"
