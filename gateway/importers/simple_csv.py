"""The simple CSV tag list: one tag per row, columns named after plantgate's tag keys.

A header row names the columns, in any order (case, spaces, dots and underscores do not
matter); only ``name`` and ``address`` are required::

    name,address,type,units,scan,description
    oven_temp,holding:2,int16,degC,1s,oven zone 1
    bottles,Program:MainProgram.BottleCount,DINT,,,

Columns:

``name``
    the tag's name in topics (letters, digits, ``_ - .``; anything else becomes ``_``).
``address``
    the address in the protocol's own form: ``holding:100``, ``40101``, ``coil:3`` or
    ``holding:6.3`` (Modbus); a node id such as ``nsu=urn:plant;s=Oven.Temp`` (OPC UA); a
    Studio 5000 address such as ``Program:Main.Count`` or ``Recipe.Speed`` (Logix).
``type``
    Modbus: ``bool int16 uint16 int32 uint32 int64 uint64 float32 float64 string``;
    Logix: the declared type, e.g. ``DINT``, ``REAL[100]``, ``STRING`` (see docs/import.md).
``length``
    Modbus strings: registers (two characters each).
``byte_order``
    Modbus: ``ABCD CDAB BADC DCBA`` (or the 64-bit names).
``unit_id``
    Modbus: the unit behind a gateway, when it is not the source's.
``units``, ``scan``, ``deadband``
    as in the tag map: ``degC``, ``250ms``, ``0.5``.
``raw_low``, ``raw_high``, ``eng_low``, ``eng_high``, ``clamp``
    linear scaling (all four numbers, or none); ``clamp`` yes/no keeps values inside eng.
``multiplier``, ``offset``
    value = raw x multiplier + offset.
``description``
    kept as a comment after the tag.

Blank lines and lines starting with ``#`` are skipped. The protocol is ``--protocol``, or
worked out from the addresses (node ids: OPC UA; Modbus addresses: Modbus; else Logix).
``writable`` is never imported: writes are switched on by hand, in the YAML.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from connectors.modbus.address import parse_address as parse_modbus
from connectors.opcua.nodeid import parse_node_id
from gateway.importers.model import ImportedTag, ImportResult, Protocol, Scale, tag_name
from gateway.importers.table import Row, read_table
from gateway.schema import parse_duration

COLUMNS = (
    "name",
    "address",
    "type",
    "length",
    "byte order",
    "unit id",
    "units",
    "scan",
    "deadband",
    "raw low",
    "raw high",
    "eng low",
    "eng high",
    "clamp",
    "multiplier",
    "offset",
    "description",
)
_SCALE = ("raw low", "raw high", "eng low", "eng high")
_YES = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False, "": False}


def import_csv(path: Path, protocol: Protocol | None = None) -> ImportResult:
    """Read a simple CSV tag list (see the module docstring)."""
    table = read_table(path)
    result = ImportResult(protocol or guess_protocol([r.get("address") for r in table.rows]))
    if table.note:
        result.warn(0, table.note)
    unknown = [raw for raw, key in zip(table.raw_columns, table.columns, strict=True)
               if key not in COLUMNS]  # fmt: skip
    for column in unknown:
        hint = difflib.get_close_matches(column.lower(), COLUMNS, n=1)
        did_you_mean = f" (did you mean {hint[0].replace(' ', '_')}?)" if hint else ""
        result.error(1, f"unknown column {column!r}{did_you_mean}")
    for required in ("name", "address"):
        if required not in table.columns:
            result.error(1, f"no {required} column")
    if result.errors:
        return result
    for row in table.rows:
        tag = _tag(row, result)
        if tag is not None:
            result.add(tag)
    return result


def guess_protocol(addresses: list[str]) -> Protocol:
    """OPC UA when the addresses are node ids, Modbus when they are Modbus addresses, else
    Logix (whose addresses are names)."""
    present = [a for a in addresses if a]
    if present and all(_parses(parse_node_id, a) and "=" in a for a in present):
        return "opcua"
    if present and all(_parses(parse_modbus, a) for a in present):
        return "modbus"
    return "logix"


def _parses(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


def _tag(row: Row, result: ImportResult) -> ImportedTag | None:
    problems: list[str] = []

    def number(column: str, kind: Callable[[str], float] = float) -> float | None:
        text = row.get(column)
        if not text:
            return None
        try:
            return kind(text)
        except ValueError:
            problems.append(f"{column.replace(' ', '_')}: {text!r} is not a number")
            return None

    name = row.get("name")
    address = row.get("address")
    if not name:
        problems.append("name: empty")
    if not address:
        problems.append("address: empty")
    scan: float | None = None
    if row.get("scan"):
        try:
            scan = parse_duration(row.get("scan"))
        except ValueError as exc:
            problems.append(f"scan: {exc}")
    scale = None
    ends = [number(c) for c in _SCALE]
    given = [bool(row.get(c)) for c in _SCALE]
    if any(given) and not all(given):
        problems.append("scaling needs all of raw_low, raw_high, eng_low, eng_high")
    elif all(given) and None not in ends:
        clamp = _YES.get(row.get("clamp").lower())
        if clamp is None:
            problems.append(f"clamp: {row.get('clamp')!r} is not yes or no")
        raw_low, raw_high, eng_low, eng_high = (float(e or 0) for e in ends)
        scale = Scale((raw_low, raw_high), (eng_low, eng_high), bool(clamp))
    length, unit_id = number("length", int), number("unit id", int)
    multiplier, offset, deadband = number("multiplier"), number("offset"), number("deadband")
    if problems:
        for problem in problems:
            result.error(row.line, f"{name or '(no name)'}: {problem}")
        return None
    safe = tag_name(name)
    if safe != name:
        result.warn(row.line, f"{name!r} is not a topic-safe name: named {safe}")
    return ImportedTag(
        line=row.line,
        name=safe,
        address=address,
        type=row.get("type") or None,
        length=None if length is None else int(length),
        byte_order=row.get("byte order").upper() or None,
        unit_id=None if unit_id is None else int(unit_id),
        scale=scale,
        multiplier=multiplier,
        offset=offset,
        units=row.get("units") or None,
        scan=scan,
        deadband=deadband,
        description=row.get("description") or None,
    )
