"""The JSON MQTT contract: per_tag and per_batch messages built from a stored batch."""

from __future__ import annotations

import json
import math

from buffer.codec import pack
from gateway.encode import per_batch, per_tag
from gateway.models import Batch, Quality, Reading

READINGS = [
    Reading("temp", 21.5, Quality.GOOD, 1000, 7),
    Reading("count", 12, Quality.GOOD, 1001, 8),
    Reading("broken", math.nan, Quality.BAD, 1002, 9),
    Reading("running", True, Quality.UNCERTAIN, 1003, 10),
    Reading("recipe.name", 'say "hi" ✓', Quality.GOOD, 1004, 11),
    Reading("profile", [1.5, None], Quality.GOOD, 1005, 12),
]


def expected(r: Reading, historical: bool) -> bytes:
    value = None if isinstance(r.value, float) and math.isnan(r.value) else r.value
    body = {"value": value, "quality": r.quality.value, "ts": r.ts, "seq": r.seq}
    if historical:
        body["historical"] = True
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def test_per_tag_is_one_message_per_reading_on_its_own_topic() -> None:
    payload = pack(Batch("press1", 999, READINGS))
    for historical in (False, True):
        messages = list(per_tag("acme/line1", "press1", payload, historical))
        assert messages == [
            (f"acme/line1/press1/{r.tag}", expected(r, historical)) for r in READINGS
        ]


def test_per_batch_wraps_the_stored_array() -> None:
    payload = pack(Batch("press1", 999, READINGS))
    topic, body = per_batch("acme/line1", "press1", 999, payload, historical=True)
    assert topic == "acme/line1/press1"
    message = json.loads(body)
    assert message["ts"] == 999
    assert message["historical"] is True
    assert [r["seq"] for r in message["readings"]] == [7, 8, 9, 10, 11, 12]
    assert message["readings"][2]["value"] is None
