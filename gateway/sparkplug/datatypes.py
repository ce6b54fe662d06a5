"""Sparkplug data types: which one a tag has, and where and how its value travels.

The value fields are the specification's (3.0.0, "Datatype Details"): Int8, Int16, Int32,
UInt8, UInt16 and UInt32 in ``int_value`` (protobuf uint32); Int64, UInt64 and DateTime in
``long_value`` (uint64); Float, Double, Boolean in their own fields; String, Text and UUID in
``string_value``; Bytes, File and every array in ``bytes_value``. Signed integers travel in
two's complement of the field's width (Int8 -1 is int_value 0xFFFFFFFF, Int64 -1 is
long_value 0xFFFFFFFFFFFFFFFF), which is what a uint32/uint64 field can hold.

Encoding is strict (a value that does not fit its metric's type is refused, never wrapped
or rounded into another number); decoding is lenient where hosts differ in practice (a
UInt32 in ``long_value``, an Int8 in 8-bit two's complement) and strict about the rest.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from enum import IntEnum

from gateway.errors import MalformedMessage
from gateway.models import Value, json_text
from gateway.sparkplug import wire


class DataType(IntEnum):
    """The Sparkplug B data types, numbered as in the specification's enum."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


T = DataType

# A tag's declared PLC type, by the name each protocol gives it. The spellings never
# collide across protocols, so one table serves all three.
MODBUS_TYPES = {
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
}
LOGIX_TYPES = {
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
}
# OPC UA built-in types (Part 6, 5.1.2) as the OPC UA connector turns their values into
# the gateway's: DateTime as an ISO 8601 string, ByteString as base64, Guid as text, and
# the other structured built-ins (NodeId, QualifiedName, LocalizedText...) as text.
OPCUA_TYPES = {
    "Boolean": T.Boolean,
    "SByte": T.Int8,
    "Byte": T.UInt8,
    "Int16": T.Int16,
    "UInt16": T.UInt16,
    "Int32": T.Int32,
    "UInt32": T.UInt32,
    "Int64": T.Int64,
    "UInt64": T.UInt64,
    "Float": T.Float,
    "Double": T.Double,
    "String": T.String,
    "DateTime": T.DateTime,
    "Guid": T.UUID,
    "ByteString": T.Bytes,
    "XmlElement": T.String,
    "NodeId": T.String,
    "ExpandedNodeId": T.String,
    "StatusCode": T.String,
    "QualifiedName": T.String,
    "LocalizedText": T.String,
}
PLC_TYPES: dict[str, DataType] = {**MODBUS_TYPES, **LOGIX_TYPES, **OPCUA_TYPES}

ARRAY_OF = {
    T.Int8: T.Int8Array,
    T.Int16: T.Int16Array,
    T.Int32: T.Int32Array,
    T.Int64: T.Int64Array,
    T.UInt8: T.UInt8Array,
    T.UInt16: T.UInt16Array,
    T.UInt32: T.UInt32Array,
    T.UInt64: T.UInt64Array,
    T.Float: T.FloatArray,
    T.Double: T.DoubleArray,
    T.Boolean: T.BooleanArray,
    T.String: T.StringArray,
    T.DateTime: T.DateTimeArray,
}

_INT64 = range(-(2**63), 2**63)
_UINT64 = range(2**64)


def datatype_for(plc_type: str | None, value: Value) -> DataType:
    """A tag's Sparkplug type: from its declared PLC type if known, else from a value.

    A list value is the array of the declared type (a Logix ``REAL[10]`` is a FloatArray).
    Unknown when neither says (no declared type, and no value yet).
    """
    declared = PLC_TYPES.get(plc_type) if plc_type is not None else None
    if declared is None:
        return datatype_of(value)
    if isinstance(value, list):
        return ARRAY_OF.get(declared) or datatype_of(value)
    return declared


