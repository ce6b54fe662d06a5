"""OPC UA values to JSON-friendly samples: every built-in type, arrays, status codes, timestamps.

Values go through asyncua's binary encoding and back first, so the test sees the Python
types the wire really decodes to, not the ones we would construct by hand.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import variant_from_binary, variant_to_binary

from connectors.opcua.resolve import node_id
from connectors.opcua.values import epoch_ms, iso_datetime, quality_of, to_sample, to_value
from gateway.models import Quality

VT = ua.VariantType
GUID = uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63")
WHEN = datetime(2025, 11, 21, 18, 2, 20, 123456, tzinfo=UTC)
WHEN_MS = 1763748140123


def status(code: int) -> ua.StatusCode:
    return ua.StatusCode(cast("ua.UInt32", code))


def stamp(when: datetime) -> ua.DateTime:
    return cast("ua.DateTime", when)


def wire(value: Any, vtype: ua.VariantType) -> Any:
    """Encode a Variant as OPC UA binary and decode it again, as a client receives it."""
    variant = ua.Variant(value, vtype)
    return variant_from_binary(Buffer(variant_to_binary(variant))).Value


@pytest.mark.parametrize(
    ("vtype", "value", "expected"),
    [
        (VT.Boolean, True, True),
        (VT.SByte, -128, -128),
        (VT.Byte, 255, 255),
        (VT.Int16, -32768, -32768),
        (VT.UInt16, 65535, 65535),
        (VT.Int32, -(2**31), -(2**31)),
        (VT.UInt32, 2**32 - 1, 2**32 - 1),
        (VT.Int64, -(2**63), -(2**63)),
        (VT.UInt64, 2**64 - 1, 2**64 - 1),
        (VT.Float, 1.5, 1.5),
        (VT.Double, 184.7, 184.7),
        (VT.String, "COLA_330", "COLA_330"),
        (VT.String, None, None),
        (VT.DateTime, WHEN, "2025-11-21T18:02:20.123Z"),
        (VT.Guid, GUID, str(GUID)),
        (VT.ByteString, b"COLA/42\x00\xff", base64.b64encode(b"COLA/42\x00\xff").decode()),
        (VT.XmlElement, ua.XmlElement(cast("ua.String", "<a>1</a>")), "<a>1</a>"),
        (VT.NodeId, node_id("Oven.Zone1.Temp", 2), "ns=2;s=Oven.Zone1.Temp"),
        (VT.ExpandedNodeId, ua.ExpandedNodeId(cast("ua.Int32", 85)), "i=85"),
        (VT.StatusCode, status(StatusCodes.BadNoCommunication), "BadNoCommunication"),
        (VT.QualifiedName, ua.QualifiedName("Temp", 2), "2:Temp"),
        (VT.LocalizedText, ua.LocalizedText("running", "en"), "running"),
        (VT.ExtensionObject, ua.Range(Low=0.0, High=150.0), {"Low": 0.0, "High": 150.0}),
        (
            VT.DataValue,
            ua.DataValue(ua.Variant(7, VT.Int32)),
            7,
        ),
        (VT.Variant, ua.Variant(2.5, VT.Double), 2.5),
    ],
)
def test_every_builtin_type_becomes_json_friendly(
    vtype: ua.VariantType, value: Any, expected: Any
) -> None:
    converted = to_value(wire(value, vtype))
    assert converted == expected
    assert type(converted) is type(expected)
    json.dumps(converted, allow_nan=False)  # publishable as is


@pytest.mark.parametrize(
    ("vtype", "value", "expected"),
    [
        (VT.Double, [180.0, 182.5, 184.25], [180.0, 182.5, 184.25]),
        (VT.Int32, [[1, 2], [3, 4]], [[1, 2], [3, 4]]),  # a matrix keeps its shape
        (VT.Boolean, [True, False], [True, False]),
        (VT.Byte, [1, 2, 255], [1, 2, 255]),  # a Byte array is numbers, not a ByteString
        (VT.String, ["a", "b"], ["a", "b"]),
        (VT.LocalizedText, [ua.LocalizedText("x"), ua.LocalizedText("y")], ["x", "y"]),
        (VT.DateTime, [WHEN], ["2025-11-21T18:02:20.123Z"]),
        (VT.ByteString, [b"\x01", b"\x02"], ["AQ==", "Ag=="]),
        (VT.Int16, [], []),
    ],
)
def test_arrays_become_lists_of_converted_elements(
    vtype: ua.VariantType, value: list[Any], expected: list[Any]
) -> None:
    assert to_value(wire(value, vtype)) == expected


def test_datetime_is_iso_utc_with_milliseconds_and_null_is_none() -> None:
    assert iso_datetime(WHEN) == "2025-11-21T18:02:20.123Z"
    assert iso_datetime(datetime(2025, 1, 1, 12, 0)) == "2025-01-01T12:00:00.000Z"  # naive = UTC
    assert to_value(wire(datetime(1601, 1, 1, tzinfo=UTC), VT.DateTime)) is None


def test_enumerations_are_numbers() -> None:
    assert to_value(ua.ServerState.Running) == 0
    assert to_value(ua.NodeClass.Variable) == 2


def test_unknown_structures_keep_their_type_and_body() -> None:
    raw = ua.ExtensionObject(TypeId=node_id(5001, 3), Body=cast("ua.ByteString", b"\x01\x02"))
    assert to_value(raw) == {"type_id": "ns=3;i=5001", "body": "AQI="}


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (StatusCodes.Good, Quality.GOOD),
        (StatusCodes.GoodClamped, Quality.GOOD),
        (StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
        (StatusCodes.UncertainSensorNotAccurate, Quality.UNCERTAIN),
        (StatusCodes.BadNoCommunication, Quality.BAD),
        (StatusCodes.BadNodeIdUnknown, Quality.BAD),
        (0xC0000000, Quality.BAD),  # reserved severity 11: treat as bad (Part 4, 7.39)
    ],
)
def test_status_code_severity_maps_to_quality(code: int, quality: Quality) -> None:
    assert quality_of(status(code)) is quality


def test_a_missing_status_code_means_good() -> None:
    assert quality_of(None) is Quality.GOOD


def test_sample_takes_the_source_timestamp_then_the_server_timestamp() -> None:
    later = datetime(2025, 11, 21, 18, 2, 21, tzinfo=UTC)
    both = ua.DataValue(
        ua.Variant(1.5, VT.Double), SourceTimestamp=stamp(WHEN), ServerTimestamp=stamp(later)
    )
    assert to_sample(both).ts == WHEN_MS
    server_only = ua.DataValue(ua.Variant(1.5, VT.Double), ServerTimestamp=stamp(later))
    assert to_sample(server_only).ts == WHEN_MS - 123 + 1000
    neither = ua.DataValue(ua.Variant(1.5, VT.Double))
    assert to_sample(neither).ts is None


def test_bad_samples_carry_no_value_uncertain_ones_keep_it() -> None:
    bad = ua.DataValue(
        ua.Variant(3.0, VT.Double), StatusCode=status(StatusCodes.BadNoCommunication)
    )
    assert (to_sample(bad).value, to_sample(bad).quality) == (None, Quality.BAD)
    uncertain = ua.DataValue(
        ua.Variant(3.0, VT.Double), StatusCode=status(StatusCodes.UncertainLastUsableValue)
    )
    assert (to_sample(uncertain).value, to_sample(uncertain).quality) == (3.0, Quality.UNCERTAIN)


def test_epoch_ms() -> None:
    assert epoch_ms(WHEN) == WHEN_MS
    assert epoch_ms(WHEN.replace(tzinfo=None)) == WHEN_MS
    assert epoch_ms(None) is None
    assert epoch_ms(datetime(1601, 1, 1, tzinfo=UTC)) is None
