"""OPC UA values, status codes and timestamps turned into the gateway's JSON-friendly samples.

DateTime values become ISO 8601 UTC strings with milliseconds (``2025-11-21T18:02:20.123Z``):
unambiguous in a JSON payload where an epoch number would look like any counter, at the
gateway's millisecond resolution. OPC UA's null DateTime (1601-01-01) becomes None.
Sample timestamps (``ts``) stay epoch milliseconds, like every reading's.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from asyncua import ua

from gateway.models import Quality, Sample, Value

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NULL_DATETIME = datetime(1601, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def quality_of(status: ua.StatusCode | None) -> Quality:
    """Good -> good, Uncertain -> uncertain, Bad (and the reserved severity) -> bad."""
    if status is None or status.is_good():  # an absent StatusCode means Good (Part 4, 7.7)
        return Quality.GOOD
    if status.is_uncertain():
        return Quality.UNCERTAIN
    return Quality.BAD


def status_name(status: ua.StatusCode | None) -> str:
    """The status code's symbolic name, e.g. ``BadNodeIdUnknown``."""
    return "Good" if status is None else status.name


def epoch_ms(stamp: datetime | None) -> int | None:
    """A UTC datetime as epoch milliseconds; None (and OPC UA's null DateTime) stays None."""
    if stamp is None:
        return None
    if stamp.tzinfo is None:  # asyncua decodes UTC; a naive value is UTC too
        stamp = stamp.replace(tzinfo=UTC)
    if stamp <= _NULL_DATETIME:
        return None
    return (stamp - _EPOCH) // _MS


def iso_datetime(stamp: datetime) -> str | None:
    """A datetime as ISO 8601 UTC with milliseconds and a ``Z``; the null DateTime is None."""
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    if stamp <= _NULL_DATETIME:
        return None
    return stamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_value(value: Any) -> Value:
    """A decoded OPC UA value (any built-in type, array or structure) as JSON-friendly data."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Enum):  # asyncua decodes enumerations as IntEnum
        return int(value.value) if isinstance(value.value, int) else str(value.name)
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return iso_datetime(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple):
        return [to_value(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, ua.StatusCode):
        return value.name
    if isinstance(value, ua.NodeId):  # ExpandedNodeId too: it subclasses NodeId
        return value.to_string()
    if isinstance(value, ua.QualifiedName):
        return value.to_string()
    if isinstance(value, ua.Variant):
        return to_value(value.Value)
    if isinstance(value, ua.DataValue):
        return to_value(value.Value.Value if value.Value is not None else None)
    if isinstance(value, ua.XmlElement):
        return value.Value
    if isinstance(value, ua.ExtensionObject):  # a structure the client has no type for
        return {"type_id": value.TypeId.to_string(), "body": to_value(value.Body)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A decoded structure: published as its members (the runtime flattens dicts).
        return {f.name: to_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)  # anything exotic: readable rather than lost


def to_sample(data: ua.DataValue) -> Sample:
    """One DataValue as a Sample: value, quality from the StatusCode, the server's timestamp,
    and the status name as the reason when it is not good."""
    quality = quality_of(data.StatusCode)
    ts = epoch_ms(data.SourceTimestamp)
    if ts is None:
        ts = epoch_ms(data.ServerTimestamp)
    if quality is Quality.BAD:
        # A Bad value is not to be used (Part 4, 7.34); servers often send none at all.
        return Sample(None, quality, ts, status_name(data.StatusCode))
    variant = data.Value
    value = to_value(variant.Value if variant is not None else None)
    if quality is Quality.UNCERTAIN:
        return Sample(value, quality, ts, status_name(data.StatusCode))
    return Sample(value, quality, ts)
