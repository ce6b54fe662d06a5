"""Metrics: one per tag, named by the tag, numbered by an alias unique across the edge node.

A source's metrics are made once (the Modbus tags when the tag map is loaded, with their
declared types) or learnt from the first readings that name them: a Logix UDT or an OPC UA
structure is read as its members, whose names are known only then, and a tag with no
declared type takes its type from its first value. Learning something new means the
device's birth certificate is out of date: :meth:`SourceMetrics.learn` says so, and the
session sends a new DBIRTH before any DDATA that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.models import Quality, Value
from gateway.sparkplug import wire
from gateway.sparkplug.datatypes import DataType, Encoder, datatype_for, encoder

# The Quality property hosts read (Ignition among them): an Int32 of the OPC quality codes,
# 192 good, 64 uncertain, 0 bad. The specification's own list names 0, 192 and 500 (stale);
# "uncertain" is not stale (the value is current, its quality doubtful), so it keeps the OPC
# code hosts already map, as the product asks. Hosts reading only 0/192/500 see it as not good.
QUALITY_CODES = {Quality.GOOD: 192, Quality.BAD: 0, Quality.UNCERTAIN: 64}
QUALITY = "Quality"
UNITS = "engUnit"  # the property key hosts (Ignition) read as engineering units

# Node metrics, with aliases of their own below every tag's.
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
NEXT_SERVER = "Node Control/Next Server"
NODE_ALIASES = {BD_SEQ: 1, REBIRTH: 2, NEXT_SERVER: 3}
FIRST_TAG_ALIAS = 16  # room for more node metrics without moving a tag's alias


def metric_name(tag: str) -> str:
    """A tag's metric name: UDT members (``recipe.speed``) become folders (``recipe/speed``)."""
    return tag.replace(".", "/")


def _property_int(code: int) -> bytes:
    return wire.PROPERTY_TYPE + wire.varint(DataType.Int32) + wire.PROPERTY_INT + wire.varint(code)


def _property_text(text: str) -> bytes:
    return (
        wire.PROPERTY_TYPE
        + wire.varint(DataType.String)
        + wire.length_delimited(wire.PROPERTY_STRING, wire.text(text))
    )


def properties(quality: Quality | None, units: str | None = None) -> bytes:
    """A metric's properties field (key included): Quality and engUnit, each when given."""
    items = []
    if quality is not None:
        items.append((QUALITY, _property_int(QUALITY_CODES[quality])))
    if units is not None:
        items.append((UNITS, _property_text(units)))
    return wire.length_delimited(wire.PROPERTIES, wire.property_set(items)) if items else b""


# What a data message says about quality: nothing when good (the specification's default).
DATA_QUALITY = {
    Quality.GOOD: b"",
    Quality.BAD: properties(Quality.BAD),
    Quality.UNCERTAIN: properties(Quality.UNCERTAIN),
}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """What the edge node declares about one tag in its device's birth certificate."""

    tag: str
    alias: int
    datatype: DataType
    units: str | None = None
    name: str = field(init=False)
    alias_field: bytes = field(init=False, repr=False)  # made once: every DDATA starts with it
    encode: Encoder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", metric_name(self.tag))
        object.__setattr__(self, "alias_field", wire.ALIAS + wire.varint(self.alias))
        object.__setattr__(self, "encode", encoder(self.datatype))


@dataclass(frozen=True, slots=True)
class TagHint:
    """What the tag map says about a tag before it is read: its PLC type and units."""

    plc_type: str | None = None
    units: str | None = None


class Aliases:
    """Hands out metric aliases, unique across the whole edge node (every source)."""

    def __init__(self, first: int = FIRST_TAG_ALIAS) -> None:
        self._next = first

    def take(self) -> int:
        """The next unused alias."""
        alias = self._next
        self._next += 1
        return alias


class SourceMetrics:
    """One source's (Sparkplug device's) metrics, in birth order, found by tag, name or alias."""

    def __init__(
        self, source: str, aliases: Aliases, hints: Mapping[str, TagHint] | None = None
    ) -> None:
        self.source = source
        self._aliases = aliases
        self._hints = dict(hints or {})
        self._by_tag: dict[str, MetricSpec] = {}
        self._by_name: dict[str, MetricSpec] = {}
        self._by_alias: dict[int, MetricSpec] = {}

    @property
    def specs(self) -> list[MetricSpec]:
        """Every metric, in the order they were made (the order of the DBIRTH)."""
        return list(self._by_tag.values())

    def __len__(self) -> int:
        return len(self._by_tag)

    def declare(
        self, tag: str, plc_type: str | None = None, units: str | None = None
    ) -> MetricSpec:
        """Make (or return) a tag's metric before any reading of it, e.g. at load."""
        self._hints.setdefault(tag, TagHint(plc_type, units))
        spec = self._by_tag.get(tag)
        return spec if spec is not None else self._make(tag, None)

    def learn(self, tags: Sequence[str], values: Sequence[Value]) -> bool:
        """Take in a batch's tags: True when a metric was added or its type became known
        (the last DBIRTH is then out of date)."""
        by_tag = self._by_tag
        changed = False
        for tag, value in zip(tags, values, strict=True):
            spec = by_tag.get(tag)
            if spec is None:
                self._make(tag, value)
                changed = True
            elif spec.datatype is DataType.Unknown and value is not None:
                changed = self._settle(spec, value) or changed
        return changed

    def spec(self, tag: str) -> MetricSpec:
        """The metric of a tag (KeyError if never declared nor learnt)."""
        return self._by_tag[tag]

    def specs_of(self, tags: Sequence[str]) -> list[MetricSpec]:
        """The metrics of a batch's tags, in order (KeyError if one is not known)."""
        return list(map(self._by_tag.__getitem__, tags))

    def by_name(self, name: str) -> MetricSpec | None:
        """The metric of a Sparkplug metric name, if it is one of ours."""
        return self._by_name.get(name)

    def by_alias(self, alias: int) -> MetricSpec | None:
        """The metric of an alias, if it is one of this source's."""
        return self._by_alias.get(alias)

    def _make(self, tag: str, value: Value) -> MetricSpec:
        hint = self._hints.get(tag, TagHint())
        spec = MetricSpec(
            tag, self._aliases.take(), datatype_for(hint.plc_type, value), units=hint.units
        )
        self._store(spec)
        return spec

    def _settle(self, spec: MetricSpec, value: Value) -> bool:
        hint = self._hints.get(spec.tag, TagHint())
        datatype = datatype_for(hint.plc_type, value)
        if datatype is DataType.Unknown:
            return False  # still nothing to go by (an empty list)
        self._store(MetricSpec(spec.tag, spec.alias, datatype, units=spec.units))
        return True

    def _store(self, spec: MetricSpec) -> None:
        self._by_tag[spec.tag] = spec
        self._by_name[spec.name] = spec
        self._by_alias[spec.alias] = spec
