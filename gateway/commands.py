"""Write commands from MES: the write rules decide, the connector writes once, a read-back
confirms, and every command gets exactly one result, committed to the audit trail first.

A command arrives on a broker subscription (JSON ``{prefix}/{source}/{tag}/set``, or a
Sparkplug DCMD). The rules (``gateway/writes.py``) are the only door to a connector's
``write``: what they refuse never reaches the wire. A write is never retried: when the device
gives no answer, the tag is read back and the result says what the read-back showed. Each
result is committed to the buffer's database (``plantgate audit`` lists it) before it is
published; what could not be published yet (the broker away) goes out on the next connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from buffer import Buffer
from connectors.base import Writer
from gateway.config import Config
from gateway.errors import ConnectionLost, DeviceError, WriteUnconfirmed
from gateway.models import Quality, Value, epoch_ms
from gateway.mqtt import MqttLink
from gateway.schema import SourceBase, TagBase
from gateway.window import InflightWindow
from gateway.writes import (
    Accepted,
    Command,
    MalformedCommand,
    Refused,
    WriteRates,
    check_write,
    parse_command,
)

log = logging.getLogger(__name__)
audit_log = logging.getLogger("plantgate.audit")

MAX_WAITING = 100  # commands being handled at once; more are refused as "busy"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command goes: the source, the tag and the live connector (None: not running)."""

    source: SourceBase
    tag: TagBase
    connector: Writer[Any] | None
    connected: bool


Outcome = tuple[str, str | None, str | None, Value, Value]
"""A command's result, the rule that refused it, the reason, and the value before and after."""

Targets = Callable[[str, str], Target | None]
"""Finds a source's tag and its connector by name (None: the tag map has no such tag)."""


