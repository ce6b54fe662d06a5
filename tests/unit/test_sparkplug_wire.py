"""The wire format written by hand: the same bytes as the protobuf library's."""

from __future__ import annotations

from gateway.sparkplug import wire
from gateway.sparkplug.sparkplug_b_pb2 import Payload


def test_varints_are_protobufs() -> None:
    edges = [0, 1, 127, 128, 16383, 16384, 2**21, 2**28 - 1, 2**28, 2**35, 2**42 - 1, 2**42]
    numbers = edges + [n - 1 for n in edges if n] + [1763762540123, 2**63, 2**64 - 1]
    numbers += [7**k for k in range(1, 23)]
    for n in numbers:
        # seq is a uint64 field: its key, then the varint.
        assert wire.PAYLOAD_SEQ + wire.varint(n) == Payload(seq=n).SerializeToString(), n


def test_a_metric_is_protobufs() -> None:
    body = wire.metric(
        name="a/b",
        alias=300,
        timestamp=1763762540123,
        datatype=12,
        historical=True,
        value=wire.length_delimited(wire.STRING_VALUE, wire.text("✓")),
    )
    expected = Payload.Metric(
        name="a/b",
        alias=300,
        timestamp=1763762540123,
        datatype=12,
        is_historical=True,
        string_value="✓",
    )
    assert body == expected.SerializeToString()
    null = wire.metric(timestamp=5, null=True, value=b"ignored")
    assert null == Payload.Metric(timestamp=5, is_null=True).SerializeToString()
