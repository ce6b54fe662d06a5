"""The paho-mqtt internals ``gateway.mqtt`` relies on, proven on the pinned paho (constraints.txt).

``MqttLink`` writes PUBLISH and reads PUBACK itself and leaves the rest to paho through three
internals: ``Client._packet_queue`` (``queue_bytes``), ``Client._in_packet`` with
``Client._packet_handle`` (``hand_over``) and ``Client._last_mid``. Each test here drives a real
paho client over a real socket and fails when an upgrade changes what the link counts on.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.mqtt import hand_over, queue_bytes


@dataclass
class Seen:
    """What paho called back."""

    connects: list[Any] = field(default_factory=list)
    subacks: list[tuple[int, list[int]]] = field(default_factory=list)
    messages: list[tuple[str, bytes, int]] = field(default_factory=list)
    published: list[int] = field(default_factory=list)
    disconnects: list[tuple[bool, int]] = field(default_factory=list)
    write_wanted: int = 0


@dataclass
class Wire:
    """A paho client connected to a socket that stands in for the broker."""

    client: paho.Client
    broker: socket.socket
    seen: Seen

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes of what the client wrote."""
        data = b""
        while len(data) < size:
            data += self.broker.recv(size - len(data))
        return data


@pytest.fixture(params=[paho.MQTTv311, paho.MQTTv5], ids=["3.1.1", "5"])
def wire(request: pytest.FixtureRequest) -> Iterator[Wire]:
    listener = socket.create_server(("127.0.0.1", 0))
    seen = Seen()
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id="pin",
        protocol=request.param,
        reconnect_on_failure=False,
    )
    client.on_connect = lambda c, u, f, code, p: seen.connects.append(code)
    client.on_subscribe = lambda c, u, mid, codes, p: seen.subacks.append(
        (mid, [code.value for code in codes])
    )
    client.on_message = lambda c, u, m: seen.messages.append((m.topic, bytes(m.payload), m.qos))
    client.on_publish = lambda c, u, mid, code, p: seen.published.append(mid)
    client.on_disconnect = lambda c, u, flags, code, p: seen.disconnects.append(
        (flags.is_disconnect_packet_from_server, code.value)
    )
    client.connect("127.0.0.1", listener.getsockname()[1])  # writes CONNECT at once
    broker, _ = listener.accept()
    broker.settimeout(5)
    head = broker.recv(2)
    broker.recv(head[1])  # the rest of CONNECT

    def wanted(c: paho.Client, u: Any, s: Any) -> None:
        seen.write_wanted += 1

    # From here on, as in MqttLink: paho queues and asks for a writable socket, never writes
    # by itself.
    client.on_socket_register_write = wanted
    yield Wire(client, broker, seen)
    sock = client.socket()
    if sock is not None:
        sock.close()
    broker.close()
    listener.close()


def test_queued_bytes_go_out_whole_after_what_paho_queued_and_call_back_nothing(
    wire: Wire,
) -> None:
    client = wire.client
    rc, mid = client.subscribe("plant/cmd", 1)  # paho's own packet, queued first
    assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert mid is not None
    ours = bytearray(b"\x32\x07\x00\x01t\x00\x2a" + b"hi") + b"\x30\x04\x00\x01tX"
    queue_bytes(client, ours)
    assert wire.seen.write_wanted >= 1  # asked for a writable socket, wrote nothing yet
    assert client.want_write()
    assert client.loop_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert not client.want_write()
    subscribe = wire.read(2)
    assert subscribe[0] == 0x82
    wire.read(subscribe[1])
    assert wire.read(len(ours)) == bytes(ours)  # after it, whole, unchanged
    assert wire.seen.published == []  # not taken for a QoS 0 publish of paho's own


def test_a_connack_handed_over_connects_and_a_refusal_is_an_error(wire: Wire) -> None:
    client = wire.client
    v5 = client.protocol == paho.MQTTv5
    connack = b"\x00\x00\x00" if v5 else b"\x00\x00"  # v5: flags, reason, no properties
    assert hand_over(client, 0x20, connack) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [code.value for code in wire.seen.connects] == [0]
    assert client.is_connected()
    assert client._in_packet["command"] == 0  # left clean for paho's own reader
    refused = b"\x00\x87\x00" if v5 else b"\x00\x05"  # not authorized
    assert hand_over(client, 0x20, refused) != MQTTErrorCode.MQTT_ERR_SUCCESS
    assert wire.seen.connects[-1].is_failure
    assert wire.seen.connects[-1].value == 0x87  # 3.1.1's 5 as its MQTT 5 name


def test_suback_publish_and_pingresp_handed_over_reach_paho(wire: Wire) -> None:
    client = wire.client
    v5 = client.protocol == paho.MQTTv5
    hand_over(client, 0x20, b"\x00\x00\x00" if v5 else b"\x00\x00")
    _, mid = client.subscribe("plant/cmd", 1)
    assert mid is not None
    no_properties = b"\x00" if v5 else b""
    suback = mid.to_bytes(2, "big") + no_properties + b"\x01"
    assert hand_over(client, 0x90, suback) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert wire.seen.subacks == [(mid, [1])]
    # A QoS 1 message from the broker: paho calls back and answers with a PUBACK.
    publish = b"\x00\x09plant/cmd" + b"\x12\x34" + no_properties + b'{"value":1}'
    assert hand_over(client, 0x32, publish) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert wire.seen.messages == [("plant/cmd", b'{"value":1}', 1)]
    client.loop_write()
    wire.read(2 + 2 + 9 + 2 + 1 + len(no_properties))  # the SUBSCRIBE
    assert wire.read(4) == b"\x40\x02\x12\x34"
    assert hand_over(client, 0xD0, b"") == MQTTErrorCode.MQTT_ERR_SUCCESS  # PINGRESP


@pytest.mark.parametrize("wire", [paho.MQTTv5], ids=["5"], indirect=True)
def test_an_mqtt5_disconnect_handed_over_says_the_brokers_reason(wire: Wire) -> None:
    client = wire.client
    hand_over(client, 0x20, b"\x00\x00\x00")
    hand_over(client, 0xE0, b"\x8e\x00")  # session taken over
    assert wire.seen.disconnects == [(True, 0x8E)]
    assert client.socket() is None  # paho closed it


def test_paho_numbers_its_subscribe_after_the_links_last_message_id(wire: Wire) -> None:
    client = wire.client
    client._last_mid = 41
    assert client.subscribe("plant/cmd", 1)[1] == 42
    assert client._last_mid == 42
    client._last_mid = 65535  # and wraps as the link's own counter does: 65535 -> 1
    assert client.subscribe("plant/cmd", 1)[1] == 1
