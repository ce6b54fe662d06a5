"""The edge node's payloads: byte for byte what the protobuf library writes for the same
message, and back through our decoder."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.models import Batch, Quality, Reading
from gateway.sparkplug.datatypes import DataType
from gateway.sparkplug.decode import decode_payload
from gateway.sparkplug.metrics import Aliases, SourceMetrics, TagHint
from gateway.sparkplug.payloads import Current, dbirth, ddata, ddeath, nbirth, ndeath
from gateway.sparkplug.sparkplug_b_pb2 import Payload

T = DataType
Metric = Payload.Metric
NOW = 1763762540500


def quality(code: int) -> Payload.PropertyValue:
    return Payload.PropertyValue(type=T.Int32, int_value=code)


def props(code: int | None = None, units: str | None = None) -> Payload.PropertySet:
    keys, values = [], []
    if code is not None:
        keys.append("Quality")
        values.append(quality(code))
    if units is not None:
        keys.append("engUnit")
        values.append(Payload.PropertyValue(type=T.String, string_value=units))
    return Payload.PropertySet(keys=keys, values=values)


def reference(**fields: Any) -> bytes:
    return Payload(**fields).SerializeToString()


READINGS = [
    Reading("oil_temp", 21.5, Quality.GOOD, 1000, 7),
    Reading("count", -12, Quality.UNCERTAIN, 1001, 8),
    Reading("recipe.name", "Öl ✓", Quality.GOOD, 1002, 9),
    Reading("broken", None, Quality.BAD, 1003, 10),
    Reading("running", True, Quality.GOOD, 1004, 11),
    Reading("profile", [1.5, -2.0], Quality.GOOD, 1005, 12),
]


def press() -> SourceMetrics:
    metrics = SourceMetrics("press1", Aliases())
    metrics.declare("oil_temp", "float64", "degC")
    metrics.declare("count", "int16")
    metrics.learn([r.tag for r in READINGS], [r.value for r in READINGS])
    return metrics


def test_nbirth_has_bdseq_and_rebirth() -> None:
    assert nbirth(3, 0, NOW) == reference(
        timestamp=NOW,
        metrics=[
            Metric(name="bdSeq", alias=1, timestamp=NOW, datatype=T.Int64, long_value=3),
            Metric(
                name="Node Control/Rebirth",
                alias=2,
                timestamp=NOW,
                datatype=T.Boolean,
                boolean_value=False,
            ),
        ],
        seq=0,
    )


def test_nbirth_offers_next_server_when_asked() -> None:
    names = [m.name for m in Payload.FromString(nbirth(0, 0, NOW, next_server=True)).metrics]
    assert names == ["bdSeq", "Node Control/Rebirth", "Node Control/Next Server"]


def test_ndeath_has_bdseq_and_no_seq() -> None:
    assert ndeath(255, NOW) == reference(
        timestamp=NOW,
        metrics=[Metric(name="bdSeq", timestamp=NOW, datatype=T.Int64, long_value=255)],
    )
    assert not Payload.FromString(ndeath(0, NOW)).HasField("seq")


def test_dbirth_declares_every_metric_with_its_current_value() -> None:
    metrics = press()
    current: dict[str, Current] = {r.tag: (r.value, r.quality, r.ts) for r in READINGS}
    del current["running"]  # never read yet
    current["profile"] = ([1.5, "x"], Quality.GOOD, 1005)  # a value its type cannot carry
    good = props(192)
    assert dbirth(metrics, current, 1, NOW) == reference(
        timestamp=NOW,
        metrics=[
            Metric(
                name="oil_temp",
                alias=16,
                timestamp=1000,
                datatype=T.Double,
                properties=props(192, "degC"),
                double_value=21.5,
            ),
            Metric(
                name="count",
                alias=17,
                timestamp=1001,
                datatype=T.Int16,
                properties=props(64),
                int_value=2**32 - 12,
            ),
            Metric(
                name="recipe/name",
                alias=18,
                timestamp=1002,
                datatype=T.String,
                properties=good,
                string_value="Öl ✓",
            ),
            Metric(
                name="broken",
                alias=19,
                timestamp=1003,
                datatype=T.Unknown,
                is_null=True,
                properties=props(0),
            ),
            Metric(
                name="running",
                alias=20,
                timestamp=NOW,
                datatype=T.Boolean,
                is_null=True,
                properties=props(0),
            ),
            Metric(
                name="profile",
                alias=21,
                timestamp=1005,
                datatype=T.DoubleArray,
                is_null=True,
                properties=props(0),
            ),
        ],
        seq=1,
    )


@pytest.mark.parametrize("historical", [False, True])
def test_ddata_is_aliases_values_and_what_is_not_good(historical: bool) -> None:
    batch = Batch("press1", 999, READINGS)
    flag: dict[str, bool] = {"is_historical": True} if historical else {}
    assert ddata(press(), batch, 2, NOW, historical) == reference(
        timestamp=NOW,
        metrics=[
            Metric(alias=16, timestamp=1000, **flag, double_value=21.5),
            Metric(alias=17, timestamp=1001, **flag, properties=props(64), int_value=2**32 - 12),
            Metric(alias=18, timestamp=1002, **flag, string_value="Öl ✓"),
            Metric(alias=19, timestamp=1003, **flag, is_null=True, properties=props(0)),
            Metric(alias=20, timestamp=1004, **flag, boolean_value=True),
            Metric(
                alias=21,
                timestamp=1005,
                **flag,
                bytes_value=bytes.fromhex("000000000000f83f00000000000000c0"),
            ),
        ],
        seq=2,
    )


def test_ddata_sends_a_value_its_type_cannot_carry_as_bad_null() -> None:
    metrics = press()
    batch = Batch("press1", 999, [Reading("count", 40000, Quality.GOOD, 1000, 1)])  # an Int16
    sent = Payload.FromString(ddata(metrics, batch, 0, NOW)).metrics[0]
    assert sent.is_null
    assert sent.WhichOneof("value") is None
    assert list(sent.properties.keys) == ["Quality"]
    assert sent.properties.values[0].int_value == 0


def test_ddata_of_a_tag_never_learnt_is_a_mistake_of_the_caller() -> None:
    with pytest.raises(KeyError):
        ddata(press(), Batch("press1", 999, [Reading("new", 1, Quality.GOOD, 1, 1)]), 0, NOW)


def test_ddata_of_a_large_scan() -> None:
    n = 10_000
    tags = [f"tag{i}" for i in range(n)]
    values = [i * 0.5 if i % 2 else i for i in range(n)]
    metrics = SourceMetrics("big", Aliases())
    metrics.learn(tags, values)
    batch = Batch.of_columns("big", NOW, tags, values, [Quality.GOOD] * n, [NOW] * n, 1)
    sent = Payload.FromString(ddata(metrics, batch, 9, NOW))
    assert len(sent.metrics) == n
    assert sent.metrics[n - 1].alias == metrics.spec(tags[-1]).alias
    assert sent.metrics[n - 1].double_value == (n - 1) * 0.5
    assert sent.metrics[n - 2].long_value == n - 2


def test_ddeath_is_timestamp_and_seq() -> None:
    assert ddeath(200, NOW) == reference(timestamp=NOW, seq=200)


@pytest.mark.parametrize("bad", [-1, 256])
def test_sequence_numbers_stay_in_0_to_255(bad: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.255"):
        nbirth(0, bad, NOW)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        nbirth(bad, 0, NOW)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        ddeath(bad, NOW)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        ddata(press(), Batch("press1", 1, []), bad, NOW)


def test_round_trip_through_our_decoder() -> None:
    values: dict[str, tuple[str, Any]] = {
        "i8": ("SINT", -128),
        "i16": ("INT", -2),
        "i32": ("DINT", -(2**31)),
        "i64": ("LINT", -(2**63)),
        "u8": ("USINT", 255),
        "u16": ("UINT", 65535),
        "u32": ("UDINT", 2**32 - 1),
        "u64": ("ULINT", 2**64 - 1),
        "f32": ("REAL", 0.25),
        "f64": ("LREAL", -1e300),
        "nan": ("LREAL", math.nan),
        "flag": ("BOOL", False),
        "text": ("STRING", "Grüße, 温度 ✓"),
        "when": ("DateTime", 1763762540123),
        "bools": ("BOOL", [True, False, True]),
        "words": ("STRING", ["a", "", "ü"]),
        "ints": ("DINT", [-1, 0, 1]),
        "reals": ("REAL", [0.5, None]),
        "null": ("DINT", None),
    }
    hints = {tag: TagHint(plc) for tag, (plc, _) in values.items()}  # as a controller says
    metrics = SourceMetrics("lab", Aliases(), hints)
    batch = Batch(
        "lab", NOW, [Reading(tag, v, Quality.GOOD, NOW, 1) for tag, (_, v) in values.items()]
    )
    metrics.learn(batch.tags, batch.values)
    births = {s.alias: (s.name, s.datatype) for s in metrics.specs}
    for payload in (
        dbirth(metrics, {r.tag: (r.value, r.quality, r.ts) for r in batch.readings}, 0, NOW),
        ddata(metrics, batch, 1, NOW),
    ):
        decoded = {m["name"]: m["value"] for m in decode_payload(payload, births)["metrics"]}
        assert math.isnan(decoded.pop("nan"))  # type: ignore[arg-type]
        reals = decoded.pop("reals")
        assert isinstance(reals, list)
        assert reals[0] == 0.5
        assert math.isnan(reals[1])  # type: ignore[arg-type]
        assert decoded == {tag: v for tag, (_, v) in values.items() if tag not in ("nan", "reals")}
