"""Modbus addresses: ``holding:100``, ``holding:100.3`` and Modicon numbers like ``40101``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Table = Literal["coil", "discrete", "input", "holding"]

BIT_TABLES: frozenset[Table] = frozenset({"coil", "discrete"})
# The leading digit of a Modicon number names its table.
_MODICON_TABLE: dict[str, Table] = {"0": "coil", "1": "discrete", "3": "input", "4": "holding"}
_EXPLICIT = re.compile(r"^(coil|discrete|input|holding):(\d+)(?:\.(\d+))?$")
_MODICON = re.compile(r"^([0134])(\d{4,5})(?:\.(\d+))?$")


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A 0-based protocol address in one table, optionally one bit of a register."""

    table: Table
    offset: int
    bit: int | None = None

    @property
    def is_bit_table(self) -> bool:
        """True for coils and discrete inputs (one bit per address)."""
        return self.table in BIT_TABLES

    def __str__(self) -> str:
        bit = "" if self.bit is None else f".{self.bit}"
        return f"{self.table}:{self.offset}{bit}"


def parse_address(text: str) -> Address:
    """Parse an address; Modicon numbers (5 or 6 digits) are 1-based, ``table:N`` is 0-based."""
    text = str(text).strip()
    if m := _EXPLICIT.match(text):
        table: Table = m.group(1)  # type: ignore[assignment]
        offset = int(m.group(2))
    elif m := _MODICON.match(text):
        table = _MODICON_TABLE[m.group(1)]
        number = int(m.group(2))
        if number == 0:
            raise ValueError(f"{text!r}: Modicon numbers start at 1 (e.g. 40001 is holding:0)")
        offset = number - 1
    else:
        raise ValueError(
            f"{text!r} is not a Modbus address; use coil|discrete|input|holding:N (0-based), "
            "optionally .BIT, or a Modicon number such as 40101"
        )
    if offset > 65535:
        raise ValueError(f"{text!r}: offset {offset} is beyond 65535")
    bit = int(m.group(3)) if m.group(3) is not None else None
    if bit is not None:
        if table in BIT_TABLES:
            raise ValueError(f"{text!r}: a bit number only applies to input or holding registers")
        if bit > 15:
            raise ValueError(f"{text!r}: bit {bit} is beyond 15")
    return Address(table, offset, bit)
