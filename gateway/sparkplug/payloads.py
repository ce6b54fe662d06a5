"""The Sparkplug B payloads an edge node sends: births, data and deaths.

Every builder takes ``seq`` (0..255) and ``timestamp`` (epoch ms, when the message is
published) from the caller: the session owns the counters and the clock.
"""

from __future__ import annotations

from collections.abc import Mapping

from buffer.rows import StoredBatch
from gateway.models import Batch, Quality, Value
from gateway.sparkplug import wire
from gateway.sparkplug.datatypes import DataType, encoder
from gateway.sparkplug.metrics import (
    BD_SEQ,
    DATA_QUALITY,
    NEXT_SERVER,
    NODE_ALIASES,
    REBIRTH,
    SourceMetrics,
    properties,
)

Current = tuple[Value, Quality, int]
"""A tag's newest reading for a birth certificate: value, quality, epoch ms."""

_BD_SEQ_FIELD = encoder(DataType.Int64)  # the spec makes bdSeq an INT64 (will and NBIRTH)
_FALSE = encoder(DataType.Boolean)(False)


def _check(name: str, number: int) -> int:
    if not 0 <= number <= 255:
        raise ValueError(f"{name} must be 0..255, not {number}")
    return number


def _bd_seq(bd_seq: int, timestamp: int, alias: int | None) -> bytes:
    return wire.metric(
        name=BD_SEQ,
        alias=alias,
        timestamp=timestamp,
        datatype=DataType.Int64,
        value=_BD_SEQ_FIELD(_check("bdSeq", bd_seq)) or b"",
    )


def _node_control(name: str, timestamp: int) -> bytes:
    return wire.metric(
        name=name,
        alias=NODE_ALIASES[name],
        timestamp=timestamp,
        datatype=DataType.Boolean,
        value=_FALSE or b"",
    )


def nbirth(bd_seq: int, seq: int, timestamp: int, *, next_server: bool = False) -> bytes:
    """The edge node's birth: ``bdSeq`` (as in the will of this connection) and
    ``Node Control/Rebirth`` false; ``Node Control/Next Server`` too when the node can move
    to another broker of a cluster on command."""
    metrics = [
        _bd_seq(bd_seq, timestamp, NODE_ALIASES[BD_SEQ]),
        _node_control(REBIRTH, timestamp),
    ]
    if next_server:
        metrics.append(_node_control(NEXT_SERVER, timestamp))
    return wire.payload(timestamp, metrics, _check("seq", seq))


def ndeath(bd_seq: int, timestamp: int) -> bytes:
    """The edge node's death certificate (the MQTT will): ``bdSeq`` and no ``seq``."""
    return wire.payload(timestamp, [_bd_seq(bd_seq, timestamp, None)], None)


def dbirth(
    metrics: SourceMetrics, current: Mapping[str, Current], seq: int, timestamp: int
) -> bytes:
    """A device's birth: every metric with name, alias, type, its current value (``is_null``
    when there is none), the value's timestamp, ``Quality`` and ``engUnit`` when known."""
    bodies = []
    for spec in metrics.specs:
        value, quality, stamp = current.get(spec.tag, (None, Quality.BAD, timestamp))
        field = spec.encode(value) if value is not None else None
        if field is None and value is not None:
            quality = Quality.BAD  # a value its type cannot carry is not passed off as one
        bodies.append(
            wire.metric(
                name=spec.name,
                alias=spec.alias,
                timestamp=stamp,
                datatype=spec.datatype,
                null=field is None,
                properties=properties(quality, spec.units),
                value=field or b"",
            )
        )
    return wire.payload(timestamp, bodies, _check("seq", seq))


def ddata(
    metrics: SourceMetrics,
    batch: Batch | StoredBatch,
    seq: int,
    timestamp: int,
    historical: bool = False,
) -> bytes:
    """One source's batch as one DDATA: metrics by alias with their original timestamps,
    ``Quality`` when not good, ``is_null`` without a value, ``is_historical`` on replay.

    Every tag of the batch must be one of ``metrics`` (:meth:`SourceMetrics.learn` it, and
    send the DBIRTH it asks for, first). A value its metric's type cannot carry is sent as
    null with bad quality rather than as a wrong number.
    """
    # The hot path of the Sparkplug format: each metric laid down from parts made once (the
    # alias field on the spec, the flags and quality properties per quality, each distinct
    # timestamp) and joined once at the end.
    varint, heads = wire.varint, wire.METRIC_HEADS
    metric_key, timestamp_key = wire.PAYLOAD_METRIC, wire.TIMESTAMP
    flags = wire.IS_HISTORICAL + wire.TRUE if historical else b""
    extra = {q: flags + DATA_QUALITY[q] for q in Quality}
    null = {q: flags + wire.IS_NULL + wire.TRUE + DATA_QUALITY[q] for q in Quality}
    refused = null[Quality.BAD]
    stamps: dict[int, bytes] = {}
    parts = [wire.PAYLOAD_TIMESTAMP + varint(timestamp)]
    add = parts.append
    for spec, value, quality, ts in zip(
        metrics.specs_of(list(batch.tags)), batch.values, batch.qualities, batch.stamps, strict=True
    ):
        stamp = stamps.get(ts)
        if stamp is None:
            stamp = stamps[ts] = timestamp_key + varint(ts)
        if value is None:
            body = spec.alias_field + stamp + null[quality]
        else:
            field = spec.encode(value)
            if field is None:
                body = spec.alias_field + stamp + refused
            else:
                body = spec.alias_field + stamp + extra[quality] + field
        size = len(body)
        add(heads[size] if size < 0x80 else metric_key + varint(size))
        add(body)
    add(wire.PAYLOAD_SEQ + varint(_check("seq", seq)))
    return b"".join(parts)


def ddeath(seq: int, timestamp: int) -> bytes:
    """A device's death certificate (its PLC is lost): timestamp and seq, no metrics."""
    return wire.payload(timestamp, [], _check("seq", seq))
