"""What every importer produces: tags in plantgate's words, and the problems met on the way.

An importer never drops a row quietly: a row it cannot turn into a tag is an error (the file
is refused, every error listed with its line); a row it imports with less than the source said,
or skips because plantgate has no equivalent, is a warning naming the row.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import ValidationError

from connectors.logix.config import LogixTag
from connectors.modbus.config import ModbusTag
from connectors.opcua.config import OpcUaTag
from gateway.schema import TagBase, format_duration

Protocol = Literal["modbus", "opcua", "logix"]
TAG_MODELS: dict[str, type[TagBase]] = {"modbus": ModbusTag, "opcua": OpcUaTag, "logix": LogixTag}

_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class Scale:
    """Linear scaling from a raw range to an engineering range."""

    raw: tuple[float, float]
    eng: tuple[float, float]
    clamp: bool = False


@dataclass(frozen=True, slots=True)
class ImportedTag:
    """One tag read from a tag list, as its YAML entry will say it."""

    line: int  # where it came from in the file, for messages
    name: str
    address: str  # the protocol's address; an OPC UA node id for opcua
    type: str | None = None
    length: int | None = None  # Modbus string registers
    byte_order: str | None = None
    unit_id: int | None = None
    scale: Scale | None = None
    multiplier: float | None = None
    offset: float | None = None
    units: str | None = None
    scan: float | None = None  # seconds
    deadband: float | None = None
    description: str | None = None  # written as a YAML comment

    def fields(self, protocol: Protocol, scan: bool = True) -> dict[str, Any]:
        """The tag's YAML keys, in the order a person reads them (unset keys left out);
        ``scan=False`` leaves the scan to the source."""
        out: dict[str, Any] = {"name": self.name}
        out["node" if protocol == "opcua" else "address"] = self.address
        scale: dict[str, Any] | None = None
        if self.scale is not None:
            scale = {"raw": _numbers(self.scale.raw), "eng": _numbers(self.scale.eng)}
            if self.scale.clamp:
                scale["clamp"] = True
        optional: dict[str, Any] = {
            "type": self.type,
            "length": self.length,
            "byte_order": self.byte_order,
            "unit_id": self.unit_id,
            "scale": scale,
            "multiplier": _number(self.multiplier),
            "offset": _number(self.offset),
            "units": self.units,
            "scan": None if self.scan is None or not scan else format_duration(self.scan),
            "deadband": _number(self.deadband),
        }
        out |= {key: value for key, value in optional.items() if value is not None}
        return out


def _number(value: float | None) -> float | int | None:
    """Whole numbers without a ``.0``, as a person writes them in YAML."""
    if value is not None and value.is_integer():
        return int(value)
    return value


def _numbers(values: tuple[float, float]) -> list[float | int | None]:
    return [_number(v) for v in values]


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong (or lost) in one row of the file; line 0: the file as a whole."""

    line: int
    message: str

    def render(self, file: str, kind: str = "") -> str:
        """``file:line: message``, with ``warning: `` when it is one."""
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {kind}{self.message}"


@dataclass
class ImportResult:
    """The tags a file describes, and what went wrong or was lost reading it."""

    protocol: Protocol
    tags: list[ImportedTag] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    byte_order: str | None = None  # for the source, when the file implies one
    _names: dict[str, ImportedTag] = field(default_factory=dict, repr=False)  # lower-case

    def error(self, line: int, message: str) -> None:
        """Note a row that cannot be imported: the file is refused."""
        self.errors.append(Problem(line, message))

    def warn(self, line: int, message: str) -> None:
        """Note a row imported with less than the file said, or skipped for lack of an
        equivalent."""
        self.warnings.append(Problem(line, message))

    def add(self, tag: ImportedTag) -> None:
        """Keep a tag if plantgate accepts it (an error names the row otherwise); names are
        made unique case-insensitively, with a warning."""
        try:
            TAG_MODELS[self.protocol].model_validate(tag.fields(self.protocol))
        except ValidationError as exc:
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"]) or "tag"
                message = str(err["msg"]).removeprefix("Value error, ")
                self.error(tag.line, f"{tag.name}: {key}: {message}")
            return
        earlier = self._names.get(tag.name.lower())
        if earlier is not None:
            unique = unique_name(tag.name, self._names.keys())
            self.warn(
                tag.line, f"{tag.name}: line {earlier.line} has that name too; named {unique}"
            )
            tag = replace(tag, name=unique)
        self._names[tag.name.lower()] = tag
        self.tags.append(tag)


def tag_name(text: str) -> str:
    """A topic-safe tag name from any name: other characters become ``_``."""
    name = _NOT_NAME.sub("_", text.strip()).strip("_") or "_"
    if not (name[0].isalnum() or name[0] == "_"):
        name = f"_{name}"
    return name[:128]


def unique_name(name: str, taken: Collection[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... whichever is not taken (case-insensitively)."""
    candidate, n = name, 2
    while candidate.lower() in taken:
        candidate = f"{name}_{n}"
        n += 1
    return candidate