def datatype_of(value: Value | datetime | bytes) -> DataType:
    """The Sparkplug type a value asks for when nothing is declared."""
    if value is None:
        return T.Unknown
    if isinstance(value, bool):
        return T.Boolean
    if isinstance(value, int):
        return T.Int64 if value in _INT64 else T.UInt64 if value in _UINT64 else T.String
    if isinstance(value, float):
        return T.Double
    if isinstance(value, datetime):
        return T.DateTime
    if isinstance(value, bytes):
        return T.Bytes
    if isinstance(value, list):
        return _array_of(value)
    return T.String  # str; a structure (dict) travels as its JSON text


def _array_of(values: list[Value]) -> DataType:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return T.Unknown  # empty, or only nulls: wait for a value that says
    if kinds == {bool}:
        return T.BooleanArray if None not in values else T.String
    if kinds == {str}:
        return T.StringArray if None not in values else T.String
    if kinds == {int} and None not in values:
        return T.Int64Array if all(v in _INT64 for v in values) else T.String
    if kinds <= {int, float}:
        return T.DoubleArray  # a null element is a NaN the buffer stored as null
    return T.String


# -- encoding: a value to its whole value field (key included), or None if it does not fit

Encoder = Callable[[Value], bytes | None]


def _integer(field: bytes, bits: int, signed: bool, width: int) -> Encoder:
    low, high = (-(1 << bits - 1), 1 << bits - 1) if signed else (0, 1 << bits)
    mask = (1 << width) - 1
    varint, short, groups = wire.varint, wire.SHORT_VARINTS, wire.LOW_GROUPS

    def encode(value: Value) -> bytes | None:
        if type(value) is not int or not low <= value < high:
            return None
        if 0 <= value < 0x4000:  # register values: wire.varint's look-ups, without the call
            return field + short[value]
        if 0 <= value < 0x10000000:
            return field + groups[value & 0x3FFF] + short[value >> 14]
        return field + varint(value & mask)  # two's complement in the field's width

    return encode


def _float(value: Value) -> bytes | None:
    if type(value) is not float and type(value) is not int:
        return None
    try:
        return wire.FLOAT_VALUE + wire.pack_float(value)
    except OverflowError:  # beyond float32's range
        return None


def _double(value: Value) -> bytes | None:
    if type(value) is float:
        return wire.DOUBLE_VALUE + wire.pack_double(value)
    if type(value) is int:
        try:
            return wire.DOUBLE_VALUE + wire.pack_double(value)
        except OverflowError:
            return None
    return None


_TRUE = wire.BOOLEAN_VALUE + wire.TRUE
_FALSE = wire.BOOLEAN_VALUE + wire.FALSE


def _boolean(value: Value) -> bytes | None:
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    return None


def _string(value: Value) -> bytes | None:
    # Anything can be said as text: a structure or a number in a String metric is its JSON.
    text = value if type(value) is str else json_text(value)
    try:
        return wire.length_delimited(wire.STRING_VALUE, wire.text(text))
    except UnicodeEncodeError:
        return None


def _datetime(value: Value | datetime) -> bytes | None:
    ms = epoch_ms(value)
    return None if ms is None else wire.LONG_VALUE + wire.varint(ms)


def epoch_ms(value: Value | datetime) -> int | None:
    """A DateTime value (epoch ms, a datetime, or ISO 8601 text) as epoch ms; None if not one."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None:  # the OPC UA connector's times are UTC
            value = value.replace(tzinfo=UTC)
        return math.floor(value.timestamp() * 1000) if value.year >= 1970 else None
    if type(value) is int and value in _UINT64:
        return value
    return None


def _bytes(value: Value | bytes) -> bytes | None:
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):  # the OPC UA connector gives a ByteString as base64
        try:
            data = base64.b64decode(value, validate=True)
        except binascii.Error:
            return None
    else:
        return None
    return wire.length_delimited(wire.BYTES_VALUE, data)


def _packed(code: str) -> Encoder:
    def encode(value: Value) -> bytes | None:
        if not isinstance(value, list):
            return None
        items = [math.nan if v is None else v for v in value] if code in "fd" else value
        if code not in "fd" and not all(type(v) is int for v in items):
            return None
        try:
            data = struct.pack(f"<{len(items)}{code}", *items)
        except (struct.error, OverflowError, TypeError):
            return None
        return wire.length_delimited(wire.BYTES_VALUE, data)

    return encode


def _boolean_array(value: Value) -> bytes | None:
    if not isinstance(value, list) or not all(type(v) is bool for v in value):
        return None
    return wire.length_delimited(wire.BYTES_VALUE, pack_booleans(value))  # type: ignore[arg-type]


def pack_booleans(values: list[bool]) -> bytes:
    """A BooleanArray's bytes: the count (uint32, little-endian), then bits from the MSB."""
    bits = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v:
            bits[i >> 3] |= 0x80 >> (i & 7)
    return struct.pack("<I", len(values)) + bytes(bits)


