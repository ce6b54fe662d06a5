"""The tag database: controller and program tags as raw memory, symbol rows, path resolution."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from simulators.logix.cip import (
    CipError,
    CipStatus,
    LogicalKind,
    LogicalSegment,
    Segment,
    SymbolSegment,
)
from simulators.logix.types import (
    BOOL,
    AtomicType,
    DataType,
    StructType,
    TagValue,
    decode_value,
    encode_into,
)
from simulators.plant import PlantSnapshot

__all__ = [
    "SYMBOL_CLASS",
    "ExternalAccess",
    "Location",
    "PlantFn",
    "ProgramSpec",
    "SymbolRow",
    "Tag",
    "TagDatabase",
    "TagSpec",
    "parse_tag_path",
]

SYMBOL_CLASS = 0x6B
ExternalAccess = Literal["Read/Write", "Read Only", "None"]
PlantFn = Callable[[PlantSnapshot], TagValue]

_PROGRAM_TYPE = 0x1068  # system-flagged symbol types Logix lists for programs, tasks, routines
_ROUTINE_TYPE = 0x106D
_TASK_TYPE = 0x1070
_BASE_TAG = 1 << 26  # software-control bit clients use to tell base tags from aliases
_FIRST_INSTANCE = 200  # ids cross 255 so clients use both 8- and 16-bit instance segments
_INSTANCE_STRIDE = 7
_PART = re.compile(r"^([A-Za-z_][\w:]*)(?:\[\s*(\d+(?:\s*,\s*\d+){0,2})\s*\])?$")


@dataclass(frozen=True, slots=True)
class TagSpec:
    """Declaration of one tag: type, dimensions, start value and plant-driven members."""

    name: str
    dtype: DataType
    dims: tuple[int, ...] = ()
    initial: TagValue | None = None
    program: str | None = None
    plant: Mapping[str, PlantFn] = field(default_factory=dict)  # member path ("" = whole tag)
    access: ExternalAccess = "Read/Write"


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    """A program: its own tag scope, listed with its routines."""

    name: str
    routines: tuple[str, ...] = ("MainRoutine",)


@dataclass(eq=False, slots=True)
class Tag:
    """A base tag: its memory image is the single source of truth for reads and writes."""

    name: str
    dtype: DataType
    dims: tuple[int, ...]
    program: str | None
    instance_id: int
    data: bytearray
    access: ExternalAccess = "Read/Write"
    written: bool = False  # set once a client writes: the plant stops driving the tag

    @property
    def full_name(self) -> str:
        """Name as clients address it (``Program:X.Tag`` for program scope)."""
        return f"Program:{self.program}.{self.name}" if self.program else self.name

    @property
    def elements(self) -> int:
        """Element count (1 for a scalar)."""
        return math.prod(self.dims) if self.dims else 1

    @property
    def symbol_type(self) -> int:
        """Symbol type word: atomic code or struct flag + template id, dimension count in 13-14."""
        base = self.dtype.code if isinstance(self.dtype, AtomicType) else self.dtype.type_word
        return base | (len(self.dims) << 13)


@dataclass(frozen=True, slots=True)
class SymbolRow:
    """One Symbol object instance as Get Instance Attribute List reports it."""

    instance_id: int
    name: str
    symbol_type: int
    dims: tuple[int, ...] = ()
    element_size: int = 0
    software_control: int = 0
    access: ExternalAccess = "Read/Write"

    @property
    def address(self) -> int:
        """A stable made-up memory address (attribute 3)."""
        return 0x0020_0000 + self.instance_id * 0x100

    @property
    def object_address(self) -> int:
        """A stable made-up symbol object address (attribute 5)."""
        return 0x0030_0000 + self.instance_id * 0x10


@dataclass(frozen=True, slots=True)
class Location:
    """Where a request path lands: element type, byte offset and elements left from there."""

    tag: Tag
    dtype: DataType
    offset: int
    count: int  # elements available from ``offset`` to the end of the addressed array
    is_array: bool  # the path stops at an array without indexing it
    bit: int | None = None  # BOOL member stored as one bit of its host

    @property
    def element_size(self) -> int:
        """Bytes per element at this location."""
        return self.dtype.size


@dataclass(slots=True)
class _Program:
    name: str
    instance_id: int
    tags: dict[str, Tag]
    rows: list[SymbolRow]


def parse_tag_path(text: str) -> tuple[Segment, ...]:
    """Turn ``Program:P.Tag[1,2].Member`` into the symbol/element segments clients send."""
    segments: list[Segment] = []
    parts = text.split(".")
    if parts and parts[0].lower().startswith("program:") and len(parts) > 1:
        segments.append(SymbolSegment(parts.pop(0)))
    for part in parts:
        match = _PART.match(part.strip())
        if match is None:
            raise CipError(CipStatus.PATH_SEGMENT_ERROR)
        segments.append(SymbolSegment(match.group(1)))
        if match.group(2):
            for index in match.group(2).split(","):
                segments.append(LogicalSegment(LogicalKind.MEMBER, int(index)))
    return tuple(segments)


def _row(tag: Tag) -> SymbolRow:
    return SymbolRow(
        tag.instance_id,
        tag.name,
        tag.symbol_type,
        tag.dims,
        tag.dtype.size,
        _BASE_TAG,
        tag.access,
    )


class TagDatabase:
    """All tags of the simulated controller, addressable by name, program and instance id."""

    def __init__(
        self,
        tags: Sequence[TagSpec],
        programs: Sequence[ProgramSpec] = (),
        tasks: Sequence[str] = ("MainTask",),
    ) -> None:
        ids = (_FIRST_INSTANCE + _INSTANCE_STRIDE * i for i in range(1_000_000))
        self._controller: dict[str, Tag] = {}
        self._controller_rows: list[SymbolRow] = []
        self._programs: dict[str, _Program] = {}
        self._by_instance: dict[int, Tag] = {}
        self._bindings: list[tuple[Tag, list[tuple[Location, PlantFn]]]] = []
        self.structs: dict[int, StructType] = {}

        for task in tasks:
            self._controller_rows.append(SymbolRow(next(ids), f"Task:{task}", _TASK_TYPE))
        for prog in programs:
            pid = next(ids)
            rows = [SymbolRow(next(ids), f"Routine:{r}", _ROUTINE_TYPE) for r in prog.routines]
            self._programs[prog.name.lower()] = _Program(prog.name, pid, {}, rows)
            self._controller_rows.append(SymbolRow(pid, f"Program:{prog.name}", _PROGRAM_TYPE))

        for spec in tags:
            self._add(spec, next(ids))

    def _add(self, spec: TagSpec, instance_id: int) -> None:
        elements = math.prod(spec.dims) if spec.dims else 1
        tag = Tag(
            spec.name,
            spec.dtype,
            spec.dims,
            spec.program,
            instance_id,
            bytearray(spec.dtype.size * elements),
            spec.access,
        )
        if spec.program is None:
            scope, rows = self._controller, self._controller_rows
        else:
            prog = self._programs[spec.program.lower()]
            scope, rows = prog.tags, prog.rows
        if tag.name.lower() in scope:
            raise ValueError(f"duplicate tag {tag.full_name}")
        scope[tag.name.lower()] = tag
        rows.append(_row(tag))
        self._by_instance[instance_id] = tag
        self._register_structs(spec.dtype)
        if spec.initial is not None:
            self._store(self._descend(tag, ()), spec.initial)
        if spec.plant:
            bound = [(self._descend(tag, _parse_path_tail(p)), fn) for p, fn in spec.plant.items()]
            self._bindings.append((tag, bound))

    def _register_structs(self, dtype: DataType) -> None:
        if isinstance(dtype, StructType) and dtype.template_id not in self.structs:
            self.structs[dtype.template_id] = dtype
            for m in dtype.members:
                self._register_structs(m.dtype)

    # -- listing ---------------------------------------------------------------------------

    def symbols(self, program: str | None) -> list[SymbolRow]:
        """Symbol rows of the controller scope or of one program, by instance id."""
        if program is None:
            rows = self._controller_rows
        else:
            prog = self._programs.get(program.lower())
            if prog is None:
                raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
            rows = prog.rows
        return sorted(rows, key=lambda r: r.instance_id)

    def tags(self) -> Iterator[Tag]:
        """Every tag, controller scope first."""
        yield from self._controller.values()
        for prog in self._programs.values():
            yield from prog.tags.values()

    # -- resolution ------------------------------------------------------------------------

    def resolve(self, path: Sequence[Segment]) -> Location:
        """Follow a request path (by name or symbol instance) to a location in tag memory."""
        segs = tuple(path)
        if not segs:
            raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
        head = segs[0]
        if isinstance(head, LogicalSegment):
            if head.kind != LogicalKind.CLASS or head.value != SYMBOL_CLASS or len(segs) < 2:
                raise CipError(CipStatus.PATH_DESTINATION_UNKNOWN, 0)
            inst = segs[1]
            if not isinstance(inst, LogicalSegment) or inst.kind != LogicalKind.INSTANCE:
                raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
            tag = self._by_instance.get(inst.value)
            if tag is None:
                raise CipError(CipStatus.PATH_DESTINATION_UNKNOWN, 0)
            return self._descend(tag, segs[2:])
        if not isinstance(head, SymbolSegment):
            raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
        scope = self._controller
        rest = segs[1:]
        if head.name.lower().startswith("program:"):
            prog = self._programs.get(head.name[len("program:") :].lower())
            if prog is None or not rest or not isinstance(rest[0], SymbolSegment):
                raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
            scope, head, rest = prog.tags, rest[0], rest[1:]
        found = scope.get(head.name.lower())
        if found is None:
            # An unknown symbol is a path segment error on Logix (0x04), not "destination unknown".
            raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
        return self._descend(found, rest)

    def _descend(self, tag: Tag, segs: Sequence[Segment]) -> Location:
        dtype: DataType = tag.dtype
        dims = tag.dims
        offset = 0
        count = tag.elements
        bit: int | None = None
        i = 0
        while i < len(segs):
            seg = segs[i]
            if isinstance(seg, LogicalSegment) and seg.kind == LogicalKind.MEMBER:
                indices = []
                while i < len(segs):
                    nxt = segs[i]
                    if not (isinstance(nxt, LogicalSegment) and nxt.kind == LogicalKind.MEMBER):
                        break
                    indices.append(nxt.value)
                    i += 1
                if len(indices) != len(dims):
                    raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
                linear = 0
                for index, dim in zip(indices, dims, strict=True):
                    if index >= dim:
                        raise CipError(CipStatus.PATH_DESTINATION_UNKNOWN, 0)
                    linear = linear * dim + index
                offset += linear * dtype.size
                count = math.prod(dims) - linear
                dims = ()
                continue
            if not isinstance(seg, SymbolSegment) or dims or not isinstance(dtype, StructType):
                raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
            member = dtype.member(seg.name)
            if member is None:
                raise CipError(CipStatus.PATH_SEGMENT_ERROR, 0)
            offset += member.offset
            dtype = member.dtype
            bit = member.bit
            dims = (member.array_len,) if member.array_len else ()
            count = member.array_len or 1
            i += 1
        return Location(tag, dtype, offset, count, bool(dims), bit)

    def locate(self, text: str) -> Location:
        """Resolve a tag path written as text, e.g. ``CurrentRecipe.Limits.High``."""
        return self.resolve(parse_tag_path(text))

    # -- memory access ---------------------------------------------------------------------

    def read_bytes(self, loc: Location, elements: int) -> bytes:
        """Raw bytes of ``elements`` elements from ``loc`` (a bit member reads as 0/1)."""
        data = loc.tag.data
        if loc.bit is not None:
            return bytes((data[loc.offset] >> loc.bit & 1,))
        return bytes(data[loc.offset : loc.offset + elements * loc.element_size])

    def write_bytes(self, loc: Location, raw: bytes, byte_offset: int = 0) -> None:
        """Store raw element bytes at ``loc`` plus ``byte_offset``; marks the tag client-owned."""
        data = loc.tag.data
        start = loc.offset + byte_offset
        if loc.bit is not None:
            mask = 1 << loc.bit
            data[start] = (data[start] | mask) if raw[0] else (data[start] & ~mask & 0xFF)
        elif loc.dtype == BOOL:
            # Logix keeps BOOLs as 0/1 whatever non-zero byte a client sends (pycomm3 sends 0xFF).
            data[start : start + len(raw)] = bytes(1 if b else 0 for b in raw)
        else:
            data[start : start + len(raw)] = raw
        loc.tag.written = True

    def value(self, loc: Location) -> TagValue:
        """Decode the value at ``loc``; an un-indexed array decodes to a list."""
        data = bytes(loc.tag.data)
        if loc.bit is not None:
            return bool(data[loc.offset] >> loc.bit & 1)
        if loc.is_array:
            size = loc.element_size
            return [decode_value(loc.dtype, data, loc.offset + i * size) for i in range(loc.count)]
        return decode_value(loc.dtype, data, loc.offset)

    def _store(self, loc: Location, value: TagValue) -> None:
        data = loc.tag.data
        if loc.bit is not None:
            mask = 1 << loc.bit
            data[loc.offset] = (data[loc.offset] | mask) if value else (data[loc.offset] & ~mask)
            return
        if loc.is_array:
            if not isinstance(value, list) or len(value) != loc.count:
                raise ValueError(f"{loc.tag.full_name} needs a list of {loc.count} values")
            scratch = bytearray(data)
            for i, element in enumerate(value):
                encode_into(loc.dtype, element, scratch, loc.offset + i * loc.element_size)
            data[:] = scratch
            return
        scratch = bytearray(data)  # encode into a copy so a bad value leaves the tag untouched
        encode_into(loc.dtype, value, scratch, loc.offset)
        data[:] = scratch

    def set_value(self, loc: Location, value: TagValue) -> None:
        """Store a Python value at ``loc`` as a client write would (stops plant updates)."""
        self._store(loc, value)
        loc.tag.written = True

    # -- plant model -----------------------------------------------------------------------

    def refresh(self, snap: PlantSnapshot) -> None:
        """Copy plant values into the bound tags no client has written."""
        for tag, bound in self._bindings:
            if tag.written:
                continue
            for loc, fn in bound:
                self._store(loc, fn(snap))


def _parse_path_tail(text: str) -> tuple[Segment, ...]:
    """Member path inside a tag (``Limits.High``, ``Steps[2]``); empty text is the tag itself."""
    if not text:
        return ()
    return parse_tag_path(text)
