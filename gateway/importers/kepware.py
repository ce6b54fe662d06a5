"""Kepware's CSV tag export (KEPServerEX / Kepware Edge, Modbus TCP/IP Ethernet driver).

Kepware exports one device or tag group as a CSV file: a header record, then one record per
tag. The columns, as Kepware's documentation lists them: ``Tag Name``, ``Address``,
``Data Type``, ``Respect Data Type``, ``Client Access``, ``Scan Rate`` (ms), ``Scaling``
(Linear, Square Root), ``Raw Low``, ``Raw High``, ``Scaled Low``, ``Scaled High``,
``Scaled Data Type``, ``Clamp Low``, ``Clamp High``, ``Eng Units``, ``Description``, and in
newer versions ``Negate Value``. Blank cells take Kepware's defaults.

Modbus addresses, as the Modbus Ethernet driver writes them: the first digit is the table
(0 coils, 1 discrete inputs, 3 input registers, 4 holding registers), the rest the 1-based item
number, padded or not (``41``, ``4001``, ``40001`` and ``400001`` are all holding register 1,
plantgate's ``holding:0``); ``40001.3`` is bit 3 of a register (zero-based bits, the driver's
default); ``40001.20H`` is a 20-byte string, high byte first (``L``: low byte first); ``[n]``
makes an array.

Mapped: Boolean, Short, Word, Long, DWord, LLong, QWord, Float, Double, String (and Default:
the table's natural type); Linear scaling with its clamps; Negate Value; Eng Units; Scan Rate.
Not imported, each with a warning naming the row: BCD and LBCD, Char and Byte, Date, arrays,
Square Root scaling. Respect Data Type concerns Kepware's OPC clients; Client Access is not
imported because writes are switched on by hand in plantgate's YAML.

Kepware keeps the word order of 32- and 64-bit values in the device's settings ("First word
low"...), not in this file: the source's ``byte_order`` comes from ``--byte-order``.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.importers.model import ImportedTag, ImportResult, Scale, tag_name
from gateway.importers.table import Row, read_table

COLUMNS = {
    "tag name": "Tag Name",
    "address": "Address",
    "data type": "Data Type",
    "respect data type": "Respect Data Type",
    "client access": "Client Access",
    "scan rate": "Scan Rate",
    "scaling": "Scaling",
    "raw low": "Raw Low",
    "raw high": "Raw High",
    "scaled low": "Scaled Low",
    "scaled high": "Scaled High",
    "scaled data type": "Scaled Data Type",
    "clamp low": "Clamp Low",
    "clamp high": "Clamp High",
    "eng units": "Eng Units",
    "description": "Description",
    "negate value": "Negate Value",
}
# Kepware data type -> plantgate type (None: the table's natural type)
TYPES: dict[str, str | None] = {
    "default": None,
    "boolean": "bool",
    "short": "int16",
    "word": "uint16",
    "long": "int32",
    "dword": "uint32",
    "llong": "int64",
    "qword": "uint64",
    "float": "float32",
    "double": "float64",
    "string": "string",
}
NO_EQUIVALENT = {
    "bcd": "BCD (binary-coded decimal) values are not decoded by plantgate",
    "lbcd": "BCD (binary-coded decimal) values are not decoded by plantgate",
    "char": "8-bit values (Char) have no Modbus equivalent in plantgate",
    "byte": "8-bit values (Byte) have no Modbus equivalent in plantgate",
    "date": "Date values are not decoded by plantgate",
}
INTEGER_TYPES = {"char", "byte", "short", "word", "long", "dword", "llong", "qword", "bcd", "lbcd"}
WIDE = {"int32", "uint32", "int64", "uint64", "float32", "float64"}
TABLES = {"0": "coil", "1": "discrete", "3": "input", "4": "holding"}
_ADDRESS = re.compile(
    r"^(?P<table>[0134])(?P<item>\d{1,5})"
    r"(?:\.(?P<sub>\d{1,3})(?P<order>[HhLl])?)?"
    r"(?P<array>(?:\[\d+\]){1,2})?$"
)


def import_kepware(path: Path, byte_order: str | None = None) -> ImportResult:
    """Read a Kepware CSV tag export of Modbus tags (see the module docstring)."""
    table = read_table(path)
    result = ImportResult("modbus", byte_order=byte_order)
    if table.note:
        result.warn(0, table.note)
    for raw, key in zip(table.raw_columns, table.columns, strict=True):
        if key not in COLUMNS:
            result.warn(1, f"column {raw!r} is not a Kepware tag column plantgate knows: ignored")
    for required in ("tag name", "address"):
        if required not in table.columns:
            result.error(1, f"no {COLUMNS[required]!r} column: is this a Kepware tag export?")
    if result.errors:
        return result
    for row in table.rows:
        tag = _tag(row, result)
        if tag is not None:
            result.add(tag)
    if byte_order is None and any(t.type in WIDE for t in result.tags):
        result.warn(
            0,
            "32- and 64-bit tags: Kepware keeps their word order in the device's settings, not "
            "in the export; set the source's byte_order (--byte-order) to match them",
        )
    return result


class _Refused(ValueError):
    """The row cannot be imported as written: an error, the file is refused."""


class _Skipped(ValueError):
    """The row is valid for Kepware, but plantgate has no equivalent: a warning."""


def _tag(row: Row, result: ImportResult) -> ImportedTag | None:
    name = row.get("tag name")
    label = name or "(no name)"
    notes: list[str] = []  # what is imported with less than the row said
    try:
        tag = _convert(row, name, notes)
    except _Refused as exc:
        result.error(row.line, f"{label}: {exc}")
        return None
    except _Skipped as exc:
        result.warn(row.line, f"{label}: not imported: {exc}")
        return None
    for note in notes:
        result.warn(row.line, f"{label}: {note}")
    return tag


def _convert(row: Row, name: str, notes: list[str]) -> ImportedTag:
    if not name:
        raise _Refused("Tag Name is empty")
    data_type = _data_type(row.get("data type"))
    address, length, order = _address(row.get("address"), data_type, notes)
    safe = tag_name(name)
    if safe != name:
        notes.append(f"not a topic-safe name: named {safe}")
    negate = _flag(row.get("negate value"))
    scale = _scaling(row, negate, notes)
    return ImportedTag(
        line=row.line,
        name=safe,
        address=address,
        type=data_type,
        length=length,
        byte_order=order,
        scale=scale,
        multiplier=-1.0 if negate and scale is None else None,
        units=row.get("eng units") or None,
        scan=_scan(row.get("scan rate")),
        description=row.get("description") or None,
    )


def _data_type(text: str) -> str | None:
    kepware = text.lower() or "default"
    if kepware.endswith(" array"):
        raise _Skipped(f"arrays ({text}) have no plantgate equivalent")
    if kepware in NO_EQUIVALENT:
        raise _Skipped(NO_EQUIVALENT[kepware])
    if kepware not in TYPES:
        raise _Refused(f"Data Type {text!r} is not a Kepware data type")
    return TYPES[kepware]


def _address(
    text: str, data_type: str | None, notes: list[str]
) -> tuple[str, int | None, str | None]:
    """plantgate's address, a string's length in registers, and its byte order."""
    match = _ADDRESS.match(text.replace(" ", ""))
    if match is None:
        raise _Refused(f"Address {text!r} is not a Kepware Modbus address")
    if match["array"]:
        raise _Skipped(f"arrays ({text}) have no plantgate equivalent")
    table, item = TABLES[match["table"]], int(match["item"])
    if not 1 <= item <= 65536:
        raise _Refused(f"Address {text}: items are numbered 1 to 65536")
    address = f"{table}:{item - 1}"
    if match["sub"] is None:
        if data_type == "string":
            raise _Refused(f"a String address says its length in bytes, e.g. {text}.20H")
        return address, None, None
    size = int(match["sub"])
    if match["order"] is None:
        return f"{address}.{size}", None, None  # a bit of a register
    if data_type != "string":
        raise _Refused(f"Address {text} is a string address, but the Data Type is not String")
    length = (size + 1) // 2
    if size % 2:
        notes.append(f"a {size}-byte string is read as {length * 2} characters")
    return address, length, "BADC" if match["order"].upper() == "L" else None


def _scan(text: str) -> float | None:
    """Seconds (None: the source's scan)."""
    if not text:
        return None
    try:
        ms = float(text)
    except ValueError:
        raise _Refused(f"Scan Rate {text!r} is not a number of milliseconds") from None
    return ms / 1000 if ms > 0 else None


def _scaling(row: Row, negate: bool, notes: list[str]) -> Scale | None:
    mode = row.get("scaling").lower()
    if mode in ("", "none"):
        return None
    if mode == "square root":
        raise _Skipped("plantgate has no square-root scaling")
    if mode != "linear":
        raise _Refused(f"Scaling {row.get('scaling')!r} is not Linear or Square Root")
    ends = []
    for column in ("raw low", "raw high", "scaled low", "scaled high"):
        try:
            ends.append(float(row.get(column)))
        except ValueError:
            raise _Refused(f"{COLUMNS[column]} {row.get(column)!r} is not a number") from None
    raw_low, raw_high, eng_low, eng_high = ends
    if negate:  # Kepware negates the scaled value: the same as negating both scaled ends
        eng_low, eng_high = -eng_low, -eng_high
    clamp_low, clamp_high = _flag(row.get("clamp low")), _flag(row.get("clamp high"))
    if clamp_low != clamp_high:
        notes.append("one end clamped; plantgate clamps both ends or neither: not clamped")
    if row.get("scaled data type").lower() in INTEGER_TYPES:
        notes.append(
            f"Kepware rounds the scaled value to {row.get('scaled data type')}; "
            "plantgate publishes it with its decimals"
        )
    return Scale((raw_low, raw_high), (eng_low, eng_high), clamp_low and clamp_high)


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes")
