"""The JSON MQTT contract: per_tag and per_batch messages, checked against json.dumps."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from buffer.rows import StoredBatch, decode, encode
from gateway.encode import JsonEncoder
from gateway.models import Batch, Quality, Reading, Value

READINGS = [
    Reading("temp", 21.5, Quality.GOOD, 1000, 7),
    Reading("count", 12, Quality.GOOD, 1001, 8),
    Reading("broken", math.nan, Quality.BAD, 1002, 9),
    Reading("running", True, Quality.UNCERTAIN, 1003, 10),
    Reading("recipe.name", 'say "hi" ✓ 100%', Quality.GOOD, 1004, 11),
    Reading("profile", [1.5, None, math.inf], Quality.GOOD, 1005, 12),
]


def stored(readings: list[Reading], ts: int = 999) -> StoredBatch:
    return decode(1, encode(Batch("press1", ts, readings)))


def safe(value: Any) -> Any:
    """What the contract writes for a value: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [safe(v) for v in value]
    return value


def reference(r: Reading, historical: bool, with_tag: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"tag": r.tag} if with_tag else {}
    body |= {"value": safe(r.value), "quality": r.quality.value, "ts": r.ts, "seq": r.seq}
    if historical and not with_tag:
        body["historical"] = True
    return body


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("historical", [False, True])
def test_per_tag_is_one_message_per_reading_on_its_own_topic(historical: bool) -> None:
    messages = JsonEncoder("acme/line1").per_tag(stored(READINGS), historical)
    assert messages == [
        (f"acme/line1/press1/{r.tag}", dumps(reference(r, historical))) for r in READINGS
    ]


@pytest.mark.parametrize("historical", [False, True])
def test_per_batch_is_exactly_what_json_writes(historical: bool) -> None:
    topic, body = JsonEncoder("acme/line1").per_batch(stored(READINGS), historical)
    head: dict[str, Any] = {"ts": 999}
    if historical:
        head["historical"] = True
    expected = head | {"readings": [reference(r, False, with_tag=True) for r in READINGS]}
    assert topic == "acme/line1/press1"
    assert body == dumps(expected)


@pytest.mark.parametrize(
    "values",
    [
        [1, -2, 2**70, 0],
        [1.5, -0.0, 1e16, 0.1 + 0.2],
        [1, 2.5, 3, 1e-7],
        [1.5, math.nan, 2.0, 3.0],
        [1.5, math.inf, 2.0, 3.0],
        [1e308, 1e308, 1.0, 2.0],  # their sum overflows, each is fine
        [True, 2, 3, 4],
        ["text", 2, None, [1, 2]],
    ],
)
def test_a_whole_scan_encodes_exactly_like_json(values: list[Value]) -> None:
    names = ["a", 'quote "b"', "100%_c", "d%s"]
    encoder = JsonEncoder("p")
    for round_ in range(3):  # the same tag set again: the kept template, new values
        shifted = [v + round_ if type(v) in (int, float) else v for v in values]
        readings = [
            Reading(n, v, Quality.GOOD, 1000 + round_, 7 + 4 * round_ + i)
            for i, (n, v) in enumerate(zip(names, shifted, strict=True))
        ]
        batch = stored(readings, ts=1000 + round_)
        _, body = encoder.per_batch(batch, False)
        expected = {
            "ts": 1000 + round_,
            "readings": [reference(r, False, with_tag=True) for r in readings],
        }
        assert body == dumps(expected)
        assert [m[1] for m in encoder.per_tag(batch, False)] == [
            dumps(reference(r, False)) for r in readings
        ]


def test_current_values_are_live_per_tag_messages() -> None:
    messages = JsonEncoder("acme").current("press1", READINGS[:2])
    assert messages == [
        ("acme/press1/temp", dumps(reference(READINGS[0], False))),
        ("acme/press1/count", dumps(reference(READINGS[1], False))),
    ]
