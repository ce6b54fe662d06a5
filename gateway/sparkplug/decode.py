"""Sparkplug B payloads received or watched: decoded to plain dicts, commands parsed.

Everything here takes bytes from the network: anything that is not a well-formed payload
(or says what no metric of ours can mean) raises MalformedMessage naming the problem,
never another exception.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict

from google.protobuf.message import DecodeError

from gateway.errors import MalformedMessage
from gateway.models import Value
from gateway.sparkplug.datatypes import DataType, decode_value
from gateway.sparkplug.metrics import NEXT_SERVER, NODE_ALIASES, REBIRTH, SourceMetrics
from gateway.sparkplug.sparkplug_b_pb2 import Payload

Decoded = Value | bytes
"""A decoded value: what the gateway's values can be, plus bytes for Bytes and File."""

MetricInfo = tuple[str, DataType]
"""What a birth said about an alias: the metric's name and type."""


class DecodedMetric(TypedDict, total=False):
    """One metric as received; keys only for what the metric carries."""

    name: str
    alias: int
    timestamp: int
    datatype: str  # the DataType's name; absent when neither the metric nor a birth said
    value: Decoded  # None when is_null (or when the metric carries no value)
    is_null: bool
    is_historical: bool
    is_transient: bool
    properties: dict[str, Decoded]


class DecodedPayload(TypedDict, total=False):
    """A payload as received; keys only for what it carries."""

    timestamp: int
    seq: int
    uuid: str
    body: bytes
    metrics: list[DecodedMetric]


Metric = Payload.Metric
PropertyValue = Payload.PropertyValue

# The value field a metric carries, read by name without reflection.
_METRIC_FIELDS: dict[str, Callable[[Metric], object]] = {
    "int_value": lambda m: m.int_value,
    "long_value": lambda m: m.long_value,
    "float_value": lambda m: m.float_value,
    "double_value": lambda m: m.double_value,
    "boolean_value": lambda m: m.boolean_value,
    "string_value": lambda m: m.string_value,
    "bytes_value": lambda m: m.bytes_value,
}
_PROPERTY_FIELDS: dict[str, Callable[[PropertyValue], object]] = {
    "int_value": lambda p: p.int_value,
    "long_value": lambda p: p.long_value,
    "float_value": lambda p: p.float_value,
    "double_value": lambda p: p.double_value,
    "boolean_value": lambda p: p.boolean_value,
    "string_value": lambda p: p.string_value,
}


def parse(data: bytes) -> Payload:
    """The protobuf message of a payload; MalformedMessage if the bytes are not one."""
    message = Payload()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError, RecursionError) as exc:
        raise MalformedMessage(f"not a Sparkplug B payload: {exc}") from exc
    return message


def decode_payload(data: bytes, known: Mapping[int, MetricInfo] | None = None) -> DecodedPayload:
    """A payload as a plain dict, values decoded by their type: the metric's own, or for an
    alias-only metric (a DDATA) the type a birth gave that alias in ``known``."""
    message = parse(data)
    try:
        return _payload(message, known or {})
    except (ValueError, struct.error, RecursionError) as exc:  # text that is not UTF-8...
        raise MalformedMessage(f"malformed Sparkplug B payload: {exc}") from exc


def _payload(message: Payload, known: Mapping[int, MetricInfo]) -> DecodedPayload:
    out = DecodedPayload()
    if message.HasField("timestamp"):
        out["timestamp"] = message.timestamp
    if message.HasField("seq"):
        out["seq"] = message.seq
    if message.HasField("uuid"):
        out["uuid"] = message.uuid
    if message.HasField("body"):
        out["body"] = message.body
    out["metrics"] = [_metric(m, known) for m in message.metrics]
    return out


def _datatype(number: int) -> DataType:
    try:
        return DataType(number)
    except ValueError:
        raise MalformedMessage(f"datatype {number} is not a Sparkplug data type") from None


