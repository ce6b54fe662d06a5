"""The write desk's audit publishing: each entry goes out once, even while the buffer has not
yet committed that the broker acknowledged it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from buffer import Buffer
from gateway.commands import WriteDesk
from gateway.config import Config
from gateway.mqtt import MqttLink
from gateway.window import InflightWindow
from tests.helpers import gateway_config

ENTRY = {"id": "c-1", "source": "press1", "tag": "setpoint", "result": "written", "after": 5}


class SlowMarkingBuffer:
    """A buffer whose "published" marks are committed later, as the real one's are."""

    def __init__(self) -> None:
        self.marked: list[int] = []  # acknowledged, the mark on its way to the database
        self.committed: set[int] = set()  # marks in the database

    async def audit_pending(self) -> list[tuple[int, str]]:
        return [(7, json.dumps(ENTRY))] if 7 not in self.committed else []

    def audit_published(self, audit_id: int) -> None:
        self.marked.append(audit_id)


class InstantBroker:
    """A link whose every QoS 1 message is acknowledged as soon as it is tracked."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        self.sent.append(topic)
        return len(self.sent)

    def track(self, mid: int, batch_id: int | None = None, then: Any = None) -> None:
        if then is not None:
            then()


async def test_an_acknowledged_entry_is_not_sent_again_before_its_mark_is_committed(
    tmp_path: Path,
) -> None:
    config = Config.model_validate(gateway_config(tmp_path, 1883, 502))
    buffer = SlowMarkingBuffer()
    broker = InstantBroker()
    desk = WriteDesk(config, cast(Buffer, buffer), lambda s, t: None)
    link, window = cast(MqttLink, broker), cast(InflightWindow, broker)
    await desk.publish(link, window, "t/line", results=True)
    assert broker.sent == ["t/line/_gateway/audit", "t/line/press1/setpoint/set/result"]
    assert buffer.marked == [7]
    await desk.publish(link, window, "t/line", results=True)  # the mark is still on its way
    assert len(broker.sent) == 2
    buffer.committed.add(7)
    await desk.publish(link, window, "t/line", results=True)
    assert len(broker.sent) == 2
    assert not desk._acked  # forgotten once the database has it
