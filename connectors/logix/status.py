"""CIP reply statuses in words: what a refused request tells the operator.

A device error names the controller's own code and its meaning, e.g. ``CIP status 0x05 (path
destination unknown)``, so it can be looked up in Rockwell's manuals.
"""

from __future__ import annotations

from dataclasses import dataclass

# CIP general status codes (CIP Vol. 1, Appendix B) as a Logix controller uses them.
GENERAL = {
    0x01: "connection failure",
    0x02: "resource unavailable",
    0x03: "invalid parameter value",
    0x04: "path segment error",
    0x05: "path destination unknown",
    0x06: "partial transfer",
    0x07: "connection lost",
    0x08: "service not supported",
    0x09: "invalid attribute value",
    0x0A: "attribute list error",
    0x0B: "already in requested mode",
    0x0C: "object state conflict",
    0x0D: "object already exists",
    0x0E: "attribute not settable",
    0x0F: "privilege violation",
    0x10: "device state conflict",
    0x11: "reply data too large",
    0x12: "fragmentation of a primitive value",
    0x13: "not enough data",
    0x14: "attribute not supported",
    0x15: "too much data",
    0x16: "object does not exist",
    0x1E: "embedded service error",
    0x1F: "vendor specific error",
    0x20: "invalid parameter",
    0x26: "path size invalid",
    0xFF: "general error",
}
# Logix extended statuses that follow a general error (0xFF).
EXTENDED = {
    0x2101: "keyswitch position does not allow it",
    0x2104: "offset out of range",
    0x2105: "beyond the end of the object",
    0x2106: "data in use",
    0x2107: "the request's data type does not match the tag's",
    0x2108: "controller in upload or download mode",
    0x2113: "controller faulted",
}

_SEND_UNIT_DATA = 0x70  # connected messages: the reply's CIP status sits at byte 48
CONNECTED_STATUS_AT = 48
_SEND_RR_DATA = 0x6F  # unconnected messages: at byte 42
_STATUS_AT = {_SEND_UNIT_DATA: CONNECTED_STATUS_AT, _SEND_RR_DATA: 42}


@dataclass(frozen=True, slots=True)
class CipStatus:
    """A reply's general status and its extended status words."""

    general: int
    extended: tuple[int, ...] = ()

    def __str__(self) -> str:
        text = f"CIP status 0x{self.general:02X} ({GENERAL.get(self.general, 'unknown status')})"
        for word in self.extended:
            if not word:  # Logix pads path errors with a zero word: it says nothing
                continue
            meaning = EXTENDED.get(word)
            text += f", extended 0x{word:04X}" + (f" ({meaning})" if meaning else "")
        return text

    @property
    def ok(self) -> bool:
        """Success, or a partial transfer that the client continues."""
        return self.general in (0x00, 0x06)


def reply_status(reply: bytes, at: int | None = None) -> CipStatus | None:
    """The CIP status of an encapsulated reply, found by its command unless ``at`` says where
    (None: not a CIP message reply, or too short)."""
    if at is None and len(reply) >= 2:
        at = _STATUS_AT.get(int.from_bytes(reply[:2], "little"))
    if at is None or len(reply) < at + 2:
        return None
    words = reply[at + 1]
    raw = reply[at + 2 : at + 2 + 2 * words]
    extended = tuple(int.from_bytes(raw[i : i + 2], "little") for i in range(0, len(raw) - 1, 2))
    return CipStatus(reply[at], extended)
