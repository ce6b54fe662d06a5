"""MqttLink's socket callbacks (paho opens the socket in a thread, the loop watches it), and
what it says when a subscription is refused, against a fake broker of a few lines."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.config import MqttConfig
from gateway.errors import BrokerError, BrokerRefused
from gateway.mqtt import MqttLink, Will


def link() -> MqttLink:
    return MqttLink(
        MqttConfig(),
        "line1-edge",
        Will("t/_gateway/status", b"offline"),
        on_acks=lambda mids: None,
        on_refused=lambda refusal: None,
    )


async def settle() -> None:
    for _ in range(3):  # call_soon_threadsafe callbacks run on the next loop iterations
        await asyncio.sleep(0)


async def test_a_socket_opened_for_a_live_link_is_watched() -> None:
    live = link()
    ours, broker = socket.socketpair()
    live._on_socket_open(live._client, None, ours)
    await settle()
    assert live._sock is ours
    assert ours.fileno() != -1
    await live.close()
    ours.close()
    broker.close()


async def test_a_socket_that_opens_after_connect_gave_up_is_closed_not_watched() -> None:
    late = link()
    await late.close()  # what the publisher does when connect() timed out
    ours, broker = socket.socketpair()
    late._on_socket_open(late._client, None, ours)  # paho's connect thread, finishing late
    late._on_register_write(late._client, None, ours)
    await settle()
    assert ours.fileno() == -1  # closed: it cannot log in with our client id
    assert late._sock is None
    broker.close()


class FakeBroker:
    """Just enough of a broker on loopback to answer CONNECT and SUBSCRIBE with set bytes."""

    def __init__(self, v5: bool, suback_codes: bytes) -> None:
        self.v5 = v5
        self.suback_codes = suback_codes
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        no_properties = b"\x00" if self.v5 else b""
        while head := await reader.read(2):
            body = await reader.readexactly(head[1])  # these packets have one length byte
            if head[0] == 0x10:  # CONNECT
                writer.write(b"\x20" + bytes((2 + len(no_properties),)) + b"\x00\x00")
                writer.write(no_properties)
            elif head[0] == 0x82:  # SUBSCRIBE: answer its message id
                rest = body[:2] + no_properties + self.suback_codes
                writer.write(b"\x90" + bytes((len(rest),)) + rest)
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.mark.parametrize(
    ("protocol", "said"),
    [("3.1.1", "b: Unspecified error"), (5, "b: Not authorized (0x87)")],
    ids=["3.1.1", "5"],
)
async def test_a_refused_subscription_names_its_topic_and_reason(
    protocol: str | int, said: str
) -> None:
    broker = FakeBroker(
        v5=protocol == 5, suback_codes=b"\x01\x87" if protocol == 5 else b"\x01\x80"
    )
    port = await broker.start()
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{port}", protocol=protocol)
    link = MqttLink(
        cfg, "e", Will("t/s", b"off"), on_acks=lambda m: None, on_refused=lambda r: None
    )
    try:
        await link.connect(5)
        with pytest.raises(BrokerRefused, match="refused to subscribe") as refused:
            await link.subscribe(["a", "b"], qos=1, timeout=5)
        assert str(refused.value).endswith(said)
        assert "a:" not in str(refused.value)  # granted
    finally:
        await link.close()
        await broker.stop()


async def test_publishing_on_a_closed_link_is_a_broker_error() -> None:
    closed = link()
    await closed.close()
    with pytest.raises(BrokerError, match="the connection is closed"):
        closed.publish("t/a", b"1", qos=1, retain=False)
