"""A command as the gateway's wiring handles it, for the connectors' write tests."""

from __future__ import annotations

from typing import Any, Protocol

from connectors.base import Writer
from gateway.models import Quality, Value, epoch_ms
from gateway.schema import SourceBase
from gateway.writes import Accepted, Command, RateLimiter, Refused, check_write


class WritingConnector(Writer[Any], Protocol):
    """A connector that writes, with its source's config."""

    source: SourceBase


def decide(conn: WritingConnector, tag: Any, value: Value) -> Accepted | Refused:
    """What the command wiring does first: the rules, with the connector's PLC type."""
    now = epoch_ms()
    return check_write(
        Command(value, "cmd", now),
        writes=True,
        source=conn.source,
        tag=tag,
        plc_type=conn.plc_type(tag),
        now=now,
        limiter=RateLimiter(),
        default_max_age=30.0,
    )


async def handle(conn: WritingConnector, tag: Any, value: Value) -> Accepted | Refused:
    """A command as the wiring handles it: the rules; if they accept, write and read back."""
    verdict = decide(conn, tag, value)
    if isinstance(verdict, Accepted):
        await conn.write(tag, verdict.value)
        sample = await conn.read_back(tag)
        assert sample.quality is Quality.GOOD
        assert verdict.matches(sample.value), (sample.value, verdict.expected)
    return verdict
