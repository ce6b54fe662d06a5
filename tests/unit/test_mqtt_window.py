"""The in-flight window: a batch released once every message of it is answered; refusals counted."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest

from gateway.mqtt import Refusal
from gateway.window import InflightWindow


class FakeBuffer:
    """The buffer as the window sees it."""

    def __init__(self) -> None:
        self.held: set[int] = set()
        self.released: list[int] = []
        self.let_gone: list[int] = []

    def hold(self, batch_id: int) -> None:
        self.held.add(batch_id)

    def release(self, batch_id: int) -> None:
        self.held.discard(batch_id)
        self.released.append(batch_id)

    def let_go(self, batch_ids: Iterable[int]) -> None:
        for batch_id in batch_ids:
            self.held.discard(batch_id)
            self.let_gone.append(batch_id)


def send(window: InflightWindow, batch_id: int, mids: list[int], source: str = "press1") -> None:
    """A per_tag batch: one reading a message."""
    window.expect(batch_id, len(mids), len(mids), source)
    for mid in mids:
        window.track(mid, batch_id)


def refusal(mid: int, topic: str = "acme/press1/secret") -> Refusal:
    return Refusal(mid, topic, 0x87, "Not authorized (0x87)")


def test_a_batch_is_released_when_its_last_message_is_acked_in_any_read() -> None:
    buffer = FakeBuffer()
    window = InflightWindow(buffer, max_messages=100)
    send(window, 7, [1, 2, 3])
    send(window, 8, [4, 5])
    window.acked([1, 4, 99])  # 99: from before a reconnect, ignored
    assert buffer.released == []
    window.acked([2, 3, 5])
    assert buffer.released == [7, 8]
    assert window.acked_messages == 5
    assert window.acked_readings == 5
    assert window.messages == 0
    assert window.readings == 0


def test_a_refused_message_is_counted_for_its_source_and_its_batch_still_released(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buffer = FakeBuffer()
    window = InflightWindow(buffer, max_messages=100)
    send(window, 7, [1, 2, 3], source="press1")
    with caplog.at_level(logging.WARNING):
        window.refused(refusal(2))
        window.acked([1])
        assert buffer.released == []  # message 3 is still unanswered
        window.acked([3])
    assert buffer.released == [7]
    assert window.refused_readings == {"press1": 1}
    assert window.acked_readings == 2  # the refused reading was not delivered
    assert "acme/press1/secret" in caplog.text
    assert "Not authorized (0x87)" in caplog.text


def test_a_refused_per_batch_message_counts_every_reading_of_its_batch() -> None:
    buffer = FakeBuffer()
    window = InflightWindow(buffer, max_messages=100)
    window.expect(7, readings=250, messages=1, source="oven")
    window.track(1, 7)
    window.refused(refusal(1, "acme/oven"))
    assert buffer.released == [7]
    assert window.refused_readings == {"oven": 250}
    assert window.acked_readings == 0


def test_each_topic_is_said_once_however_often_it_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = InflightWindow(FakeBuffer(), max_messages=100)
    for batch_id in range(1, 11):
        send(window, batch_id, [batch_id])
    with caplog.at_level(logging.WARNING):
        for mid in range(1, 11):
            window.refused(refusal(mid))
    assert window.refused_readings == {"press1": 10}
    assert caplog.text.count("acme/press1/secret") == 1


def test_a_refused_status_message_is_said_but_counts_no_reading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buffer = FakeBuffer()
    window = InflightWindow(buffer, max_messages=100)
    window.track(1)
    with caplog.at_level(logging.WARNING):
        window.refused(refusal(1, "acme/_gateway/status"))
    assert window.refused_readings == {}
    assert window.messages == 0
    assert "acme/_gateway/status: Not authorized (0x87)" in caplog.text


def test_a_fence_releases_the_qos0_batches_sent_before_it() -> None:
    buffer = FakeBuffer()
    window = InflightWindow(buffer, max_messages=100)
    window.sent_unacked(7, 10)
    window.sent_unacked(8, 5)
    window.fence(1)
    window.sent_unacked(9, 3)  # after the fence: waits for the next one
    assert window.needs_fence
    window.acked([1])
    assert buffer.released == [7, 8]
    assert window.readings == 3


def test_a_cleared_window_lets_every_batch_in_flight_go_back_to_the_buffer() -> None:
    buffer = FakeBuffer()
    window = InflightWindow(buffer, max_messages=100)
    send(window, 7, [1, 2])
    window.sent_unacked(8, 5)
    window.fence(3)
    window.sent_unacked(9, 1)
    window.clear()
    assert sorted(buffer.let_gone) == [7, 8, 9]
    assert buffer.held == set()
    window.acked([1, 2, 3])  # acks of the old connection arriving late change nothing
    assert buffer.released == []


def test_the_sender_is_woken_at_half_the_window() -> None:
    window = InflightWindow(FakeBuffer(), max_messages=4)
    send(window, 7, [1, 2, 3, 4])
    assert not window.has_room()
    window.opened.clear()
    window.acked([1])
    assert not window.opened.is_set()  # 3 of 4 still in flight
    window.acked([2])
    assert window.opened.is_set()
