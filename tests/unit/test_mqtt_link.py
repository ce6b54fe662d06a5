"""MqttLink's socket callbacks: paho opens the socket in a thread, the loop watches it."""

from __future__ import annotations

import asyncio
import socket

from gateway.config import MqttConfig
from gateway.mqtt import MqttLink


def link() -> MqttLink:
    return MqttLink(
        MqttConfig(),
        "line1-edge",
        ("t/_gateway/status", b"offline"),
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
