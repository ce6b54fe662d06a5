"""Studio 5000 tag addresses: ``Tag``, ``Program:P.Tag``, ``Arr[2,1]``, ``Udt.Member``, ``Dint.5``.

Parsed once at config time, so a typo is refused before anything connects. Whether the tag
exists is a question for the controller's tag list, answered when the connector connects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NAME = 40  # Logix identifiers: at most 40 characters
MAX_DIMS = 3  # base tags have up to three dimensions; UDT member arrays have one
MAX_BIT = 63  # LINT is the widest integer whose bits can be addressed
MAX_COUNT = 65535  # the element count of a Read Tag request is a UINT

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# I/O module tags carry colons: Local:1:I, Rack2:3:O, MyAdapter:I.
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z0-9_]+)+")
_INDEX = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")
_COUNT = re.compile(r"\{\s*(\d+)\s*\}$")


@dataclass(frozen=True, slots=True)
class Part:
    """One name in the path with its array indices (``Arr[2,1]`` is ``Arr`` with ``(2, 1)``)."""

    name: str
    indices: tuple[int, ...] = ()

    def __str__(self) -> str:
        if not self.indices:
            return self.name
        return f"{self.name}[{','.join(map(str, self.indices))}]"


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed tag address: program scope, base tag, members, bit and element count."""

    parts: tuple[Part, ...]  # the base tag first, then UDT members
    program: str | None = None
    bit: int | None = None
    count: int | None = None  # ``{N}``: N elements from the indexed one (or from the start)

    def __str__(self) -> str:
        text = ".".join(str(p) for p in self.parts)
        if self.program is not None:
            text = f"Program:{self.program}.{text}"
        if self.bit is not None:
            text += f".{self.bit}"
        if self.count is not None:
            text += f"{{{self.count}}}"
        return text

    @property
    def base(self) -> str:
        """The base tag as the controller's tag list names it: ``Tag`` or ``Program:P.Tag``."""
        name = self.parts[0].name
        return f"Program:{self.program}.{name}" if self.program is not None else name

    @property
    def members(self) -> tuple[Part, ...]:
        """The UDT members after the base tag."""
        return self.parts[1:]


def parse_address(text: str) -> Address:
    """Parse a Studio 5000 address; ValueError says what is wrong and where."""
    if not isinstance(text, str):
        raise ValueError(f"a Logix address is text such as Tag or Program:Main.Tag, not {text!r}")
    source = text.strip()
    if not source:
        raise ValueError("the address is empty")
    body, count = _split_count(source)
    program: str | None = None
    if body[:8].lower() == "program:":
        head, dot, body = body[8:].partition(".")
        if not _IDENT.fullmatch(head) or not dot or not body:
            raise ValueError(f"{source!r}: program scope is written Program:NAME.Tag")
        program = _check_name(head, source)
    parts: list[Part] = []
    bit: int | None = None
    pieces = _split_dots(body, source)
    for position, piece in enumerate(pieces):
        if piece.isdigit():
            if position == 0:
                raise ValueError(f"{source!r}: a tag name cannot start with a digit")
            if position != len(pieces) - 1:
                raise ValueError(f"{source!r}: a bit number ({piece}) must come last")
            bit = int(piece)
            if bit > MAX_BIT:
                raise ValueError(f"{source!r}: bit {bit} is out of range (0-{MAX_BIT})")
            continue
        parts.append(_parse_part(piece, source, base=position == 0 and program is None))
    if len(parts[0].indices) > MAX_DIMS:
        raise ValueError(f"{source!r}: an array has at most {MAX_DIMS} dimensions")
    for member in parts[1:]:
        if len(member.indices) > 1:
            raise ValueError(f"{source!r}: a UDT member array ({member.name}) has one dimension")
    if bit is not None and count is not None:
        raise ValueError(f"{source!r}: a bit cannot take an element count")
    return Address(tuple(parts), program, bit, count)


def _split_count(source: str) -> tuple[str, int | None]:
    match = _COUNT.search(source)
    if match is None:
        if "{" in source or "}" in source:
            raise ValueError(
                f"{source!r}: an element count is written at the end, e.g. Arr[0]{{10}}"
            )
        return source, None
    count = int(match.group(1))
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"{source!r}: the element count must be 1 to {MAX_COUNT}")
    body = source[: match.start()].rstrip()
    if not body or "{" in body or "}" in body:
        raise ValueError(f"{source!r}: an element count is written at the end, e.g. Arr[0]{{10}}")
    return body, count


def _split_dots(body: str, source: str) -> list[str]:
    """Split on the dots outside brackets (``Arr[1].X`` has one dot, ``[1,2]`` none inside)."""
    pieces, depth, start = [], 0, 0
    for i, char in enumerate(body):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"{source!r}: ']' without '['")
        elif char == "." and depth == 0:
            pieces.append(body[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"{source!r}: '[' without ']'")
    pieces.append(body[start:])
    if "" in pieces:
        raise ValueError(f"{source!r}: empty name between dots")
    return pieces


def _parse_part(piece: str, source: str, *, base: bool) -> Part:
    name_match = (_MODULE.match(piece) if base else None) or _IDENT.match(piece)
    if name_match is None:
        raise ValueError(f"{source!r}: {piece!r} is not a tag or member name")
    name = _check_name(name_match.group(0), source)
    rest = piece[name_match.end() :]
    if not rest:
        return Part(name)
    index = _INDEX.fullmatch(rest)
    if index is None:
        raise ValueError(f"{source!r}: unexpected {rest!r} after {name}; indices are [i] or [i,j]")
    return Part(name, tuple(int(i) for i in index.group(1).split(",")))


def _check_name(name: str, source: str) -> str:
    if len(name.split(":")[0]) > MAX_NAME:
        raise ValueError(f"{source!r}: {name[:12]}... is longer than {MAX_NAME} characters")
    return name
