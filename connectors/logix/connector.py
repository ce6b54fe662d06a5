"""Allen-Bradley Logix connector on pycomm3, which blocks: every call runs in one worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pycomm3 import CommError, LogixDriver

from connectors.base import Connector, Writer
from connectors.logix.config import LogixSource, LogixTag
from connectors.logix.declared import declare
from connectors.logix.driver import Driver, reason
from connectors.logix.resolve import Resolved, TagTable, bad_sample, dimensions, plain_value
from connectors.logix.writes import plc_type_of, write_value
from gateway.errors import ConnectionLost, DeviceError
from gateway.models import Quality, Sample, Value
from gateway.writes import PlcType

log = logging.getLogger(__name__)

T = TypeVar("T")

# pycomm3 1.2.16 sizes a lone Read Tag without its reply header, so a reply whose data alone
# nearly fills the connection is sent unfragmented and refused ("Insufficient Packet Space").
# Within this many bytes of the connection size a lone read is paired with a small tag, which
# sends it down pycomm3's multi-request path, where it is sized (and fragmented) correctly.
LONE_READ_MARGIN = 64


@dataclass(frozen=True, slots=True)
class LogixPlan:
    """How one scan's tags are read on this connection: each tag's resolution in the tag list
    (or why it cannot be read), and the request texts of the one pycomm3 call."""

    how: tuple[Resolved | str, ...]
    requests: list[str]


class LogixConnector:
    """Reads a Logix controller's tags over one CIP connection, in as few requests as fit.

    A tag the controller refuses, or that its tag list does not have, is bad with the reason
    (``CIP status 0x05 (path destination unknown)``, ``NoSuchTag is not in the controller's tag
    list``).
    """

    def __init__(self, source: LogixSource) -> None:
        self.source = source
        self._executor: ThreadPoolExecutor | None = None
        self._plc: Driver | None = None
        self._table: TagTable | None = None
        self._resolved: dict[str, Resolved | str] = {}  # address -> how to read it, or why not
        self._companion: str | None = None  # a small tag to pair with a lone large read
        self.requests_sent = 0  # CIP requests and fragments sent by read()

    @property
    def connection_size(self) -> int:
        """Bytes per request/reply the controller granted (4000 with a Large Forward Open)."""
        return int(self._plc.connection_size) if self._plc is not None else 0

    async def connect(self) -> None:
        """Open the connection and get the tag list (uploaded or declared)."""
        if self._plc is not None:
            await self.close()
        self._plc = await self._call(self._open)
        # Built once per connection: a program download may change the list, and reconnects.
        self._table = TagTable(self._plc.tags)
        self._resolved = {}
        self._companion = _small_tag(self._table)

    def plan(self, tags: Sequence[LogixTag]) -> LogixPlan:
        """Look the tags up in this connection's tag list and gather their requests; no I/O."""
        plc, table = self._plc, self._table
        if plc is None or table is None:
            raise ConnectionLost(f"not connected to {self.source.path}")
        how = tuple(self._resolve(tag, table) for tag in tags)
        readable = [r for r in how if isinstance(r, Resolved)]
        requests = list(dict.fromkeys(r.request for r in readable))
        lone = readable[0].size if len(requests) == 1 else 0
        size = plc.connection_size
        if size - LONE_READ_MARGIN < lone <= size and self._companion:
            requests.append(self._companion)
        return LogixPlan(how, requests)

    async def read(self, plan: LogixPlan) -> list[Sample]:
        """Read the plan's tags once, in one pycomm3 call; a tag the controller refuses is bad
        alone."""
        plc = self._plc
        if plc is None:
            raise ConnectionLost(f"not connected to {self.source.path}")
        results = await self._call(self._read, plc, plan.requests) if plan.requests else {}
        samples: list[Sample] = []
        for how in plan.how:
            if isinstance(how, str):
                samples.append(Sample(None, Quality.BAD, reason=how))
                continue
            value, error = results[how.request]
            if error is not None:
                samples.append(bad_sample(how, error))
            else:
                samples.append(Sample(plain_value(value, how)))
        return samples

    def plc_type(self, tag: LogixTag) -> PlcType | None:
        """The tag's type for the write rules, as the controller (or the YAML) declares it;
        None before the first connection. No I/O."""
        table = self._table
        if table is None:
            return None
        how = self._resolve(tag, table)
        if isinstance(how, str):
            return None
        return plc_type_of(how)

    async def read_back(self, tag: LogixTag) -> Sample:
        """Read one tag now, outside the scans, to confirm a write."""
        (sample,) = await self.read(self.plan([tag]))
        return sample

    async def write(self, tag: LogixTag, value: Value) -> None:
        """Write one tag's value (the caller has checked that writes are allowed).

        A value that does not fit the tag's type raises ValueError before anything is sent; a
        refusal raises DeviceError with the controller's CIP status. Never retried: after a
        timeout the write may have been applied, so the connection is reported lost instead.
        """
        plc, table = self._plc, self._table
        if plc is None or table is None:
            raise ConnectionLost(f"not connected to {self.source.path}")
        how = self._resolve(tag, table)
        if isinstance(how, str):
            raise DeviceError(f"{tag.name} ({tag.address}): {how}")
        try:
            payload = write_value(how, value)
        except ValueError as exc:
            raise ValueError(f"{tag.name} ({tag.address}): {exc}") from exc
        await self._call(self._write, plc, tag, how.request, payload)

    async def close(self) -> None:
        """Close the connection (Forward Close, unregister the session); never raises."""
        plc, self._plc, self._table = self._plc, None, None
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            if plc is not None:
                # Queued behind any read still running, so the driver is never used twice at once.
                await asyncio.get_running_loop().run_in_executor(executor, _close_quietly, plc)
        except Exception:  # close never raises: the connection is gone either way
            log.debug("%s: error while closing", self.source.name, exc_info=True)
        finally:
            executor.shutdown(wait=False)

    # -- in the worker thread ---------------------------------------------------------------

    def _open(self) -> Driver:
        src = self.source
        plc = Driver(src.path, init_tags=False)
        plc.socket_timeout = src.connect_timeout
        try:
            if not plc.open():  # type: ignore[no-untyped-call]
                raise ConnectionLost(f"{src.path}: the controller refused the session")
            if src.uploads_tag_list:
                untyped = [t.name for t in src.tags if t.type is None]
                plc.upload_tag_list(src.path, untyped)
            else:
                # Built from the YAML: tags are then addressed by name, and every reply's type
                # is checked against the declaration.
                plc._tags = declare((t.address, t.type) for t in src.tags if t.type).tags
                plc.check_reply_types = True
        except ConnectionLost:
            _close_quietly(plc)
            raise
        except Exception as exc:  # pycomm3 raises assorted errors for odd replies while opening
            _close_quietly(plc)
            raise ConnectionLost(f"cannot connect to {src.path}: {reason(exc)}") from exc
        # Opened: from here on, each reply is bounded by ``timeout``.
        plc.socket_timeout = src.timeout
        if plc._sock is not None:  # pycomm3 sets the socket's timeout only when it creates it
            plc._sock.sock.settimeout(src.timeout)
        return plc

    def _read(self, plc: Driver, requests: list[str]) -> dict[str, tuple[Any, str | None]]:
        before = plc.packets
        try:
            out = plc.read(*requests)
        except CommError as exc:
            plc.broken = True
            raise ConnectionLost(f"{self.source.path}: {reason(exc)}") from exc
        except Exception as exc:  # the driver's state is unknown now: reconnecting resets it
            raise ConnectionLost(f"{self.source.path}: read failed: {reason(exc)}") from exc
        finally:
            self.requests_sent += plc.packets - before
        results = out if isinstance(out, list) else [out]
        return {
            request: (result.value, str(result.error) if result.error else None)
            for request, result in zip(requests, results, strict=True)
        }

    def _write(self, plc: Driver, tag: LogixTag, request: str, payload: Any) -> None:
        plc.refusal = None
        try:
            result = plc.write(request, payload)
        except CommError as exc:
            plc.broken = True
            raise ConnectionLost(
                f"{self.source.path}: {reason(exc)} (the write to {tag.name} may or may not "
                "have been applied)"
            ) from exc
        except Exception as exc:  # the driver's state is unknown now: reconnecting resets it
            raise ConnectionLost(
                f"{self.source.path}: write to {tag.name} failed: {reason(exc)}"
            ) from exc
        if result.error:
            why = plc.refusal if plc.refusal is not None else result.error
            raise DeviceError(f"{tag.name} ({tag.address}): write refused: {why}")

    # -- on the event loop ------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a driver call in this connection's own thread, one call at a time."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"logix-{self.source.name}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _resolve(self, tag: LogixTag, table: TagTable) -> Resolved | str:
        key = str(tag.address)
        found = self._resolved.get(key)
        if found is None:
            try:
                found = table.resolve(tag.address)
            except LookupError as exc:
                found = str(exc)
            self._resolved[key] = found
        return found


def _small_tag(table: TagTable) -> str | None:
    """A readable scalar atomic tag, to pair with a lone large read."""
    for name, info in table.tags.items():
        atomic = isinstance(info.get("data_type"), str)
        if atomic and not dimensions(info) and info.get("external_access") != "None":
            return name
    return None


def _close_quietly(plc: LogixDriver) -> None:
    if isinstance(plc, Driver) and plc.broken:
        plc.abandon()
    with contextlib.suppress(Exception):
        plc.close()  # type: ignore[no-untyped-call]


if TYPE_CHECKING:  # the contract, checked by mypy
    _connector: type[Connector[LogixTag, LogixPlan]] = LogixConnector
    _writer: type[Writer[LogixTag]] = LogixConnector
