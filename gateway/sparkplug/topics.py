"""Sparkplug B topics: ``spBv1.0/{group}/{type}/{edge}[/{device}]`` and ``spBv1.0/STATE/{host}``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.errors import MalformedMessage

NAMESPACE = "spBv1.0"
_RESERVED = frozenset("/+#")  # never inside a group, edge node or device id (topic levels)


class MessageType(StrEnum):
    """The Sparkplug verbs: node messages, then device messages."""

    NBIRTH = "NBIRTH"
    NDATA = "NDATA"
    NDEATH = "NDEATH"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDATA = "DDATA"
    DDEATH = "DDEATH"
    DCMD = "DCMD"

    @property
    def of_device(self) -> bool:
        """True for the verbs whose topic names a device."""
        return self.value.startswith("D")


@dataclass(frozen=True, slots=True)
class Topic:
    """An edge node's or device's topic; ``device_id`` is None exactly for node messages."""

    group_id: str
    message_type: MessageType
    edge_node_id: str
    device_id: str | None = None

    def __post_init__(self) -> None:
        if self.message_type.of_device != (self.device_id is not None):
            who = "a device id" if self.message_type.of_device else "no device id"
            raise ValueError(f"a {self.message_type} topic takes {who}")
        ids = (self.group_id, self.edge_node_id, self.device_id or "x")
        for part in ids:
            if not part or _RESERVED & set(part):
                raise ValueError(f"{part!r}: a Sparkplug id is non-empty, without / + #")

    def __str__(self) -> str:
        head = f"{NAMESPACE}/{self.group_id}/{self.message_type}/{self.edge_node_id}"
        return head if self.device_id is None else f"{head}/{self.device_id}"


@dataclass(frozen=True, slots=True)
class StateTopic:
    """A primary host application's STATE topic."""

    host_id: str

    def __post_init__(self) -> None:
        if not self.host_id or _RESERVED & set(self.host_id):
            raise ValueError(f"{self.host_id!r}: a host id is non-empty, without / + #")

    def __str__(self) -> str:
        return f"{NAMESPACE}/STATE/{self.host_id}"


def node_topic(group_id: str, message_type: MessageType, edge_node_id: str) -> str:
    """The topic of an edge node message (NBIRTH, NDATA, NDEATH, NCMD)."""
    return str(Topic(group_id, message_type, edge_node_id))


def device_topic(
    group_id: str, message_type: MessageType, edge_node_id: str, device_id: str
) -> str:
    """The topic of a device message (DBIRTH, DDATA, DDEATH, DCMD)."""
    return str(Topic(group_id, message_type, edge_node_id, device_id))


def state_topic(host_id: str) -> str:
    """The STATE topic of a primary host application."""
    return str(StateTopic(host_id))


def parse_topic(topic: str) -> Topic | StateTopic:
    """A Sparkplug B topic back into its parts; MalformedMessage if it is not one."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise MalformedMessage(f"{topic!r}: not a Sparkplug B topic (it starts with {NAMESPACE}/)")
    try:
        if len(parts) == 3 and parts[1] == "STATE":
            return StateTopic(parts[2])
        if len(parts) in (4, 5):
            verb = MessageType(parts[2])
            return Topic(parts[1], verb, parts[3], parts[4] if len(parts) == 5 else None)
    except ValueError as exc:
        raise MalformedMessage(f"{topic!r}: {exc}") from exc
    raise MalformedMessage(
        f"{topic!r}: expected {NAMESPACE}/GROUP/TYPE/EDGE[/DEVICE] or {NAMESPACE}/STATE/HOST"
    )
