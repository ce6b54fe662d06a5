"""Sparkplug data types: a tag's type, and where and how each value travels (spec 3.0)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from gateway.errors import MalformedMessage
from gateway.models import Value
from gateway.sparkplug import wire
from gateway.sparkplug.datatypes import (
    LOGIX_TYPES,
    MODBUS_TYPES,
    DataType,
    datatype_for,
    datatype_of,
    decode_value,
    encoder,
    unpack_array,
)
from gateway.sparkplug.sparkplug_b_pb2 import Payload

T = DataType


def carried(datatype: DataType, value: Value) -> tuple[str | None, object]:
    """The value field protobuf finds in a metric carrying ``value``, and its raw content."""
    field = encoder(datatype)(value)
    assert field is not None, f"{datatype.name} refused {value!r}"
    metric = Payload.Metric.FromString(wire.metric(timestamp=0, value=field))
    which = metric.WhichOneof("value")
    raw = {
        "int_value": metric.int_value,
        "long_value": metric.long_value,
        "float_value": metric.float_value,
        "double_value": metric.double_value,
        "boolean_value": metric.boolean_value,
        "string_value": metric.string_value,
        "bytes_value": metric.bytes_value,
    }.get(which or "")
    return which, raw


def test_modbus_types() -> None:
    assert {
        "bool": T.Boolean,
        "int16": T.Int16,
        "uint16": T.UInt16,
        "int32": T.Int32,
        "uint32": T.UInt32,
        "int64": T.Int64,
        "uint64": T.UInt64,
        "float32": T.Float,
        "float64": T.Double,
        "string": T.String,
    } == MODBUS_TYPES


def test_logix_types() -> None:
    assert {
        "BOOL": T.Boolean,
        "SINT": T.Int8,
        "INT": T.Int16,
        "DINT": T.Int32,
        "LINT": T.Int64,
        "USINT": T.UInt8,
        "UINT": T.UInt16,
        "UDINT": T.UInt32,
        "ULINT": T.UInt64,
        "REAL": T.Float,
        "LREAL": T.Double,
        "STRING": T.String,
    } == LOGIX_TYPES


@pytest.mark.parametrize(
    ("opcua", "expected"),
    [
        ("Boolean", T.Boolean),
        ("SByte", T.Int8),
        ("Byte", T.UInt8),
        ("Int16", T.Int16),
        ("UInt16", T.UInt16),
        ("Int32", T.Int32),
        ("UInt32", T.UInt32),
        ("Int64", T.Int64),
        ("UInt64", T.UInt64),
        ("Float", T.Float),
        ("Double", T.Double),
        ("String", T.String),
        ("DateTime", T.DateTime),
        ("Guid", T.UUID),
        ("ByteString", T.Bytes),
        ("LocalizedText", T.String),
    ],
)
def test_opcua_built_in_types(opcua: str, expected: DataType) -> None:
    assert datatype_for(opcua, None) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, T.Boolean),
        (-5, T.Int64),
        (2**63, T.UInt64),  # beyond Int64
        (2**64, T.String),  # beyond any integer type: its digits
        (21.5, T.Double),
        ("running", T.String),
        ({"speed": 1}, T.String),  # a structure not flattened: its JSON
        (None, T.Unknown),  # nothing to go by yet
        ([True, False], T.BooleanArray),
        ([1, -2], T.Int64Array),
        ([1.5, 2], T.DoubleArray),
        ([1.5, None], T.DoubleArray),  # a NaN the buffer stored as null
        (["a", "b"], T.StringArray),
        ([], T.Unknown),
        ([1, None], T.DoubleArray),  # integers with a hole: numbers, the hole NaN
        ([{"a": 1}], T.String),
    ],
)
def test_type_from_the_first_value(value: Value, expected: DataType) -> None:
    assert datatype_for(None, value) is expected


def test_a_datetime_value_is_a_datetime() -> None:
    assert datatype_of(datetime(2025, 11, 21, tzinfo=UTC)) is T.DateTime


def test_the_declared_type_wins_and_a_list_is_its_array() -> None:
    assert datatype_for("DINT", 3.5) is T.Int32  # the declared type, whatever the value
    assert datatype_for("REAL", [1.0, 2.0]) is T.FloatArray  # a Logix REAL[2]
    assert datatype_for("BOOL", [True]) is T.BooleanArray
    assert datatype_for("uint16", None) is T.UInt16
    assert datatype_for("NoSuchType", 7) is T.Int64  # an unknown name: the value decides


# Where each value travels, spec 3.0 "Datatype Details": every type up to 32 bits in
# int_value (uint32), 64-bit types and DateTime in long_value (uint64); signed values in two's
# complement of the field's width.
@pytest.mark.parametrize(
    ("datatype", "value", "field", "raw"),
    [
        (T.Int8, -1, "int_value", 0xFFFFFFFF),
        (T.Int8, -128, "int_value", 2**32 - 128),
        (T.Int8, 127, "int_value", 127),
        (T.Int16, -30000, "int_value", 2**32 - 30000),
        (T.Int32, -(2**31), "int_value", 2**31),
        (T.Int32, 2**31 - 1, "int_value", 2**31 - 1),
        (T.Int64, -1, "long_value", 2**64 - 1),
        (T.Int64, -(2**63), "long_value", 2**63),
        (T.UInt8, 255, "int_value", 255),
        (T.UInt16, 65535, "int_value", 65535),
        (T.UInt16, 20000, "int_value", 20000),  # a three-byte varint
        (T.UInt32, 2**32 - 1, "int_value", 2**32 - 1),  # int_value: Tahu puts it in long_value
        (T.UInt64, 2**64 - 1, "long_value", 2**64 - 1),
        (T.Float, 1.5, "float_value", 1.5),
        (T.Double, -21.25, "double_value", -21.25),
        (T.Double, 7, "double_value", 7.0),
        (T.Boolean, True, "boolean_value", True),
        (T.Boolean, False, "boolean_value", False),
        (T.String, "Öl 21 °C ✓", "string_value", "Öl 21 °C ✓"),
        (T.String, 12, "string_value", "12"),  # a String metric says anything as text
        (T.Text, "text", "string_value", "text"),
        (T.UUID, "0b6d5b2e-8a59-4f0e-9a55-1f2f3c4d5e6f", "string_value", None),
        (T.DateTime, 1763762540123, "long_value", 1763762540123),
        (T.DateTime, "2025-11-21T22:02:20.123Z", "long_value", 1763762540123),
        (T.Bytes, "AAEC/w==", "bytes_value", b"\x00\x01\x02\xff"),  # base64 from OPC UA
    ],
)
def test_value_fields_are_the_specifications(
    datatype: DataType, value: Value, field: str, raw: object
) -> None:
    which, content = carried(datatype, value)
    assert which == field
    if raw is not None:
        assert content == raw


def test_nan_and_infinities_travel_as_floats() -> None:
    for datatype, field in ((T.Float, "float_value"), (T.Double, "double_value")):
        for special in (math.nan, math.inf, -math.inf):
            which, raw = carried(datatype, special)
            assert which == field
            assert isinstance(raw, float)
            assert (math.isnan(raw) and math.isnan(special)) or raw == special


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (T.Int8, 128),
        (T.Int8, -129),
        (T.Int16, 40000),
        (T.UInt16, -1),
        (T.UInt16, 65536),
        (T.UInt32, 2**32),
        (T.Int64, 2**63),
        (T.UInt64, -1),
        (T.Int32, 1.5),  # never rounded into another number
        (T.Int32, True),
        (T.Int32, "7"),
        (T.Boolean, 1),
        (T.Float, 1e39),  # beyond float32
        (T.Float, "1.5"),
        (T.Double, None),
        (T.DateTime, "yesterday"),
        (T.DateTime, -5),
        (T.Bytes, "AAE=?"),  # base64 with a stray character
        (T.Int16Array, [1, 40000]),
        (T.Int16Array, [1, 2.5]),
        (T.UInt8Array, [1, None]),
        (T.BooleanArray, [True, 1]),
        (T.StringArray, ["a", "b\0c"]),  # NUL ends each string
        (T.StringArray, ["a", 1]),
        (T.DoubleArray, "1.5"),
        (T.Unknown, 1),
        (T.Template, 1),
    ],
)
def test_values_that_do_not_fit_are_refused(datatype: DataType, value: Value) -> None:
    assert encoder(datatype)(value) is None


def bytes_of(datatype: DataType, values: list[Value]) -> bytes:
    which, raw = carried(datatype, values)
    assert which == "bytes_value"
    assert isinstance(raw, bytes)
    return raw


# The specification's own array examples ("Array Types"), byte for byte.
@pytest.mark.parametrize(
    ("datatype", "values", "expected"),
    [
        (T.Int16Array, [-30000, 30000], "d0 8a 30 75"),
        (T.Int32Array, [-1, 315338746], "ff ff ff ff fa af cb 12"),
        (
            T.Int64Array,
            [-4270929666821191986, -3601064768563266876],
            "ce 06 72 ac 18 9c ba c4 c4 ba 9c 18 ac 72 06 ce",
        ),
        (T.UInt8Array, [23, 250], "17 fa"),
        (T.UInt16Array, [30, 52360], "1e 00 88 cc"),
        (T.UInt32Array, [52, 3293969225], "34 00 00 00 49 fb 55 c4"),
        (
            T.UInt64Array,
            [52, 16444743074749521625],
            "34 00 00 00 00 00 00 00 d9 9e 02 d1 b2 76 37 e4",
        ),
        (
            T.BooleanArray,
            [False, False, True, True, False, True, False, False, True, True, False, True],
            "0c 00 00 00 34 d0",  # the count, then bits from the MSB (the spare bits zero)
        ),
        (T.StringArray, ["ABC", "hello"], "41 42 43 00 68 65 6c 6c 6f 00"),
    ],
)
def test_arrays_as_the_specification_packs_them(
    datatype: DataType, values: list[Value], expected: str
) -> None:
    assert bytes_of(datatype, values) == bytes.fromhex(expected)
    assert unpack_array(datatype, bytes.fromhex(expected)) == values


def test_arrays_where_the_specifications_examples_contradict_its_text() -> None:
    # Int8Array: the example gives [-23, 123] -> [0xEF, 0x7B], but -23 is 0xE9 (0xEF is -17).
    assert bytes_of(T.Int8Array, [-23, 123]) == bytes.fromhex("e9 7b")
    # FloatArray and DoubleArray: the text says little-endian, the examples' bytes are
    # big-endian (1.23f is 0x3F9D70A4). The text wins, as Tahu's Java encoder does.
    assert bytes_of(T.FloatArray, [1.23, 89.341]) == bytes.fromhex("a4 70 9d 3f 98 ae b2 42")
    assert bytes_of(T.DoubleArray, [12.354213, 1022.9123213]) == bytes.fromhex(
        "d7 a2 05 68 5b b5 28 40 8e 17 1c 6f 4c f7 8f 40"
    )
    # DateTimeArray: the example's 12 bytes dropped each value's two zero high bytes.
    assert bytes_of(T.DateTimeArray, [1256102875335, 1656107875000]) == bytes.fromhex(
        "c7 d0 90 75 24 01 00 00 b8 ba b8 97 81 01 00 00"
    )


def test_null_elements_of_a_float_array_are_nan() -> None:
    raw = bytes_of(T.DoubleArray, [1.5, None])
    first, second = unpack_array(T.DoubleArray, raw)
    assert first == 1.5
    assert isinstance(second, float)
    assert math.isnan(second)


@pytest.mark.parametrize(
    ("datatype", "field", "raw", "value"),
    [
        (T.Int8, "int_value", 0xFFFFFFFF, -1),  # sign-extended to 32 bits (Tahu, us)
        (T.Int8, "int_value", 0xFF, -1),  # or in the type's own width
        (T.Int16, "int_value", 0x8000, -32768),
        (T.Int32, "int_value", 0x80000000, -(2**31)),
        (T.Int64, "long_value", 2**64 - 1, -1),
        (T.UInt32, "long_value", 2**32 - 1, 2**32 - 1),  # where Tahu and Ignition put it
        (T.UInt32, "int_value", 7, 7),
        (T.Float, "double_value", 2.5, 2.5),
        (T.DateTime, "long_value", 1763762540123, 1763762540123),
    ],
)
def test_decoding_accepts_what_hosts_send(
    datatype: DataType, field: str, raw: object, value: Value
) -> None:
    assert decode_value(datatype, field, raw) == value


@pytest.mark.parametrize(
    ("datatype", "field", "raw"),
    [
        (T.Int8, "int_value", 300),  # neither a byte nor a sign-extended one
        (T.UInt16, "int_value", 70000),
        (T.UInt32, "long_value", 2**32),
        (T.Int32, "string_value", "7"),
        (T.Boolean, "int_value", 1),
        (T.String, "bytes_value", b"x"),
        (T.Double, "long_value", 3),
        (T.DateTime, "int_value", 5),
    ],
)
def test_decoding_refuses_what_cannot_be_the_type(
    datatype: DataType, field: str, raw: object
) -> None:
    with pytest.raises(MalformedMessage, match=datatype.name):
        decode_value(datatype, field, raw)


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        (T.Int32Array, b"\x01\x02\x03"),  # not whole items
        (T.BooleanArray, b"\x01\x00"),  # shorter than the count
        (T.BooleanArray, b"\x09\x00\x00\x00\xff"),  # 9 values need 2 bytes
        (T.StringArray, b"abc"),  # no NUL at the end
        (T.StringArray, b"\xff\x00"),  # not UTF-8
    ],
)
def test_malformed_arrays_are_refused(datatype: DataType, data: bytes) -> None:
    with pytest.raises(MalformedMessage, match=datatype.name):
        unpack_array(datatype, data)
