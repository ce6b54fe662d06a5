"""Received payloads: decoded, commands parsed, garbage refused with MalformedMessage only."""

from __future__ import annotations

import random

import pytest

from gateway.errors import MalformedMessage
from gateway.models import Batch, Quality, Reading
from gateway.sparkplug.decode import (
    Command,
    HostState,
    NodeCommand,
    decode_payload,
    parse_dcmd,
    parse_ncmd,
    parse_state,
)
from gateway.sparkplug.metrics import Aliases, SourceMetrics, TagHint
from gateway.sparkplug.payloads import dbirth, ddata, nbirth
from gateway.sparkplug.sparkplug_b_pb2 import Payload
from tests.sparkplug_js.tahu import encode_with_tahu

Metric = Payload.Metric


def press() -> SourceMetrics:
    hints = {
        "speed": TagHint("INT"),
        "count": TagHint("UDINT"),
        "since": TagHint("DateTime"),
        "blob": TagHint("ByteString"),
        "recipe.name": TagHint("STRING"),
    }
    metrics = SourceMetrics("press1", Aliases(), hints)
    metrics.learn(list(hints), [-5, 7, "2025-11-21T22:02:20.123Z", "AAE=", "PET"])
    return metrics


def test_decoding_resolves_aliases_from_a_birth() -> None:
    metrics = press()
    batch = Batch("press1", 1, [Reading("speed", -5, Quality.UNCERTAIN, 1000, 1)])
    known = {s.alias: (s.name, s.datatype) for s in metrics.specs}
    (metric,) = decode_payload(ddata(metrics, batch, 3, 2000, historical=True), known)["metrics"]
    assert metric == {
        "name": "speed",
        "alias": metrics.spec("speed").alias,
        "timestamp": 1000,
        "datatype": "Int16",
        "value": -5,
        "is_historical": True,
        "properties": {"Quality": 64},
    }
    (unknown,) = decode_payload(ddata(metrics, batch, 3, 2000))["metrics"]
    assert unknown["value"] == 2**32 - 5  # without the birth: the raw field, unsigned
    assert "datatype" not in unknown


@pytest.mark.parametrize(
    ("metric", "problem"),
    [
        (Metric(name="x", datatype=99, int_value=1), "datatype 99 is not a Sparkplug data type"),
        (Metric(name="x", datatype=11, int_value=1), "Boolean in int_value"),
        (Metric(name="x", datatype=32, bytes_value=b"\x05\x00\x00\x00"), "BooleanArray"),
        (Metric(name="x", properties=Payload.PropertySet(keys=["a"])), "1 keys but 0 values"),
    ],
)
def test_payloads_that_say_impossible_things_are_refused(metric: Metric, problem: str) -> None:
    with pytest.raises(MalformedMessage, match=problem):
        decode_payload(Payload(timestamp=1, metrics=[metric]).SerializeToString())


def test_garbage_is_refused_and_nothing_else_is_raised() -> None:
    metrics = press()
    batch = Batch("press1", 1, [Reading("speed", 3, Quality.GOOD, 1000, 1)])
    current = {"speed": (3, Quality.GOOD, 1000)}
    genuine = [nbirth(1, 0, 5), dbirth(metrics, current, 1, 5), ddata(metrics, batch, 2, 5)]
    rng = random.Random(12)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) for _ in range(500)]
    for payload in genuine:
        for _ in range(300):  # flipped bytes, cut short
            data = bytearray(payload[: rng.randrange(1, len(payload) + 1)])
            data[rng.randrange(len(data))] = rng.randrange(256)
            samples.append(bytes(data))
    refused = 0
    for data in samples:
        for parse in (
            lambda d: decode_payload(d),
            parse_ncmd,
            lambda d: parse_dcmd(d, metrics),
            parse_state,
        ):
            try:
                parse(data)
            except MalformedMessage:
                refused += 1
    assert refused > len(samples)  # most garbage is refused; the rest decoded as something


