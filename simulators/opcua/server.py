"""The OPC UA simulator: an asyncua server whose variables follow the shared plant model."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AttributeService
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from simulators.opcua.security import PlantUserManager, load_user_certificates, make_certificate
from simulators.opcua.variables import (
    APPLICATION_URI,
    BAD_STATUS,
    DEFAULT_PORT,
    NAMESPACE_URI,
    PLANT_VARIABLES,
    VT,
    bulk_names,
    nsu,
)
from simulators.plant import PlantSnapshot, snapshot

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from asyncua.common.node import Node
    from asyncua.server.internal_server import InternalServer

_log = logging.getLogger(__name__)


# asyncua annotates NodeId, StatusCode and DataValue fields with nominal wrappers (ua.String,
# ua.Int16, ua.DateTime, ...) yet encodes the plain Python values it passes around itself;
# these helpers keep the casts in one place instead of wrapping every value at runtime.
def _node_id(identifier: str | int, ns: int = 0) -> ua.NodeId:
    return ua.NodeId(cast("ua.String | ua.Int32", identifier), cast("ua.Int16", ns))


def _stamp(t: float | None = None) -> ua.DateTime:
    return cast("ua.DateTime", datetime.now(UTC) if t is None else datetime.fromtimestamp(t, UTC))


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(cast("ua.UInt32", code))


_ADMIN = User(role=UserRole.Admin)
_SERVER_STATUS = _node_id(ObjectIds.Server_ServerStatus)
_CURRENT_TIME = _node_id(ObjectIds.Server_ServerStatus_CurrentTime)
# The endpoints a secured simulator offers per policy name (the names the YAML uses).
SECURED_ENDPOINTS: dict[str, tuple[ua.SecurityPolicyType, ...]] = {
    "Basic256Sha256": (
        ua.SecurityPolicyType.Basic256Sha256_Sign,
        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ),
    "Aes128Sha256RsaOaep": (
        ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
        ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ),
}
# Longest run of writes without serving clients: publish responses go out while a big tick is
# still being written, as a real server's would while it samples.
WRITE_SLICE = 0.005


class _WriteGate(AttributeService):
    """The Write service as a PLC's server answers it, counted per variable.

    asyncua answers a write to a variable without CurrentWrite access BadUserAccessDenied; the
    spec's answer is BadNotWritable (Part 4, 7.34), which a real server gives. ``fail_with``
    answers every client write with that StatusCode instead of applying it; ``stall`` holds
    writes before applying and answering them (a slow PLC behind the server).
    """

    def __init__(self, iserver: InternalServer, counts: Counter[str]) -> None:
        super().__init__(iserver.aspace)
        self._read_attribute = iserver.aspace.read_attribute_value
        self.counts = counts  # string node id -> Write requests for it, refused ones too
        self.fail_with: int | None = None
        self.stall = 0.0  # seconds a client write waits before it is applied and answered

    async def write(self, params: ua.WriteParameters, user: User = _ADMIN) -> list[ua.StatusCode]:
        """Apply a Write request, refusing what a real server would refuse."""
        if user.role == UserRole.Admin:  # the simulator itself (building, set_writable)
            return await super().write(params, user)
        results: list[ua.StatusCode] = []
        for item in params.NodesToWrite:
            self.counts[str(item.NodeId.Identifier)] += 1
        if self.stall:
            await asyncio.sleep(self.stall)
        for item in params.NodesToWrite:
            if self.fail_with is not None:
                results.append(_status(self.fail_with))
                continue
            if item.AttributeId == AttributeIds.Value:
                access = self._read_attribute(item.NodeId, AttributeIds.AccessLevel)
                level = access.Value.Value if access.Value is not None else None
                if isinstance(level, int) and not level & ua.AccessLevel.CurrentWrite.mask:
                    results.append(_status(StatusCodes.BadNotWritable))
                    continue
            results += await super().write(ua.WriteParameters(NodesToWrite=[item]), user)
        return results


class OpcUaSimulator:
    """An OPC UA server on ``opc.tcp://host:port`` serving the plant model under NAMESPACE_URI."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        interval: float = 0.1,
        extra_namespaces: Sequence[str] = (),
        bulk_variables: int = 0,
        cert_dir: Path | None = None,
        users: Mapping[str, str] | None = None,
        user_certificates: Mapping[str, Path] | None = None,
        policies: Sequence[str] = ("Basic256Sha256",),
    ) -> None:
        """Configure; nothing listens until ``start()``.

        ``cert_dir`` switches to Sign and SignAndEncrypt endpoints of ``policies`` only
        (Basic256Sha256, Aes128Sha256RsaOaep). Logins are anonymous unless ``users``
        (name -> password) or ``user_certificates`` (name -> certificate file, DER or PEM)
        are given; then exactly those users, by password or by certificate, get in.
        """
        if interval <= 0:
            raise ValueError("interval must be positive")
        if bulk_variables < 0:
            raise ValueError("bulk_variables must be >= 0")
        unknown = [p for p in policies if p not in SECURED_ENDPOINTS]
        if unknown or not policies:
            raise ValueError(f"policies: choose from {', '.join(SECURED_ENDPOINTS)}")
        if user_certificates and cert_dir is None:
            # The user token is signed over the server certificate: none, nothing to verify.
            raise ValueError("user_certificates need a secured simulator (cert_dir)")
        self.host = host
        self.port = port
        self.interval = interval
        self.extra_namespaces = list(extra_namespaces)
        self.bulk_variables = bulk_variables
        self.cert_dir = cert_dir
        self.users = dict(users) if users is not None else None
        self.user_certificates = dict(user_certificates or {})
        self.policies = tuple(policies)
        self._bulk_names = bulk_names(bulk_variables)
        self._bulk_set = frozenset(self._bulk_names)
        self._vars = {v.name: v for v in PLANT_VARIABLES}
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._ns = 0
        self._cert_path: Path | None = None
        # Last value written per variable: unchanged values are not rewritten.
        self._last: dict[str, Any] = {}
        self._bad: set[str] = set()
        self._held: dict[str, ua.DataValue] = {}  # held variables' values while they are forced Bad
        self._nodeids: dict[str, ua.NodeId] = {}  # built once: NodeId() is costly per write
        self._tick_no = 0
        self._slice_started = 0.0  # loop time of the last yield while writing
        self._last_clock = -1
        # Ticks and set_bad() both write; the lock keeps a tick from undoing a fault half-way.
        self._lock = asyncio.Lock()
        self.writes: Counter[str] = Counter()  # client Write requests per variable name
        self._gate: _WriteGate | None = None

    @property
    def endpoint(self) -> str:
        """The ``opc.tcp://`` URL clients connect to."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"opc.tcp://{host}:{self.port}"

    @property
    def node_ids(self) -> list[str]:
        """The plant variables as ``nsu=urn:plantgate:sim;s=...`` node ids."""
        return [nsu(v.name) for v in PLANT_VARIABLES]

    @property
    def bulk_node_ids(self) -> list[str]:
        """The ``bulk_variables`` benchmark variables as ``nsu=`` node ids."""
        return [nsu(name) for name in self._bulk_names]

    @property
    def namespace_index(self) -> int:
        """The plant namespace's index in the running server (it moves with extra_namespaces)."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._ns

    @property
    def certificate_path(self) -> Path | None:
        """The server certificate (DER) once a secured simulator has started, else None."""
        return self._cert_path

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._server is not None

    async def start(self) -> None:
        """Build the address space, listen, and start moving the values."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        certificates = await asyncio.to_thread(load_user_certificates, self.user_certificates)
        users = self.users or {}
        manager = PlantUserManager(users, certificates) if users or certificates else None
        server = Server(user_manager=manager)
        await server.init()
        self._gate = _WriteGate(server.iserver, self.writes)
        server.iserver.attribute_service = self._gate
        server.set_endpoint(self.endpoint)
        server.set_server_name("plantgate OPC UA simulator")
        server.product_uri = "urn:plantgate"
        await server.set_application_uri(APPLICATION_URI)
        # asyncua's clock task sleeps 1 s and stop() waits for it; our tick loop keeps
        # CurrentTime fresh instead, so stop/restart is immediate.
        server.disable_clock()
        await self._configure_security(server)
        for uri in self.extra_namespaces:
            await server.register_namespace(uri)
        self._ns = await server.register_namespace(NAMESPACE_URI)
        self._server = server
        # A restart is a fresh plant: injected faults and the write cache start over.
        self._last.clear()
        self._held.clear()
        self._bad.clear()
        self._nodeids.clear()
        self.writes.clear()
        self._last_clock = -1
        try:
            await self._build()
            await self._tick()  # every value has a source timestamp before the first client
            await server.start()
        except BaseException:
            self._server = None
            raise
        self._task = asyncio.create_task(self._run(), name=f"opcua-sim:{self.port}")
        _log.info("OPC UA simulator on %s (ns=%d)", self.endpoint, self._ns)

    async def stop(self) -> None:
        """Stop updating and close the listening socket and every client connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # wait() rather than awaiting the task: it does not swallow our own cancellation.
            await asyncio.wait([task])
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def __aenter__(self) -> OpcUaSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def set_bad(self, node: str, bad: bool = True) -> None:
        """Force a variable's StatusCode to Bad (or back to Good); ``node`` is a name or nsu= id."""
        name = node.split(";s=", 1)[1] if node.startswith("nsu=") else node
        if name not in self._vars and name not in self._bulk_set:
            raise KeyError(f"unknown simulator variable: {node}")
        async with self._lock:
            server = self._require_server()
            nodeid = _node_id(name, self._ns)
            if bad and name not in self._bad:
                self._bad.add(name)
                if self._is_held(name):
                    self._held[name] = server.read_attribute_value(nodeid)
                # asyncua nulls the value of a Bad DataValue, as the spec asks.
                now = _stamp()
                bad_value = ua.DataValue(
                    StatusCode=_status(BAD_STATUS), SourceTimestamp=now, ServerTimestamp=now
                )
                await server.write_attribute_value(nodeid, bad_value)
            elif not bad and name in self._bad:
                self._bad.discard(name)
                self._last.pop(name, None)
                held = self._held.pop(name, None)
                if held is not None:
                    now = _stamp()
                    restored = ua.DataValue(held.Value, SourceTimestamp=now, ServerTimestamp=now)
                    await server.write_attribute_value(nodeid, restored)
                elif name in self._vars:
                    await self._write_values(snapshot())
                else:
                    await self._write_bulk()

    def fail_writes(self, status: int | None) -> None:
        """Answer every client write with this StatusCode (e.g. BadOutOfRange); None: stop."""
        self._require_gate().fail_with = status

    def stall_writes(self, seconds: float) -> None:
        """Hold every client write this long before applying and answering it (0: stop)."""
        self._require_gate().stall = seconds

    def _require_gate(self) -> _WriteGate:
        if self._gate is None:
            raise RuntimeError("simulator not started")
        return self._gate

    def _is_held(self, name: str) -> bool:
        var = self._vars.get(name)
        return var is not None and var.value is None

    def _require_server(self) -> Server:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server

    async def _configure_security(self, server: Server) -> None:
        if self.cert_dir is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            # Key generation and file writes block: keep them off the event loop.
            cert_dir, host = self.cert_dir, self.host
            cert_path, key_path = await asyncio.to_thread(make_certificate, cert_dir, host)
            await server.load_certificate(str(cert_path))
            await server.load_private_key(str(key_path))
            server.set_security_policy([t for p in self.policies for t in SECURED_ENDPOINTS[p]])
            self._cert_path = cert_path
        tokens: list[type] = []
        if self.users:
            tokens.append(ua.UserNameIdentityToken)
        if self.user_certificates:
            tokens.append(ua.X509IdentityToken)
        server.set_identity_tokens(tokens or [ua.AnonymousIdentityToken])

    async def _build(self) -> None:
        server = self._require_server()
        folders: dict[str, Node] = {}

        async def folder_for(path: str) -> Node:
            if not path:
                return server.nodes.objects
            if path not in folders:
                parent_path, _, leaf = path.rpartition(".")
                parent = await folder_for(parent_path)
                folders[path] = await parent.add_folder(
                    _node_id(path, self._ns), ua.QualifiedName(leaf, self._ns)
                )
            return folders[path]

        async def add(name: str, vtype: ua.VariantType, initial: Any, length: int = 0) -> Node:
            parent_path, _, leaf = name.rpartition(".")
            parent = await folder_for(parent_path)
            node = await parent.add_variable(
                _node_id(name, self._ns),
                ua.QualifiedName(leaf, self._ns),
                ua.Variant(initial, vtype),
                datatype=_node_id(vtype.value),  # built-in DataType ids equal VariantType ids
            )
            if length:
                await node.write_value_rank(ua.ValueRank.OneDimension)
                await node.write_attribute(
                    AttributeIds.ArrayDimensions,
                    ua.DataValue(ua.Variant([length], VT.UInt32)),
                )
            return node

        now = snapshot()
        for var in PLANT_VARIABLES:
            initial = var.initial if var.value is None else var.value(now)
            node = await add(var.name, var.vtype, initial, var.array_length)
            if var.writable:
                await node.set_writable()
            if var.value is None:
                held = ua.DataValue(ua.Variant(initial, var.vtype), SourceTimestamp=_stamp())
                await server.write_attribute_value(node.nodeid, held)
        for name in self._bulk_names:
            await add(name, VT.Int32, 0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.interval
            delay = next_at - loop.time()
            if delay < 0:
                # Fell behind (huge bulk set, slow machine): skip the missed ticks and leave
                # the server a full interval to answer clients before writing again.
                next_at = loop.time() + self.interval
                delay = self.interval
            await asyncio.sleep(delay)
            try:
                await self._tick()
            except Exception:
                # One failed write must not freeze the whole plant for the rest of the run.
                _log.exception("OPC UA simulator tick failed")

    async def _tick(self) -> None:
        async with self._lock:
            snap = snapshot()
            self._slice_started = asyncio.get_running_loop().time()
            await self._write_values(snap)
            self._tick_no += 1
            await self._write_bulk()
            await self._update_clock(snap.t)

    async def _write_bulk(self) -> None:
        for i, name in enumerate(self._bulk_names):
            # Distinct per variable and different on every tick, so each one always changes.
            await self._write(name, VT.Int32, (self._tick_no + i) % 2**31)

    async def _write_values(self, snap: PlantSnapshot) -> None:
        for var in PLANT_VARIABLES:
            if var.value is not None:
                await self._write(var.name, var.vtype, var.value(snap))

    async def _write(self, name: str, vtype: ua.VariantType, value: Any) -> None:
        # Only changes are written, so a source timestamp says when the value last changed.
        if name in self._bad or self._last.get(name) == value:
            return
        self._last[name] = value
        nodeid = self._nodeids.get(name)
        if nodeid is None:
            nodeid = self._nodeids[name] = _node_id(name, self._ns)
        # Stamped as the server takes the value, not when the tick began: a write costs ~0.1 ms
        # per monitored item in asyncua, so a tick of thousands would otherwise age its last
        # values by the whole tick before any client could see them.
        now = _stamp()
        await self._require_server().write_attribute_value(
            nodeid, ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=now, ServerTimestamp=now)
        )
        loop = asyncio.get_running_loop()
        if loop.time() - self._slice_started > WRITE_SLICE:
            # Writes never suspend: without a yield the server could neither read requests
            # nor publish until the whole tick is written.
            await asyncio.sleep(0)
            self._slice_started = loop.time()

    async def _update_clock(self, t: float) -> None:
        # Stands in for asyncua's disabled clock task: once a second, like the original.
        if int(t) == self._last_clock:
            return
        self._last_clock = int(t)
        server = self._require_server()
        now = _stamp(t)
        current = server.read_attribute_value(_SERVER_STATUS).Value
        if current is not None and isinstance(current.Value, ua.ServerStatusDataType):
            status = copy.copy(current.Value)
            status.CurrentTime = now
            await server.write_attribute_value(_SERVER_STATUS, ua.DataValue(ua.Variant(status)))
        clock = ua.DataValue(ua.Variant(now, VT.DateTime))
        await server.write_attribute_value(_CURRENT_TIME, clock)


async def serve_opcua(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    cert_dir: Path | None = None,
    users: Mapping[str, str] | None = None,
    user_certificates: Mapping[str, Path] | None = None,
    policies: Sequence[str] = ("Basic256Sha256",),
) -> None:
    """Run the plant OPC UA simulator on ``host:port`` until cancelled; security as in the class."""
    sim = OpcUaSimulator(
        host,
        port,
        cert_dir=cert_dir,
        users=users,
        user_certificates=user_certificates,
        policies=policies,
    )
    await sim.start()
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
