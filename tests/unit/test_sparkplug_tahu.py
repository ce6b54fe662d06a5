"""Our payloads as an independent implementation reads them: Eclipse Tahu's JavaScript codec
(sparkplug-payload, run with node; ``make node-deps`` installs it).

Where Tahu and the specification disagree, the specification wins: the check in question
reads the raw protobuf field Tahu decoded instead of Tahu's interpretation, and says why.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.models import Batch, Quality, Reading, Value
from gateway.sparkplug.datatypes import DataType
from gateway.sparkplug.metrics import Aliases, SourceMetrics, TagHint
from gateway.sparkplug.payloads import Current, dbirth, ddata, ddeath, nbirth, ndeath
from tests.sparkplug_js.tahu import decode_with_tahu

T = DataType
NOW = 1763762540500
STAMP = 1763762540123

# tag: (declared PLC type, value, the type Tahu should report, the value Tahu should read)
SCALARS: dict[str, tuple[str, Value, str, Any]] = {
    "i8": ("SINT", -128, "Int8", -128),
    "i16": ("INT", -30000, "Int16", -30000),
    "i32": ("DINT", -(2**31), "Int32", -(2**31)),
    "i64": ("LINT", -(2**63), "Int64", -(2**63)),
    "u8": ("USINT", 255, "UInt8", 255),
    "u16": ("UINT", 65535, "UInt16", 65535),
    "u64": ("ULINT", 2**64 - 1, "UInt64", 2**64 - 1),
    "f32": ("REAL", -0.375, "Float", -0.375),
    "f64": ("LREAL", 1e300, "Double", 1e300),
    "flag": ("BOOL", True, "Boolean", True),
    "text": ("STRING", "Grüße, 温度 ✓", "String", "Grüße, 温度 ✓"),
    "when": ("DateTime", "2025-11-21T22:02:20.123Z", "DateTime", STAMP),
    "id": ("Guid", "0b6d5b2e-8a59-4f0e-9a55-1f2f3c4d5e6f", "UUID", None),
    "blob": ("ByteString", "AAEC/w==", "Bytes", b"\x00\x01\x02\xff"),
    "udt.member": ("LREAL", 2.5, "Double", 2.5),
}
ARRAYS: dict[str, tuple[str, list[Value], int, str]] = {  # ..., datatype number, bytes
    "bools": ("BOOL", [True, False, True], T.BooleanArray, "03 00 00 00 a0"),
    "words": ("STRING", ["a", "ü"], T.StringArray, "61 00 c3 bc 00"),
    "ints": ("DINT", [-1, 2], T.Int32Array, "ff ff ff ff 02 00 00 00"),
    "reals": ("REAL", [0.5, -1.0], T.FloatArray, "00 00 00 3f 00 00 80 bf"),
}


def lab() -> tuple[SourceMetrics, Batch]:
    hints = {
        tag: TagHint(plc, "degC" if tag == "f64" else None) for tag, (plc, *_) in SCALARS.items()
    }
    hints |= {tag: TagHint(plc) for tag, (plc, *_) in ARRAYS.items()}
    hints |= {"u32": TagHint("UDINT"), "nan": TagHint("LREAL"), "null": TagHint("DINT")}
    readings = [Reading(tag, v, Quality.GOOD, STAMP, 1) for tag, (_, v, *_) in SCALARS.items()]
    readings += [Reading(tag, v, Quality.GOOD, STAMP, 1) for tag, (_, v, *_) in ARRAYS.items()]
    readings += [
        Reading("u32", 2**32 - 1, Quality.UNCERTAIN, STAMP - 1, 1),
        Reading("nan", math.nan, Quality.GOOD, STAMP, 1),
        Reading("null", None, Quality.BAD, STAMP - 2, 1),
    ]
    batch = Batch("lab", NOW, readings)
    metrics = SourceMetrics("lab", Aliases(), hints)
    metrics.learn(batch.tags, batch.values)
    return metrics, batch


def current(batch: Batch) -> dict[str, Current]:
    return {r.tag: (r.value, r.quality, r.ts) for r in batch.readings}


def by_name(decoded: dict[str, Any], part: str) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in decoded[part]["metrics"]}


def test_nbirth_and_ndeath() -> None:
    birth, death = decode_with_tahu([nbirth(7, 0, NOW), ndeath(7, NOW)])
    assert birth["tahu"] == {
        "timestamp": NOW,
        "seq": 0,
        "metrics": [
            {"name": "bdSeq", "alias": 1, "timestamp": NOW, "type": "Int64", "value": 7},
            {
                "name": "Node Control/Rebirth",
                "alias": 2,
                "timestamp": NOW,
                "type": "Boolean",
                "value": False,
            },
        ],
    }
    assert death["tahu"] == {
        "timestamp": NOW,
        "metrics": [{"name": "bdSeq", "timestamp": NOW, "type": "Int64", "value": 7}],
    }
    assert "seq" not in death["raw"]


def test_dbirth_names_types_values_and_properties() -> None:
    metrics, batch = lab()
    (decoded,) = decode_with_tahu([dbirth(metrics, current(batch), 1, NOW)])
    assert decoded["tahu"]["seq"] == 1
    assert decoded["tahu"]["timestamp"] == NOW
    tahu, raw = by_name(decoded, "tahu"), by_name(decoded, "raw")
    for tag, (_, value, kind, read) in SCALARS.items():
        name = tag.replace(".", "/")
        assert tahu[name]["type"] == kind, name
        assert tahu[name]["value"] == (value if read is None else read), name
        assert tahu[name]["timestamp"] == STAMP
        assert tahu[name]["alias"] == metrics.spec(tag).alias
    assert tahu["f64"]["properties"] == {
        "Quality": {"type": "Int32", "value": 192},
        "engUnit": {"type": "String", "value": "degC"},
    }
    assert tahu["i8"]["properties"] == {"Quality": {"type": "Int32", "value": 192}}
    assert math.isnan(tahu["nan"]["value"])
    assert tahu["null"]["value"] is None
    assert raw["null"]["isNull"] is True
    assert tahu["null"]["properties"] == {"Quality": {"type": "Int32", "value": 0}}
    assert tahu["null"]["timestamp"] == STAMP - 2

    # UInt32: the specification (3.0, "Datatype Details") carries it in int_value (uint32);
    # Tahu's JavaScript codec reads it from long_value (and so sees 0). The spec wins: the
    # check reads the raw field.
    assert tahu["u32"]["type"] == "UInt32"
    assert raw["u32"]["intValue"] == 2**32 - 1
    assert "longValue" not in raw["u32"]
    assert tahu["u32"]["properties"] == {"Quality": {"type": "Int32", "value": 64}}

    # Arrays: sparkplug-payload 1.0.3 predates the array types (it reads neither their type
    # nor their value), so the checks read the raw datatype and bytes, packed as the spec says.
    for tag, (_, _, datatype, packed) in ARRAYS.items():
        assert raw[tag]["datatype"] == datatype, tag
        assert raw[tag]["bytesValue"] == bytes.fromhex(packed), tag


def test_ddata_aliases_timestamps_history_and_quality() -> None:
    metrics, batch = lab()
    live, replayed = decode_with_tahu(
        [ddata(metrics, batch, 2, NOW), ddata(metrics, batch, 3, NOW, True)]
    )
    assert (live["tahu"]["seq"], replayed["tahu"]["seq"]) == (2, 3)
    for decoded, historical in ((live, False), (replayed, True)):
        tahu, raw = decoded["tahu"]["metrics"], decoded["raw"]["metrics"]
        assert [m["alias"] for m in tahu] == [metrics.spec(tag).alias for tag in batch.tags]
        assert all("name" not in m for m in raw)  # data messages name metrics by alias only
        assert all("datatype" not in m for m in raw)  # and carry no type (spec: SHOULD NOT)
        assert [m["timestamp"] for m in tahu] == batch.stamps
        assert all(m.get("isHistorical", False) is historical for m in tahu)
        props = {tag: m.get("properties") for tag, m in zip(batch.tags, tahu, strict=True)}
        assert props["u32"] == {"Quality": {"type": "Int32", "value": 64}}
        assert props["null"] == {"Quality": {"type": "Int32", "value": 0}}
        assert props["i8"] is None  # good quality is the default: no property
        # Without a datatype in the metric, Tahu's decodePayload cannot say a value (it
        # types values by the metric's own datatype): the values are read from the raw
        # fields, where the DBIRTH's types put them.
        values = dict(zip(batch.tags, raw, strict=True))
        assert values["i8"]["intValue"] == 2**32 - 128  # two's complement, 32 bits wide
        assert values["i64"]["longValue"] == 2**63
        assert values["u32"]["intValue"] == 2**32 - 1
        assert values["f32"]["floatValue"] == -0.375
        assert math.isnan(values["nan"]["doubleValue"])
        assert values["text"]["stringValue"] == "Grüße, 温度 ✓"
        assert values["when"]["longValue"] == STAMP
        assert values["flag"]["booleanValue"] is True
        assert values["null"]["isNull"] is True
        assert values["ints"]["bytesValue"] == bytes.fromhex(ARRAYS["ints"][3])


def test_ddeath() -> None:
    (decoded,) = decode_with_tahu([ddeath(4, NOW)])
    assert decoded["tahu"] == {"timestamp": NOW, "seq": 4, "metrics": []}


def test_a_large_ddata() -> None:
    n = 10_000
    tags = [f"line.tag{i}" for i in range(n)]
    values: list[Value] = [float(i) / 8 for i in range(n)]
    metrics = SourceMetrics("big", Aliases())
    metrics.learn(tags, values)
    batch = Batch.of_columns("big", NOW, tags, values, [Quality.GOOD] * n, [STAMP] * n, 1)
    (decoded,) = decode_with_tahu([ddata(metrics, batch, 9, NOW)])
    raw = decoded["raw"]["metrics"]
    assert len(raw) == n
    assert [m["doubleValue"] for m in raw] == values
    assert [m["alias"] for m in raw] == [metrics.spec(t).alias for t in tags]


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff", b"\x12\x05\x08"])
def test_tahu_refuses_what_we_refuse(garbage: bytes) -> None:
    # Not a check of Tahu: a check that the harness reports a refusal rather than inventing
    # a payload, so the tests above cannot pass on an error.
    (decoded,) = decode_with_tahu([garbage])
    assert "error" in decoded
