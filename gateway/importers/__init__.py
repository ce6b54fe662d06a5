"""``plantgate import``: tag lists plant engineers already have, as ready-to-paste YAML.

One module per format (``simple_csv``, ``kepware``, ``l5x``), one model of an imported tag
(``model``), and the YAML they become (``render``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from gateway.importers.kepware import import_kepware
from gateway.importers.l5x import import_l5x
from gateway.importers.model import ImportResult, Protocol
from gateway.importers.simple_csv import import_csv
from gateway.importers.table import column_key

Format = Literal["csv", "kepware", "l5x"]
FORMATS: tuple[Format, ...] = ("csv", "kepware", "l5x")


def detect_format(path: Path) -> Format:
    """L5X by its extension; a CSV whose header has Kepware's ``Tag Name`` is Kepware's."""
    if path.suffix.lower() == ".l5x":
        return "l5x"
    with path.open("rb") as stream:
        head = stream.read(4096).decode("utf-8", errors="replace")
    first = next((line for line in head.splitlines() if line.strip()), "")
    cells = {column_key(c.strip().strip('"')) for c in first.replace(";", ",").split(",")}
    return "kepware" if "tag name" in cells else "csv"


def import_file(
    path: Path,
    fmt: Format | None = None,
    protocol: Protocol | None = None,
    byte_order: str | None = None,
) -> ImportResult:
    """Read a tag list in any supported format; OSError when it cannot be read."""
    fmt = fmt or detect_format(path)
    if fmt == "l5x":
        return import_l5x(path)
    if fmt == "kepware":
        return import_kepware(path, byte_order)
    return import_csv(path, protocol)