def _string_array(value: Value) -> bytes | None:
    if not isinstance(value, list) or not all(type(v) is str for v in value):
        return None
    try:
        parts = [wire.text(v) for v in value]  # type: ignore[arg-type]
    except UnicodeEncodeError:
        return None
    if any(b"\0" in p for p in parts):
        return None  # NUL ends each string: one inside cannot be said
    return wire.length_delimited(wire.BYTES_VALUE, b"".join(p + b"\0" for p in parts))


def _datetime_array(value: Value) -> bytes | None:
    if not isinstance(value, list):
        return None
    stamps = [epoch_ms(v) for v in value]
    if None in stamps:
        return None
    return wire.length_delimited(wire.BYTES_VALUE, struct.pack(f"<{len(stamps)}Q", *stamps))


def _refuse(value: Value) -> bytes | None:
    return None  # Unknown, DataSet, Template...: nothing we send carries a value of these


I32, I64 = wire.INT_VALUE, wire.LONG_VALUE
ENCODERS: dict[DataType, Encoder] = {
    T.Int8: _integer(I32, 8, True, 32),
    T.Int16: _integer(I32, 16, True, 32),
    T.Int32: _integer(I32, 32, True, 32),
    T.Int64: _integer(I64, 64, True, 64),
    T.UInt8: _integer(I32, 8, False, 32),
    T.UInt16: _integer(I32, 16, False, 32),
    T.UInt32: _integer(I32, 32, False, 32),  # int_value, as the spec says (Tahu: long_value)
    T.UInt64: _integer(I64, 64, False, 64),
    T.Float: _float,
    T.Double: _double,
    T.Boolean: _boolean,
    T.String: _string,
    T.Text: _string,
    T.UUID: _string,
    T.DateTime: _datetime,
    T.Bytes: _bytes,
    T.File: _bytes,
    T.Int8Array: _packed("b"),
    T.Int16Array: _packed("h"),
    T.Int32Array: _packed("i"),
    T.Int64Array: _packed("q"),
    T.UInt8Array: _packed("B"),
    T.UInt16Array: _packed("H"),
    T.UInt32Array: _packed("I"),
    T.UInt64Array: _packed("Q"),
    T.FloatArray: _packed("f"),
    T.DoubleArray: _packed("d"),
    T.BooleanArray: _boolean_array,
    T.StringArray: _string_array,
    T.DateTimeArray: _datetime_array,
}


def encoder(datatype: DataType) -> Encoder:
    """The function that writes a value of this type into its value field."""
    return ENCODERS.get(datatype, _refuse)


# -- decoding: a received value field back to a value ------------------------------------

_INTEGERS = {  # bits, signed
    T.Int8: (8, True),
    T.Int16: (16, True),
    T.Int32: (32, True),
    T.Int64: (64, True),
    T.UInt8: (8, False),
    T.UInt16: (16, False),
    T.UInt32: (32, False),
    T.UInt64: (64, False),
}
_FIELD_BITS = {"int_value": 32, "long_value": 64}
_ARRAY_CODES = {
    T.Int8Array: "b",
    T.Int16Array: "h",
    T.Int32Array: "i",
    T.Int64Array: "q",
    T.UInt8Array: "B",
    T.UInt16Array: "H",
    T.UInt32Array: "I",
    T.UInt64Array: "Q",
    T.FloatArray: "f",
    T.DoubleArray: "d",
    T.DateTimeArray: "Q",
}
_TEXT_TYPES = (T.String, T.Text, T.UUID)