class WriteDesk:
    """Takes commands, answers each once, keeps the audit trail."""

    def __init__(self, config: Config, buffer: Buffer, targets: Targets) -> None:
        self.config = config
        self.buffer = buffer
        self.targets = targets
        self.rates = WriteRates()
        self._locks: dict[str, asyncio.Lock] = {}  # one write at a time per source
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()  # an audit entry waits to be published
        self.counts: dict[str, int] = {}  # results by kind, for metrics
        self._publishing: set[int] = set()  # audit ids whose messages are in flight
        # Audit ids the broker acknowledged whose "published" mark may not be committed yet:
        # the database still lists them as pending for a moment, and they must not go out twice.
        self._acked: set[int] = set()

    def submit(self, source: str, tag: str, payload: bytes) -> None:
        """A command arrived (called on the event loop, from the broker connection)."""
        arrived = epoch_ms()
        if len(self._tasks) >= MAX_WAITING:
            command_id = _peek_id(payload)
            task = asyncio.create_task(
                self._answer(
                    source,
                    tag,
                    command_id,
                    None,
                    arrived,
                    "refused",
                    "busy",
                    f"{MAX_WAITING} commands are being handled; try again",
                )
            )
        else:
            task = asyncio.create_task(self._guarded(source, tag, payload, arrived))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def submit_value(self, source: str, tag: str, value: Value, command_id: str) -> None:
        """A command whose value is already decoded (a Sparkplug DCMD metric)."""
        self.submit(
            source, tag, json.dumps({"value": value, "id": command_id, "ts": epoch_ms()}).encode()
        )

    async def close(self) -> None:
        """Let the commands in hand finish (bounded), so none goes unanswered."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)

    async def _guarded(self, source: str, tag: str, payload: bytes, arrived: int) -> None:
        """Handle a command; whatever goes wrong, it still gets its one result."""
        try:
            await self._handle(source, tag, payload, arrived)
        except Exception as exc:
            log.exception("write %s/%s failed inside the gateway", source, tag)
            await self._answer(
                source,
                tag,
                _peek_id(payload),
                None,
                arrived,
                "failed",
                None,
                f"the gateway failed: {exc!r}",
            )

    async def _handle(self, source: str, tag: str, payload: bytes, arrived: int) -> None:
        try:
            command = parse_command(payload)
        except MalformedCommand as exc:
            await self._answer(source, tag, exc.id, None, arrived, "refused", "malformed", str(exc))
            return
        # One command at a time per source, and judged by the tag map and the connection in
        # force when its turn comes: a command queued across a reload meets the new map.
        async with self._locks.setdefault(source, asyncio.Lock()):
            outcome = await self._decide_and_write(source, tag, command, arrived)
        await self._answer(source, tag, command.id, command, arrived, *outcome)

    async def _decide_and_write(
        self, source: str, tag: str, command: Command, arrived: int
    ) -> Outcome:
        """The rules, then (if they accept) the write and its read-back."""
        target = self.targets(source, tag)
        if target is None:
            return "refused", "not_writable", f"the tag map has no tag {source}/{tag}", None, None
        connector = target.connector
        plc = connector.plc_type(target.tag) if connector is not None else None
        verdict = check_write(
            command,
            writes=self.config.gateway.writes,
            source=target.source,
            tag=target.tag,
            plc_type=plc,
            now=arrived,
            limiter=self.rates.limiter(source, tag),
            default_max_age=self.config.gateway.write_max_age,
        )
        if isinstance(verdict, Refused):
            return verdict.result, str(verdict.rule), verdict.reason, None, None
        if connector is None or not target.connected:
            return "failed", None, f"{source} is not connected to its device", None, None
        return await self._write(connector, target.tag, verdict)

    async def _write(self, connector: Writer[Any], tag: TagBase, verdict: Accepted) -> Outcome:
        """Write once, read back; (result, rule, reason, before, after)."""
        before = await _read(connector, tag)
        problem: str | None = None
        try:
            await connector.write(tag, verdict.value)
        except WriteUnconfirmed as exc:  # may have been applied: the read-back decides
            problem = f"no answer from the device ({exc})"
        except DeviceError as exc:
            return "failed", None, str(exc), before, await _read(connector, tag)
        except ConnectionLost as exc:
            return "failed", None, f"connection lost: {exc}", before, None
        except (ValueError, TypeError) as exc:  # the rules should have caught it: say so
            return "failed", None, f"the device's type refused it: {exc}", before, None
        after = await _read(connector, tag)
        if after is not _UNREAD and verdict.matches(cast(Value, after)):
            return "written", None, problem, before, after
        shown = "could not be read back" if after is _UNREAD else f"reads back {after!r}"
        reason = f"{problem}; {shown}" if problem else f"written, but it {shown}"
        return "failed", None, reason, before, None if after is _UNREAD else after

    async def _answer(
        self,
        source: str,
        tag: str,
        command_id: str | None,
        command: Command | None,
        arrived: int,
        result: str,
        rule: str | None,
        reason: str | None,
        before: Value = None,
        after: Value = None,
    ) -> None:
        """Commit the result to the audit trail, then let the session publish it."""
        now = epoch_ms()
        entry = {
            "id": command_id,
            "source": source,
            "tag": tag,
            "value": None if command is None else command.value,
            "issued": None if command is None else command.ts,
            "arrived": arrived,
            "result": result,
            "rule": rule,
            "reason": reason,
            "before": None if before is _UNREAD else before,
            "after": None if after is _UNREAD else after,
            "ts": now,
        }
        self.counts[result] = self.counts.get(result, 0) + 1
        audit_log.info(
            "write %s/%s = %r (id %s): %s%s",
            source,
            tag,
            entry["value"],
            command_id,
            result,
            f" ({rule}: {reason})" if rule else (f" ({reason})" if reason else ""),
        )
        await self.buffer.audit(now, source, tag, json.dumps(entry, separators=(",", ":")))
        self.ready.set()

    async def publish(
        self, link: MqttLink, window: InflightWindow, prefix: str, results: bool
    ) -> None:
        """Publish every committed audit entry not yet acknowledged: on
        ``{prefix}/_gateway/audit`` and (``results``) the command's ``…/set/result``, QoS 1;
        an entry is marked published once the broker acknowledged all of its messages."""
        self.ready.clear()
        pending = await self.buffer.audit_pending()
        self._acked &= {audit_id for audit_id, _ in pending}  # the rest are marked for good
        for audit_id, record in pending:
            if audit_id in self._publishing or audit_id in self._acked:
                continue
            entry = json.loads(record)
            messages = [(f"{prefix}/_gateway/audit", record.encode())]
            if results:
                topic = f"{prefix}/{entry['source']}/{entry['tag']}/set/result"
                messages.append((topic, result_message(entry)))
            self._publishing.add(audit_id)
            left = [len(messages)]

            def acked(audit_id: int = audit_id, left: list[int] = left) -> None:
                left[0] -= 1
                if not left[0]:
                    self._publishing.discard(audit_id)
                    self._acked.add(audit_id)
                    self.buffer.audit_published(audit_id)

            for topic, payload in messages:
                window.track(link.publish(topic, payload, qos=1, retain=False), None, acked)

    def connection_lost(self) -> None:
        """What was in flight is published again on the next connection."""
        self._publishing.clear()
        self.ready.set()


_UNREAD: Any = object()  # a read-back that failed (distinct from a value of None)


async def _read(connector: Writer[Any], tag: TagBase) -> Any:
    """The tag's value now, or _UNREAD when it cannot be read."""
    try:
        sample = await connector.read_back(tag)
    except (DeviceError, ConnectionLost):
        return _UNREAD
    return sample.value if sample.quality is not Quality.BAD else _UNREAD


def _peek_id(payload: bytes) -> str | None:
    """The id of a command that will not be parsed further, if it has a plain one."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    command_id = body.get("id") if isinstance(body, dict) else None
    return command_id if isinstance(command_id, str) else None


def result_message(entry: dict[str, Any]) -> bytes:
    """What ``…/set/result`` carries: the command's id and its one result."""
    body = {
        k: entry[k] for k in ("id", "result", "rule", "reason", "ts") if entry.get(k) is not None
    }
    if entry["result"] == "written":
        body["value"] = entry["after"]
    return json.dumps(body, separators=(",", ":")).encode()
