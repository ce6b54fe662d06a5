"""The two MQTT packets of the publishing hot path, written and read by hand: PUBLISH and PUBACK.

paho-mqtt keeps the connection (CONNECT, CONNACK, keepalive, SUBSCRIBE, incoming messages,
DISCONNECT). A gateway also sends a PUBLISH and reads a PUBACK for every reading, by the
hundred thousand; paho builds several objects for each (a message, its info, a reason code
and properties per PUBACK) and reads a PUBACK in three ``recv()`` calls, which cost more CPU
than the rest of the gateway together. Here a PUBLISH is a few byte appends onto a buffer that
goes out in one write, and one read's worth of PUBACKs is parsed in one pass.

MQTT 3.1.1 (protocol level 4) and MQTT 5 (level 5): in MQTT 5 a PUBLISH carries properties
(here only a topic alias) and a PUBACK may carry a reason code and properties.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass, field

MQTT_311 = 4
MQTT_5 = 5

PUBLISH = 0x30
PUBACK = 0x40
_TOPIC_ALIAS = 0x23  # MQTT 5 property identifier
_REFUSED = 0x80  # PUBACK reason codes from here on are failures
_MAX_REMAINING = 268_435_455  # the largest remaining length four bytes can say
_LITTLE_ENDIAN = sys.byteorder == "little"
_PUBACK_V5 = struct.Struct(">xxHB")  # header, length, message id, reason code


class Malformed(ValueError):
    """The broker sent bytes that are not an MQTT packet."""


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer: 7 bits a byte, least significant first."""
    if not 0 <= n <= _MAX_REMAINING:
        raise ValueError(f"an MQTT packet of {n} bytes is too large")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def topic_name(topic: str) -> bytes:
    """A topic as a PUBLISH writes it (length and UTF-8), refusing what a broker would refuse."""
    data = topic.encode()
    if not data or len(data) > 65535 or b"+" in data or b"#" in data or b"\x00" in data:
        raise ValueError(f"cannot publish on topic {topic!r}")
    return len(data).to_bytes(2, "big") + data


class PublishWriter:
    """Writes PUBLISH packets for one connection, with topic aliases when MQTT 5 allows them.

    Each topic's name field is made once. In MQTT 5 the first ``alias_maximum`` topics get an
    alias, in the order they are first published (a tag map's topics recur in every scan, so
    first come is as good as any and never evicts): the first PUBLISH names the topic and
    sets its alias, later ones send the alias and an empty name. Aliases live as long as the
    connection, and so does this writer.
    """

    def __init__(self, protocol: int, alias_maximum: int = 0, limit: int = 200_000) -> None:
        self.protocol = protocol
        self.alias_maximum = alias_maximum if protocol == MQTT_5 else 0
        self._aliases = 0  # aliases handed out on this connection
        # topic -> (name field, properties field) of its next PUBLISH (bounded by ``limit``)
        self._forms: dict[str, tuple[bytes, bytes]] = {}
        self._limit = limit
        self._no_properties = b"\x00" if protocol == MQTT_5 else b""

    def write(
        self, out: bytearray, topic: str, payload: bytes, qos: int, retain: bool, mid: int
    ) -> None:
        """Append one PUBLISH to ``out`` (``mid`` only matters at QoS 1)."""
        form = self._forms.get(topic)
        if form is None:
            form = self._first(topic)
        name, properties = form
        length = len(name) + len(properties) + len(payload)
        if qos:
            length += 2
        out.append(PUBLISH | (qos << 1) | retain)
        if length < 128:
            out.append(length)
        else:
            out += remaining_length(length)
        out += name
        if qos:
            out.append(mid >> 8)
            out.append(mid & 0xFF)
        out += properties
        out += payload

    def _first(self, topic: str) -> tuple[bytes, bytes]:
        """The form of a topic's first PUBLISH, remembering the form of the ones after it."""
        name = topic_name(topic)
        if len(self._forms) >= self._limit:
            # More topics than any tag map has: start over (aliases already given stay
            # valid at the broker; the topics that had them are simply named again).
            self._forms.clear()
        if self._aliases < self.alias_maximum:
            self._aliases += 1
            alias = bytes((3, _TOPIC_ALIAS)) + self._aliases.to_bytes(2, "big")
            self._forms[topic] = (b"\x00\x00", alias)
            return name, alias
        form = self._forms[topic] = (name, self._no_properties)
        return form


@dataclass(slots=True)
class Received:
    """One read's packets: message ids acknowledged, refused, and every other packet."""

    acked: list[int] = field(default_factory=list)
    refused: list[tuple[int, int, bytes]] = field(default_factory=list)  # mid, reason, props
    other: list[tuple[int, bytes]] = field(default_factory=list)  # first byte, body


class PacketReader:
    """Splits what the broker sends into packets, keeping a packet cut by a read for the next.

    PUBACKs are parsed here (in MQTT 5 a reason code below 0x80 is a success, e.g. 0x10 "no
    matching subscribers"); every other packet is handed on whole. A read of nothing but
    plain 4-byte PUBACKs (the common case, with ack after ack queued in the socket) is parsed
    without a loop in Python.
    """

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> Received:
        """The complete packets of what was read so far."""
        if self._rest:
            data = self._rest + data
            self._rest = b""
        got = Received()
        size = len(data)
        if size and size % 4 == 0 and _only_short_pubacks(data):
            ids = array("H", data)
            if _LITTLE_ENDIAN:
                ids.byteswap()
            got.acked = ids[1::2].tolist()
            return got
        at = 0
        while size - at >= 2:
            first = data[at]
            length = data[at + 1]
            head = 2
            if length & 0x80:
                length, head = _long_length(data, at)
                if head == 0:
                    break  # the length itself is cut
            end = at + head + length
            if end > size:
                break
            if first == PUBACK:
                if length == 2:
                    got.acked.append((data[at + 2] << 8) | data[at + 3])
                elif length >= 3:
                    mid, reason = _PUBACK_V5.unpack_from(data, at)
                    if reason < _REFUSED:
                        got.acked.append(mid)
                    else:
                        got.refused.append((mid, reason, data[at + 5 : end]))
                else:
                    raise Malformed(f"a PUBACK of {length} bytes")
            else:
                got.other.append((first, data[at + head : end]))
            at = end
        self._rest = data[at:]
        return got


def _only_short_pubacks(data: bytes) -> bool:
    """True when ``data`` is a run of PUBACKs with no reason code (4 bytes each)."""
    return not data[0::4].replace(b"\x40", b"") and not data[1::4].replace(b"\x02", b"")


def _long_length(data: bytes, at: int) -> tuple[int, int]:
    """(remaining length, header size) of the packet at ``at``; header size 0 when cut short."""
    value, shift = 0, 0
    for i in range(at + 1, min(at + 5, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i - at + 1
        shift += 7
    if len(data) - at >= 5:
        raise Malformed("a remaining length longer than four bytes")
    return 0, 0
