"""PUBLISH packets written by hand, checked byte for byte against paho's; PUBACKs read in a pass."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt_wire import (
    MQTT_5,
    MQTT_311,
    Malformed,
    PacketReader,
    PublishWriter,
    remaining_length,
    topic_name,
)

UNS = "acme/plant1/area2/line1/cell3/press1/hydraulics/oil_temperature_degC"

PahoPublish = Callable[[str, bytes, int, bool, int | None], bytes]


@pytest.fixture(params=[MQTT_311, MQTT_5], ids=["3.1.1", "5"])
def paho_wire(request: pytest.FixtureRequest) -> Iterator[tuple[int, PahoPublish]]:
    """What paho itself writes for a publish (the reference): a paho client on a socket."""
    protocol: int = request.param
    listener = socket.create_server(("127.0.0.1", 0))
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id="ref",
        protocol=paho.MQTTv5 if protocol == MQTT_5 else paho.MQTTv311,
    )
    client.connect("127.0.0.1", listener.getsockname()[1])  # writes CONNECT at once
    broker, _ = listener.accept()
    broker.settimeout(5)
    connect = broker.recv(2)
    broker.recv(connect[1])  # the rest of CONNECT (short: one length byte)

    def publish(topic: str, payload: bytes, qos: int, retain: bool, alias: int | None) -> bytes:
        properties = None
        if alias is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.TopicAlias = alias
        client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        head = broker.recv(2)
        length, shift, byte = 0, 0, head[1]
        while True:
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            byte = broker.recv(1)[0]
            head += bytes([byte])
        body = b""
        while len(body) < length:
            body += broker.recv(length - len(body))
        return head + body

    yield protocol, publish
    client.socket().close()  # type: ignore[union-attr]
    broker.close()
    listener.close()


def test_a_publish_is_what_paho_writes(paho_wire: tuple[int, PahoPublish]) -> None:
    protocol, reference = paho_wire
    writer = PublishWriter(protocol)
    cases = [
        (UNS, b'{"value":21.5,"quality":"good","ts":1763762540123,"seq":1042}', 1, True),
        ("t", b"", 1, False),
        (UNS, b"x" * 200, 0, False),  # a two-byte remaining length
        ("plant/ünits/°C", b"y" * 20_000, 1, False),  # three bytes, and UTF-8 in the topic
        (UNS, b"z", 1, False),  # a topic seen before: its name field made once, reused
    ]
    for mid, (topic, payload, qos, retain) in enumerate(cases, 1):  # paho numbers QoS 0 too
        out = bytearray()
        writer.write(out, topic, payload, qos, retain, mid)
        assert bytes(out) == reference(topic, payload, qos, retain, None), topic


def test_topic_aliases_are_what_paho_writes_and_run_out_at_the_maximum(
    paho_wire: tuple[int, PahoPublish],
) -> None:
    protocol, reference = paho_wire
    if protocol != MQTT_5:
        writer = PublishWriter(protocol, alias_maximum=10)  # 3.1.1 has no aliases
        out = bytearray()
        writer.write(out, UNS, b"1", 1, False, 1)
        writer.write(out, UNS, b"1", 1, False, 2)
        assert bytes(out) == reference(UNS, b"1", 1, False, None) + reference(
            UNS, b"1", 1, False, None
        )
        return
    writer = PublishWriter(protocol, alias_maximum=2)
    topics = [f"{UNS}/{n}" for n in range(3)]
    sent = []
    for round_ in range(2):
        for n, topic in enumerate(topics):
            out = bytearray()
            mid = 1 + round_ * 3 + n
            writer.write(out, topic, b"21.5", 1, False, mid)
            sent.append(bytes(out))
    expected = [
        reference(topics[0], b"21.5", 1, False, 1),  # named, and alias 1 set
        reference(topics[1], b"21.5", 1, False, 2),
        reference(topics[2], b"21.5", 1, False, None),  # no alias left: named every time
        reference("", b"21.5", 1, False, 1),  # the alias alone, the name left empty
        reference("", b"21.5", 1, False, 2),
        reference(topics[2], b"21.5", 1, False, None),
    ]
    assert sent == expected
    assert len(sent[0]) - len(sent[3]) == len(topics[0])  # the topic is not sent again


def test_remaining_length_at_the_boundaries_of_each_byte_count() -> None:
    # MQTT 3.1.1 section 2.2.3, table 2.4
    assert remaining_length(0) == b"\x00"
    assert remaining_length(127) == b"\x7f"
    assert remaining_length(128) == b"\x80\x01"
    assert remaining_length(16_383) == b"\xff\x7f"
    assert remaining_length(16_384) == b"\x80\x80\x01"
    assert remaining_length(2_097_151) == b"\xff\xff\x7f"
    assert remaining_length(2_097_152) == b"\x80\x80\x80\x01"
    assert remaining_length(268_435_455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError, match="too large"):
        remaining_length(268_435_456)


@pytest.mark.parametrize("topic", ["", "a/+/b", "a/#", "a\x00b", "x" * 65536])
def test_a_topic_no_broker_would_take_is_refused_before_it_is_sent(topic: str) -> None:
    with pytest.raises(ValueError, match="cannot publish on topic"):
        topic_name(topic)


def pubacks(*mids: int) -> bytes:
    return b"".join(bytes((0x40, 2, mid >> 8, mid & 0xFF)) for mid in mids)


def test_a_read_of_plain_pubacks_gives_their_message_ids_in_order() -> None:
    mids = [1, 2, 255, 256, 4660, 65535]
    got = PacketReader().feed(pubacks(*mids))
    assert got.acked == mids
    assert got.refused == []
    assert got.other == []


def test_packets_cut_anywhere_by_a_read_are_read_whole() -> None:
    suback = bytes((0x90, 3, 0x12, 0x34, 0x01))
    ping = b"\xd0\x00"
    big = bytes((0x30, 0x83, 0x01)) + b"\x00\x01t" + b"p" * 128  # a PUBLISH of 131 bytes
    stream = pubacks(1, 2) + suback + pubacks(3) + ping + big + pubacks(4)
    for cut in range(len(stream) + 1):
        reader = PacketReader()
        first, second = reader.feed(stream[:cut]), reader.feed(stream[cut:])
        assert first.acked + second.acked == [1, 2, 3, 4], cut
        assert first.other + second.other == [
            (0x90, suback[2:]),
            (0xD0, b""),
            (0x30, big[3:]),
        ], cut


def test_mqtt5_pubacks_success_reasons_are_acks_and_failures_are_refusals() -> None:
    reason_string = b"\x1f\x00\x06denied"  # property 0x1F, a UTF-8 string
    stream = (
        pubacks(1)
        + bytes((0x40, 3, 0, 2, 0x10))  # no matching subscribers: delivered to nobody, accepted
        + bytes((0x40, 3, 0, 3, 0x87))  # not authorized
        + bytes((0x40, 4 + len(reason_string), 0, 4, 0x97, len(reason_string)))
        + reason_string
        + bytes((0x40, 4, 0, 5, 0x00, 0x00))  # success, with an empty property list
    )
    got = PacketReader().feed(stream)
    assert got.acked == [1, 2, 5]
    assert got.refused == [(3, 0x87, b""), (4, 0x97, bytes((len(reason_string),)) + reason_string)]


def test_a_remaining_length_of_five_bytes_is_malformed() -> None:
    with pytest.raises(Malformed):
        PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(Malformed):
        PacketReader().feed(b"\x40\x01\x00")  # a PUBACK too short for a message id
