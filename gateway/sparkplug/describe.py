"""``plantgate tail`` for Sparkplug B: births, data (aliases resolved from births), deaths."""

from __future__ import annotations

import math

from gateway.errors import MalformedMessage
from gateway.models import json_text
from gateway.sparkplug.datatypes import DataType
from gateway.sparkplug.decode import (
    Decoded,
    DecodedMetric,
    DecodedPayload,
    MetricInfo,
    decode_payload,
    parse_state,
)
from gateway.sparkplug.metrics import BD_SEQ
from gateway.sparkplug.topics import MessageType, StateTopic, Topic, parse_topic

Births = dict[str, dict[int, MetricInfo]]
"""What the births seen so far said, per edge node (``group/edge``): alias -> name and type.
Aliases are unique across an edge node, so one map serves its node and all its devices."""

_QUALITY_NAMES = {192: "good", 0: "bad", 500: "stale", 64: "uncertain"}
_WIDE = 60  # longest value shown; arrays and long strings are cut


def describe_sparkplug(
    topic: str, payload: bytes, aliases: Births, now_ms: int | None = None
) -> str:
    """Lines for one Sparkplug message: a head line, then one line per metric. Births teach
    ``aliases`` the names and types that later data messages give only by alias."""
    try:
        where = parse_topic(topic)
    except MalformedMessage:
        return f"{topic:<48} <{len(payload)} bytes, not a Sparkplug B topic>"
    try:
        if isinstance(where, StateTopic):
            state = parse_state(payload)
            return f"{topic:<48} STATE {'online' if state.online else 'offline'}"
        return _describe(topic, where, payload, aliases, now_ms)
    except MalformedMessage as exc:
        return f"{topic:<48} malformed: {exc}"


def _describe(topic: str, where: Topic, payload: bytes, aliases: Births, now_ms: int | None) -> str:
    node = f"{where.group_id}/{where.edge_node_id}"
    verb = where.message_type
    if verb is MessageType.NBIRTH:
        aliases[node] = {}  # a new session of the node: its aliases start again
    body = decode_payload(payload, aliases.get(node))
    metrics = body.get("metrics", [])
    if verb in (MessageType.NBIRTH, MessageType.DBIRTH):
        _learn(aliases.setdefault(node, {}), metrics)
    head = f"{topic:<48} {verb}{_seq(body)}"
    if verb is MessageType.NDEATH:
        return f"{head} bdSeq={_bd_seq(metrics)}"
    if verb is MessageType.DDEATH:
        return head
    if verb is MessageType.NBIRTH:
        head += f" bdSeq={_bd_seq(metrics)}"
    lines = [f"{head}, {len(metrics)} metric{'s' if len(metrics) != 1 else ''}"]
    lines += [_metric_line(m, now_ms) for m in metrics]
    return "\n".join(lines)


def _bd_seq(metrics: list[DecodedMetric]) -> str:
    return next((_show(m.get("value")) for m in metrics if m.get("name") == BD_SEQ), "?")


def _seq(body: DecodedPayload) -> str:
    return f" seq={body['seq']}" if "seq" in body else ""


def _learn(known: dict[int, MetricInfo], metrics: list[DecodedMetric]) -> None:
    for m in metrics:
        if "alias" in m and "name" in m and "datatype" in m:
            known[m["alias"]] = (m["name"], DataType[m["datatype"]])


def _metric_line(m: DecodedMetric, now_ms: int | None) -> str:
    name = m.get("name") or f"<alias {m.get('alias')}>"
    value = "null" if m.get("is_null") else _show(m.get("value"))
    properties = m.get("properties", {})
    code = properties.get("Quality")
    if code is None:
        quality = "good"  # what a data message without the property means
    else:
        quality = _QUALITY_NAMES.get(code, str(code)) if isinstance(code, int) else str(code)
    units = properties.get("engUnit")
    if isinstance(units, str):
        value = f"{value} {units}"
    when = ""
    if "timestamp" in m:
        when = f"  ts={m['timestamp']}" if now_ms is None else f"  age={_age(m, now_ms)}"
    hist = "  historical" if m.get("is_historical") else ""
    kind = f"  {m['datatype']}" if "datatype" in m else ""
    return f"  {name:<46} {value:>24}  {quality:<9}{when}{kind}{hist}"


def _age(m: DecodedMetric, now_ms: int) -> str:
    return f"{(now_ms - m['timestamp']) / 1000:.1f}s"


def _show(value: Decoded) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # nan, inf: JSON would say null
    text = value if isinstance(value, str) else json_text(value)
    return text if len(text) <= _WIDE else text[: _WIDE - 3] + "..."