def _metric(metric: Metric, known: Mapping[int, MetricInfo]) -> DecodedMetric:
    out = DecodedMetric()
    info = known.get(metric.alias) if metric.HasField("alias") else None
    if metric.HasField("name"):
        out["name"] = metric.name
    elif info is not None:
        out["name"] = info[0]
    if metric.HasField("alias"):
        out["alias"] = metric.alias
    if metric.HasField("timestamp"):
        out["timestamp"] = metric.timestamp
    datatype = _datatype(metric.datatype) if metric.HasField("datatype") else None
    if datatype is None and info is not None:
        datatype = info[1]
    if datatype is not None:
        out["datatype"] = datatype.name
    if metric.HasField("is_null"):
        out["is_null"] = metric.is_null
    if metric.HasField("is_historical"):
        out["is_historical"] = metric.is_historical
    if metric.HasField("is_transient"):
        out["is_transient"] = metric.is_transient
    if metric.HasField("properties"):
        out["properties"] = _properties(metric.properties)
    out["value"] = None if metric.is_null else _metric_value(metric, datatype)
    return out


def _metric_value(metric: Metric, datatype: DataType | None) -> Decoded:
    field = metric.WhichOneof("value")
    if field is None:
        return None
    if field == "dataset_value":
        return _dataset(metric.dataset_value)
    if field == "template_value":
        return _template(metric.template_value)
    if field == "extension_value":
        return None  # a third party's extension: nothing we can read in it
    raw = _METRIC_FIELDS[field](metric)
    if datatype is None or datatype is DataType.Unknown:
        return raw  # type: ignore[return-value]  # a field's own value: int, float, bool, str, bytes
    return decode_value(datatype, field, raw)


def _properties(props: Payload.PropertySet) -> dict[str, Decoded]:
    if len(props.keys) != len(props.values):
        raise MalformedMessage(
            f"a property set has {len(props.keys)} keys but {len(props.values)} values"
        )
    return {k: _property(v) for k, v in zip(props.keys, props.values, strict=True)}


def _property(prop: PropertyValue) -> Decoded:
    if prop.is_null:
        return None
    field = prop.WhichOneof("value")
    if field is None or field == "extension_value":
        return None
    if field == "propertyset_value":
        return _properties(prop.propertyset_value)  # type: ignore[return-value]
    if field == "propertysets_value":
        return [_properties(s) for s in prop.propertysets_value.propertyset]  # type: ignore[misc]
    raw = _PROPERTY_FIELDS[field](prop)
    if not prop.HasField("type"):
        return raw  # type: ignore[return-value]
    return decode_value(_datatype(prop.type), field, raw)


def _dataset(dataset: Payload.DataSet) -> Value:
    rows: list[Value] = []
    for row in dataset.rows:
        cells: list[Value] = []
        for element in row.elements:
            field = element.WhichOneof("value")
            cells.append(None if field in (None, "extension_value") else _cell(element, field))
        rows.append(cells)
    return {"columns": list(dataset.columns), "types": list(dataset.types), "rows": rows}


def _cell(element: Payload.DataSet.DataSetValue, field: str | None) -> Value:
    cells: dict[str | None, Callable[[], Value]] = {
        "int_value": lambda: element.int_value,
        "long_value": lambda: element.long_value,
        "float_value": lambda: element.float_value,
        "double_value": lambda: element.double_value,
        "boolean_value": lambda: element.boolean_value,
        "string_value": lambda: element.string_value,
    }
    return cells[field]()


def _template(template: Payload.Template) -> Value:
    return {
        "template_ref": template.template_ref if template.HasField("template_ref") else None,
        "is_definition": template.is_definition,
        "metrics": [m.name for m in template.metrics],  # the members, by name
    }


# -- commands from a host -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeCommand:
    """What an NCMD asks of the edge node."""

    rebirth: bool = False  # Node Control/Rebirth true: send NBIRTH and every DBIRTH again
    next_server: bool = False  # Node Control/Next Server true: move to the next broker
    ignored: tuple[str, ...] = ()  # metrics the node does not have, by name or alias


