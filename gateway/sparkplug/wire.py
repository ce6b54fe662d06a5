"""Protocol Buffers wire format, written by hand for the Sparkplug payloads we send.

A DDATA of 10,000 metrics is built for every scan of a large source: one message object
per metric through the protobuf library costs several times what the JSON layouts cost,
while the bytes of a metric are a few fields we can lay down directly. Field numbers are
read from the generated schema (``sparkplug_b.proto``), never typed here, and every field
is written in field-number order, as the protobuf library writes it: the tests compare our
bytes with its bytes. Decoding goes through the protobuf library (``decode.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from gateway.sparkplug.sparkplug_b_pb2 import Payload

# Wire types (the low three bits of a field's key).
VARINT, I64, LEN, I32 = 0, 1, 2, 5


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Made once (~1 MB): the varints of 0..16383 whole, and every 14-bit group followed by more.
# A register value is one look-up, a millisecond timestamp three, instead of a loop. Hot
# paths index these themselves to save the call (see varint for how).
SHORT_VARINTS = [_varint(n) for n in range(0x4000)]
LOW_GROUPS = [bytes((n & 0x7F | 0x80, n >> 7 | 0x80)) for n in range(0x4000)]
_SHORT, _LOW = SHORT_VARINTS, LOW_GROUPS


def varint(n: int) -> bytes:
    """An unsigned integer (0 <= n < 2**64) as a base-128 varint."""
    if n < 0x4000:
        return _SHORT[n]
    if n < 0x10000000:
        return _LOW[n & 0x3FFF] + _SHORT[n >> 14]
    if n < 0x40000000000:  # epoch milliseconds until the year 2109
        return _LOW[n & 0x3FFF] + _LOW[n >> 14 & 0x3FFF] + _SHORT[n >> 28]
    return _varint(n)


def key(number: int, wire_type: int) -> bytes:
    """A field's key: its number and wire type."""
    return varint(number << 3 | wire_type)


def length_delimited(field_key: bytes, body: bytes) -> bytes:
    """A LEN field: key, length, body."""
    return field_key + varint(len(body)) + body


def _keys(message: type[Payload] | type[Payload.Metric], **wire_types: int) -> list[bytes]:
    fields = message.DESCRIPTOR.fields_by_name
    return [key(fields[name].number, wt) for name, wt in wire_types.items()]


PAYLOAD_TIMESTAMP, PAYLOAD_METRIC, PAYLOAD_SEQ = _keys(
    Payload, timestamp=VARINT, metrics=LEN, seq=VARINT
)
(
    NAME,
    ALIAS,
    TIMESTAMP,
    DATATYPE,
    IS_HISTORICAL,
    IS_NULL,
    PROPERTIES,
    INT_VALUE,
    LONG_VALUE,
    FLOAT_VALUE,
    DOUBLE_VALUE,
    BOOLEAN_VALUE,
    STRING_VALUE,
    BYTES_VALUE,
) = _keys(
    Payload.Metric,
    name=LEN,
    alias=VARINT,
    timestamp=VARINT,
    datatype=VARINT,
    is_historical=VARINT,
    is_null=VARINT,
    properties=LEN,
    int_value=VARINT,
    long_value=VARINT,
    float_value=I32,
    double_value=I64,
    boolean_value=VARINT,
    string_value=LEN,
    bytes_value=LEN,
)

_PROPERTY_SET = Payload.PropertySet.DESCRIPTOR.fields_by_name
_PROPERTY_VALUE = Payload.PropertyValue.DESCRIPTOR.fields_by_name
SET_KEY = key(_PROPERTY_SET["keys"].number, LEN)
SET_VALUE = key(_PROPERTY_SET["values"].number, LEN)
PROPERTY_TYPE = key(_PROPERTY_VALUE["type"].number, VARINT)
PROPERTY_INT = key(_PROPERTY_VALUE["int_value"].number, VARINT)
PROPERTY_STRING = key(_PROPERTY_VALUE["string_value"].number, LEN)

# A metric's key and length, for every length below 128 (most metrics of a data message).
METRIC_HEADS = [PAYLOAD_METRIC + _SHORT[n] for n in range(0x80)]

TRUE = b"\x01"
FALSE = b"\x00"
pack_float = struct.Struct("<f").pack  # fixed32 and fixed64 fields are little-endian
pack_double = struct.Struct("<d").pack


def text(value: str) -> bytes:
    """A string's UTF-8 bytes; UnicodeEncodeError for lone surrogates (not UTF-8 at all)."""
    return value.encode("utf-8")


def property_set(items: Iterable[tuple[str, bytes]]) -> bytes:
    """A PropertySet body from (key, PropertyValue body) pairs: keys first, as protobuf does."""
    pairs = list(items)
    keys = b"".join(length_delimited(SET_KEY, text(name)) for name, _ in pairs)
    return keys + b"".join(length_delimited(SET_VALUE, value) for _, value in pairs)


def metric(
    *,
    name: str | None = None,
    alias: int | None = None,
    timestamp: int,
    datatype: int | None = None,
    historical: bool = False,
    null: bool = False,
    properties: bytes = b"",
    value: bytes = b"",
) -> bytes:
    """A Metric body. ``properties`` is a whole field (key included), as is ``value``."""
    return b"".join(
        (
            length_delimited(NAME, text(name)) if name is not None else b"",
            ALIAS + varint(alias) if alias is not None else b"",
            TIMESTAMP + varint(timestamp),
            DATATYPE + varint(datatype) if datatype is not None else b"",
            IS_HISTORICAL + TRUE if historical else b"",
            IS_NULL + TRUE if null else b"",
            properties,
            b"" if null else value,
        )
    )


def payload(timestamp: int, metrics: Iterable[bytes], seq: int | None) -> bytes:
    """A Payload from its metric bodies; ``seq`` None for the one message without (NDEATH)."""
    head = PAYLOAD_TIMESTAMP + varint(timestamp)
    body = b"".join(PAYLOAD_METRIC + varint(len(m)) + m for m in metrics)
    return head + body + (PAYLOAD_SEQ + varint(seq) if seq is not None else b"")
