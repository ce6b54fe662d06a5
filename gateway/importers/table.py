"""Reading a CSV tag list: its encoding, its delimiter, and each row with its line number."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Row:
    """One data row: its first line in the file, and its cells by (normalised) column name."""

    line: int
    cells: dict[str, str]

    def get(self, column: str) -> str:
        """The cell, stripped ('' when the row is short or the column absent)."""
        return self.cells.get(column, "").strip()


@dataclass
class Table:
    """A CSV file's header and rows; ``note`` says how it was decoded when that was a guess."""

    columns: list[str]  # normalised names, in file order
    raw_columns: list[str]  # as written
    rows: list[Row]
    note: str | None = None


def read_table(path: Path) -> Table:
    """Read a CSV file (UTF-8, or Windows-1252 as spreadsheets save it; comma or semicolon);
    blank lines and lines starting with ``#`` are skipped. OSError/ValueError when unreadable."""
    raw = path.read_bytes()
    note = None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        note = "not UTF-8: read as Windows-1252"
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[Row] = []
    line = 1  # where the next record starts
    for record in reader:
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in record) or record[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = record
            continue
        names = [column_key(c) for c in header]
        rows.append(Row(start, dict(zip(names, record, strict=False))))
    if header is None:
        raise ValueError("the file has no header row")
    return Table([column_key(c) for c in header], [c.strip() for c in header], rows, note)


def column_key(name: str) -> str:
    """A column name compared loosely: ``Eng. Units``, ``eng units`` and ``ENG_UNITS`` agree."""
    return " ".join(name.replace(".", " ").replace("_", " ").lower().split())