_NODE_BY_ALIAS = {alias: name for name, alias in NODE_ALIASES.items()}


def parse_ncmd(data: bytes) -> NodeCommand:
    """An NCMD's node controls, by metric name or alias; MalformedMessage if it is garbage."""
    message = parse(data)
    asked: dict[str, bool] = {}
    ignored: list[str] = []
    for metric in message.metrics:
        name = metric.name if metric.HasField("name") else _NODE_BY_ALIAS.get(metric.alias)
        if name not in (REBIRTH, NEXT_SERVER):
            ignored.append(name if name is not None else f"alias {metric.alias}")
            continue
        if metric.HasField("datatype") and metric.datatype != DataType.Boolean:
            raise MalformedMessage(f"NCMD {name}: datatype {metric.datatype}, not Boolean")
        if metric.WhichOneof("value") != "boolean_value":
            raise MalformedMessage(f"NCMD {name}: no boolean value")
        asked[name] = asked.get(name, False) or metric.boolean_value
    return NodeCommand(asked.get(REBIRTH, False), asked.get(NEXT_SERVER, False), tuple(ignored))


@dataclass(frozen=True, slots=True)
class Command:
    """One write a DCMD asks for: a tag and the value to write."""

    tag: str
    value: Value


def parse_dcmd(data: bytes, metrics: SourceMetrics) -> list[Command]:
    """A DCMD's writes, each metric found by name or alias among the source's and its value
    read as that metric's type; MalformedMessage (naming the metric) if any cannot be."""
    message = parse(data)
    commands = []
    for metric in message.metrics:
        if metric.HasField("name"):
            spec, label = metrics.by_name(metric.name), repr(metric.name)
        elif metric.HasField("alias"):
            spec, label = metrics.by_alias(metric.alias), f"alias {metric.alias}"
        else:
            raise MalformedMessage(f"DCMD for {metrics.source}: a metric with no name nor alias")
        if spec is None:
            raise MalformedMessage(f"DCMD for {metrics.source}: {label} is no metric of it")
        if metric.HasField("datatype") and metric.datatype != spec.datatype:
            given = _datatype(metric.datatype).name
            raise MalformedMessage(
                f"DCMD {spec.name}: datatype {given}, but the metric is {spec.datatype.name}"
            )
        field = metric.WhichOneof("value")
        if metric.is_null or field is None:
            raise MalformedMessage(f"DCMD {spec.name}: no value to write")
        if field not in _METRIC_FIELDS:
            raise MalformedMessage(f"DCMD {spec.name}: a {field} cannot be written to a tag")
        try:
            value = decode_value(spec.datatype, field, _METRIC_FIELDS[field](metric))
        except MalformedMessage as exc:
            raise MalformedMessage(f"DCMD {spec.name}: {exc}") from None
        except ValueError as exc:  # a string that is not UTF-8
            raise MalformedMessage(f"DCMD {spec.name}: {exc}") from exc
        commands.append(Command(spec.tag, _as_tag_value(spec.datatype, value)))
    return commands


def _as_tag_value(datatype: DataType, value: Decoded) -> Value:
    """A written value in the form the tag's readings have (the OPC UA connector's forms)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if datatype is DataType.DateTime and isinstance(value, int):
        try:
            stamp = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, ValueError, OSError) as exc:
            raise MalformedMessage(f"DateTime {value}: {exc}") from exc
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


# -- a primary host's STATE -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostState:
    """A primary host application's STATE: online or not, as of its timestamp."""

    online: bool
    timestamp: int


def parse_state(data: bytes) -> HostState:
    """A STATE payload (JSON ``{"online": bool, "timestamp": ms}``, spec 3.0)."""
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise MalformedMessage(f"STATE: not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise MalformedMessage("STATE: not a JSON object")
    online, timestamp = body.get("online"), body.get("timestamp")
    if not isinstance(online, bool) or type(timestamp) is not int:
        raise MalformedMessage('STATE: needs "online" (true/false) and "timestamp" (ms)')
    return HostState(online, timestamp)
