"""The asyncio EtherNet/IP server: TCP clients, fault injection and the public API."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simulators.logix.catalog import PROGRAM_NAME, build_database
from simulators.logix.cip import CipError, CipStatus
from simulators.logix.encap import HEADER_SIZE, Command, EncapHeader, EncapStatus
from simulators.logix.faults import ErrorInjection, FaultPlan
from simulators.logix.identity import Identity
from simulators.logix.router import MessageRouter
from simulators.logix.session import Session
from simulators.plant import snapshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.logix.tags import TagDatabase
    from simulators.logix.types import TagValue

__all__ = ["DEFAULT_PORT", "LogixSimulator", "serve_logix"]

_log = logging.getLogger(__name__)

DEFAULT_PORT = 44818
_MAX_ENCAP_DATA = 65511
_STOP_GRACE = 2.0


@dataclass(eq=False, slots=True)
class _Client:
    """One TCP connection and the protocol session behind it."""

    writer: asyncio.StreamWriter
    session: Session
    dropped: bool = False


class LogixSimulator:
    """A ControlLogix-like EtherNet/IP target serving the plant model's tags to CIP clients.

    Faults a test can set: ``drop_connections``, ``stall``, ``inject_error`` (CIP errors for
    tag requests), ``refuse_writes`` and ``refuse_tag_list``; a tag declared Read Only refuses
    writes with a privilege violation. ``write_count`` counts the write requests that arrived.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        identity: Identity | None = None,
        database: TagDatabase | None = None,
        clock: Callable[[], float] = time.time,
        slot: int = 0,
        large_forward_open: bool = True,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._identity = identity or Identity()
        self._db = database or build_database()
        self._clock = clock
        self._slot = slot
        self._large_forward_open = large_forward_open
        self._faults = FaultPlan()
        self._router = MessageRouter(self._db, self._identity, PROGRAM_NAME, self._faults, clock)
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._stall_timer: asyncio.TimerHandle | None = None
        self._sessions = itertools.count(0x1A2B_0001)
        self._connection_ids = itertools.count(0x4000_0001)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """TCP port actually bound (useful after asking for port 0)."""
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def database(self) -> TagDatabase:
        """The tag database being served."""
        return self._db

    async def start(self) -> None:
        """Listen for clients."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._serve_client, self._host, self._requested_port
        )
        self._port = self._server.sockets[0].getsockname()[1]
        _log.info("Logix simulator listening on %s:%d", self._host, self._port)

    async def stop(self) -> None:
        """Close every client and stop listening."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop_connections()
        self.resume()
        # Aborted transports end the handlers on their own; cancelling them instead would trip
        # asyncio's stream callback on 3.11, which calls exception() on the cancelled task.
        if self._tasks:
            _done, pending = await asyncio.wait(list(self._tasks), timeout=_STOP_GRACE)
            for task in pending:
                task.cancel()
        if server is not None:
            await server.wait_closed()

    # -- faults ----------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Abort every client TCP connection now (like a cable pull); returns how many."""
        clients = list(self._clients)
        for client in clients:
            client.dropped = True
            client.session.connections.clear()
            client.writer.transport.abort()
        return len(clients)

    def stall(self, seconds: float | None = None) -> None:
        """Stop answering (requests queue up) for ``seconds``, or until :meth:`resume`."""
        self._flowing.clear()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if seconds is not None:
            self._stall_timer = asyncio.get_running_loop().call_later(seconds, self.resume)

    def resume(self) -> None:
        """End a stall: queued requests are answered, late, in order."""
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._flowing.set()

    def inject_error(
        self, status: int, *extended: int, count: int | None = 1, tag: str | None = None
    ) -> None:
        """Fail the next ``count`` tag requests (None: until cleared), or only those for ``tag``."""
        name = tag.lower() if tag is not None else None
        self._faults.add(ErrorInjection(status, tuple(extended), count, name))

    def refuse_writes(self, status: int, *extended: int, tag: str | None = None) -> None:
        """Refuse every write (or every write to ``tag``) with a CIP status until cleared."""
        name = tag.lower() if tag is not None else None
        self._faults.write_refusal = ErrorInjection(status, tuple(extended), None, name)

    def refuse_tag_list(
        self, status: int = CipStatus.SERVICE_NOT_SUPPORTED, *extended: int
    ) -> None:
        """Refuse the tag list upload (Get Instance Attribute List, 0x55) until cleared, as
        some controllers and protocol gateways do."""
        self._faults.tag_list_refusal = CipError(status, *extended)

    def clear_faults(self) -> None:
        """Forget pending injected errors and refusals, and end any stall."""
        self._faults.clear()
        self.resume()

    @property
    def session_count(self) -> int:
        """Registered encapsulation sessions right now."""
        return sum(1 for c in self._clients if c.session.handle and not c.dropped)

    @property
    def connection_count(self) -> int:
        """Open CIP (Forward Open) connections right now."""
        return sum(len(c.session.connections) for c in self._clients)

    @property
    def write_count(self) -> int:
        """Write requests that reached the tag services (refused ones included)."""
        return self._router.writes

    @property
    def service_counts(self) -> dict[int, int]:
        """Requests per service code run by the Message Router (embedded ones included)."""
        return dict(self._router.served)

    # -- direct tag access -----------------------------------------------------------------

    def get_tag(self, name: str) -> TagValue:
        """Current value of a tag path such as ``CurrentRecipe.Limits.High`` or ``Arr[3]``."""
        self._db.refresh(snapshot(self._clock()))
        return self._db.value(self._db.locate(name))

    def set_tag(self, name: str, value: TagValue) -> None:
        """Overwrite a tag path; like a client write, it stops following the plant model."""
        self._db.set_value(self._db.locate(name), value)

    def release_tag(self, name: str) -> None:
        """Let a written tag follow the plant model again."""
        self._db.locate(name).tag.written = False

    # -- TCP -------------------------------------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:  # always set for a stream handler; tracked so stop() can wait
            self._tasks.add(task)
        local = writer.get_extra_info("sockname") or (self._host, self.port)
        session = Session(
            self._router,
            self._identity,
            (str(local[0]), int(local[1])),
            self._sessions,
            self._connection_ids,
            slot=self._slot,
            large_forward_open=self._large_forward_open,
        )
        client = _Client(writer, session)
        self._clients.add(client)
        try:
            await self._conversation(client, reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            _log.exception("Logix simulator: client handler failed")
        finally:
            self._clients.discard(client)
            if task is not None:
                self._tasks.discard(task)
            session.connections.clear()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _conversation(self, client: _Client, reader: asyncio.StreamReader) -> None:
        while True:
            header = EncapHeader.decode(await reader.readexactly(HEADER_SIZE))
            if header.length > _MAX_ENCAP_DATA:
                client.writer.write(header.reply(status=EncapStatus.INVALID_LENGTH))
                return
            payload = await reader.readexactly(header.length)
            await self._flowing.wait()
            if client.dropped:
                return
            if header.command == Command.UNREGISTER_SESSION:
                return
            reply = client.session.reply(header, payload)
            if reply is not None:
                client.writer.write(reply)
                await client.writer.drain()


async def serve_logix(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run a Logix simulator until cancelled."""
    sim = LogixSimulator(host, port)
    await sim.start()
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