def decode_value(datatype: DataType, field: str, raw: object) -> Value | bytes:
    """The value of a received field as a metric of ``datatype`` says it; MalformedMessage if
    the field cannot hold that type or the value is out of its range."""
    where = f"{datatype.name} in {field}"
    if datatype in _INTEGERS:
        bits, signed = _INTEGERS[datatype]
        if field not in _FIELD_BITS or not isinstance(raw, int):
            raise MalformedMessage(f"{where}: an integer travels in int_value or long_value")
        return _integer_value(raw, bits, signed, where)
    if datatype is T.DateTime:
        if field != "long_value" or not isinstance(raw, int):
            raise MalformedMessage(f"{where}: a DateTime travels in long_value")
        return raw
    if datatype in (T.Float, T.Double):
        if field not in ("float_value", "double_value") or not isinstance(raw, float):
            raise MalformedMessage(
                f"{where}: a {datatype.name} travels in {_float_field(datatype)}"
            )
        return raw
    if datatype is T.Boolean:
        if field != "boolean_value" or not isinstance(raw, bool):
            raise MalformedMessage(f"{where}: a Boolean travels in boolean_value")
        return raw
    if datatype in _TEXT_TYPES:
        if field != "string_value" or not isinstance(raw, str):
            raise MalformedMessage(f"{where}: a {datatype.name} travels in string_value")
        return raw
    if field != "bytes_value" or not isinstance(raw, bytes):
        raise MalformedMessage(f"{where}: a {datatype.name} travels in bytes_value")
    if datatype in (T.Bytes, T.File):
        return raw
    return unpack_array(datatype, raw)


def _float_field(datatype: DataType) -> str:
    return "float_value" if datatype is T.Float else "double_value"


def _integer_value(raw: int, bits: int, signed: bool, where: str) -> int:
    if not signed:
        if raw >= 1 << bits:
            raise MalformedMessage(f"{where}: {raw} is out of range")
        return raw
    if raw < 1 << bits - 1:
        return raw
    # A negative number, in two's complement of its own width or sign-extended to 32 or
    # 64 bits (hosts write an Int8 -1 as 0xFF or as 0xFFFFFFFF).
    for width in (bits, 32, 64):
        if width >= bits and (1 << width) - (1 << bits - 1) <= raw < 1 << width:
            return raw - (1 << width)
    raise MalformedMessage(f"{where}: {raw} is out of range")


def unpack_array(datatype: DataType, data: bytes) -> list[Value]:
    """An array type's bytes_value as a list; MalformedMessage if the bytes cannot be one."""
    if datatype is T.BooleanArray:
        return _unpack_booleans(data)
    if datatype is T.StringArray:
        if data and not data.endswith(b"\0"):
            raise MalformedMessage("StringArray: each string must end with a NUL byte")
        try:
            return [p.decode("utf-8") for p in data.split(b"\0")[:-1]]
        except UnicodeDecodeError as exc:
            raise MalformedMessage(f"StringArray: not UTF-8 ({exc})") from exc
    code = _ARRAY_CODES.get(datatype)
    if code is None:
        raise MalformedMessage(f"{datatype.name}: not a value type we can decode")
    size = struct.calcsize(code)
    if len(data) % size:
        raise MalformedMessage(f"{datatype.name}: {len(data)} bytes is not a whole number of items")
    return list(struct.unpack(f"<{len(data) // size}{code}", data))


def _unpack_booleans(data: bytes) -> list[Value]:
    if len(data) < 4:
        raise MalformedMessage("BooleanArray: shorter than its 4-byte count")
    (count,) = struct.unpack_from("<I", data)
    if len(data) - 4 != (count + 7) // 8:
        raise MalformedMessage(f"BooleanArray: {count} values need {(count + 7) // 8} bytes")
    bits = data[4:]
    return [bool(bits[i >> 3] & (0x80 >> (i & 7))) for i in range(count)]