def test_ncmd_rebirth_by_name_as_a_host_sends_it() -> None:
    (ncmd,) = encode_with_tahu(
        [
            {
                "timestamp": 1,
                "metrics": [{"name": "Node Control/Rebirth", "type": "Boolean", "value": True}],
            }
        ]
    )
    assert parse_ncmd(ncmd) == NodeCommand(rebirth=True)


def test_ncmd_by_alias_and_what_the_node_does_not_have() -> None:
    ncmd = Payload(
        timestamp=1,
        metrics=[
            Metric(alias=3, boolean_value=True),  # Node Control/Next Server
            Metric(name="Node Control/Reboot", datatype=11, boolean_value=True),
            Metric(alias=99, boolean_value=True),
        ],
    ).SerializeToString()
    assert parse_ncmd(ncmd) == NodeCommand(
        next_server=True, ignored=("Node Control/Reboot", "alias 99")
    )
    no = Payload(metrics=[Metric(name="Node Control/Rebirth", boolean_value=False)])
    assert parse_ncmd(no.SerializeToString()) == NodeCommand()


@pytest.mark.parametrize(
    "metric",
    [
        Metric(name="Node Control/Rebirth", datatype=12, string_value="true"),
        Metric(name="Node Control/Rebirth", datatype=3, boolean_value=True),  # says Int32
        Metric(name="Node Control/Rebirth", int_value=1),
        Metric(name="Node Control/Rebirth"),
    ],
)
def test_ncmd_rebirth_must_be_a_boolean(metric: Metric) -> None:
    with pytest.raises(MalformedMessage, match="Node Control/Rebirth"):
        parse_ncmd(Payload(metrics=[metric]).SerializeToString())


def test_dcmd_as_a_host_sends_it() -> None:
    metrics = press()
    (dcmd,) = encode_with_tahu(
        [
            {
                "timestamp": 1,
                "metrics": [
                    {"name": "speed", "type": "Int16", "value": -300},  # sign-extended
                    {"name": "count", "type": "UInt32", "value": 4000000000},  # in long_value
                    {"name": "recipe/name", "type": "String", "value": "PET-05"},
                    {"alias": metrics.spec("since").alias, "type": "DateTime", "value": 0},
                ],
            }
        ]
    )
    assert parse_dcmd(dcmd, metrics) == [
        Command("speed", -300),
        Command("count", 4000000000),
        Command("recipe.name", "PET-05"),
        Command("since", "1970-01-01T00:00:00.000Z"),  # as the OPC UA connector's values are
    ]


def test_dcmd_bytes_are_written_as_base64_like_the_tags_values() -> None:
    metrics = press()
    dcmd = Payload(metrics=[Metric(alias=metrics.spec("blob").alias, bytes_value=b"\x00\x01")])
    assert parse_dcmd(dcmd.SerializeToString(), metrics) == [Command("blob", "AAE=")]


@pytest.mark.parametrize(
    ("metric", "problem"),
    [
        (Metric(name="nope", int_value=1), "'nope' is no metric"),
        (Metric(alias=5, int_value=1), "alias 5 is no metric"),
        (Metric(int_value=1), "no name nor alias"),
        (Metric(name="speed", datatype=10, double_value=1.0), "datatype Double"),
        (Metric(name="speed", int_value=70000), "speed.*out of range"),
        (Metric(name="speed", string_value="7"), "speed.*int_value or long_value"),
        (Metric(name="speed", is_null=True), "speed: no value"),
        (Metric(name="speed", is_null=True, int_value=3), "speed: no value"),  # null says it
        (Metric(name="speed"), "speed: no value"),
    ],
)
def test_dcmd_refuses_what_no_metric_of_the_source_can_take(metric: Metric, problem: str) -> None:
    with pytest.raises(MalformedMessage, match=problem):
        parse_dcmd(Payload(metrics=[metric]).SerializeToString(), press())


def test_state() -> None:
    assert parse_state(b'{"online": true, "timestamp": 1763762540123}') == HostState(
        True, 1763762540123
    )
    for bad in (b"ONLINE", b"[]", b'{"online": "yes", "timestamp": 1}', b'{"online": false}'):
        with pytest.raises(MalformedMessage, match="STATE"):
            parse_state(bad)
