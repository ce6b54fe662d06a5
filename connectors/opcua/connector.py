"""OPC UA connector on asyncua: bulk reads when polling, monitored items when subscribing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from connectors.base import Connector, Deliver, Subscriber, Writer
from connectors.opcua.config import OpcUaSource, OpcUaTag
from connectors.opcua.datatypes import TYPE_ATTRIBUTES, VariableType, variable_type, variant
from connectors.opcua.nodeid import NodeRef
from connectors.opcua.resolve import UnknownNamespace, node_id, resolve
from connectors.opcua.security import apply_security, describe_user_certificate
from connectors.opcua.values import to_sample
from gateway.errors import ConnectionLost, DeviceError, SourceError, WriteUnconfirmed
from gateway.models import BAD_SAMPLE, Quality, Sample, Value
from gateway.writes import PlcType

log = logging.getLogger(__name__)

SC = StatusCodes
# Service results that mean the session or channel is gone, not that one request was refused.
SESSION_LOST = frozenset(
    {
        SC.BadSessionIdInvalid,
        SC.BadSessionClosed,
        SC.BadSessionNotActivated,
        SC.BadSecureChannelIdInvalid,
        SC.BadSecureChannelClosed,
        SC.BadConnectionClosed,
        SC.BadServerHalted,
        SC.BadShutdown,
        SC.BadTimeout,
        SC.BadRequestTimeout,
        SC.BadCommunicationError,
        SC.BadNotConnected,
        SC.BadServerNotConnected,
        SC.BadTooManySessions,
        SC.BadNoSubscription,
        SC.BadSubscriptionIdInvalid,
    }
)
_SERVER_STATE = node_id(ObjectIds.Server_ServerStatus_State)
_START_TIME = node_id(ObjectIds.Server_ServerStatus_StartTime)
_NAMESPACES = node_id(ObjectIds.Server_NamespaceArray)
_UNKNOWN_NAMESPACE = "BadNamespaceUnknown"  # our name for a tag whose nsu= URI is missing


class Refused(DeviceError):
    """The server refused one request with a Bad service result; the session lives."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def boundary(what: str, refusals: bool = True) -> Iterator[None]:
    """Translate asyncua and socket errors into the gateway's; CancelledError passes untouched.

    With ``refusals=False`` a refused request counts as a lost connection too: for a
    subscription, which has no way to report "this request failed" other than ending.
    """
    try:
        yield
    except SourceError:
        raise
    except UaStatusCodeError as exc:
        name = ua.StatusCode(exc.code).name
        if exc.code in SESSION_LOST or not refusals:
            raise ConnectionLost(f"{what}: {name}") from exc
        raise Refused(f"{what}: {name}", name) from exc
    except TimeoutError as exc:
        raise ConnectionLost(f"{what}: no answer in time") from exc
    except Exception as exc:  # UaError, OSError and whatever else the stack raises
        raise ConnectionLost(f"{what}: {exc or type(exc).__name__}") from exc


def chunks(items: list[tuple[int, ua.NodeId]], size: int) -> Iterator[list[tuple[int, ua.NodeId]]]:
    """Split (index, node) pairs into runs of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_request(nodes: Sequence[ua.NodeId]) -> ua.ReadParameters:
    """One Read service call for the Value of many nodes, with both timestamps."""
    params = ua.ReadParameters()
    params.MaxAge = 0  # a poll wants the value now, not a server-side cache entry
    params.TimestampsToReturn = ua.TimestampsToReturn.Both
    params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=AttributeIds.Value) for n in nodes]
    return params


@dataclass(frozen=True, slots=True)
class OpcUaPlan:
    """How one scan's tags are polled in this session: its Read requests, made once."""

    size: int  # tags in the scan
    # Each Read request (at most max_nodes_per_read nodes) and the scan indices of its nodes.
    reads: tuple[tuple[ua.ReadParameters, tuple[int, ...]], ...]
    unresolved: tuple[int, ...]  # tags whose nsu= namespace the server does not have


def _bad(status: str) -> Sample:
    return Sample(None, Quality.BAD, reason=status)


class OpcUaConnector:
    """One session to one OPC UA server; reads tags in bulk or monitors them.

    A tag whose value comes with a status that is not Good has that status name as its reason
    (``BadNodeIdUnknown``; ``BadNamespaceUnknown`` for an ``nsu=`` URI the server lacks).
    """

    def __init__(self, source: OpcUaSource) -> None:
        self.source = source
        self.client: Client | None = None
        self.namespaces: list[str] = []
        self.read_requests = 0  # Read service calls sent, for tests and metrics
        self.write_requests = 0  # Write service calls sent
        self._types: dict[NodeRef, VariableType] = {}  # writable tags' types, learned at connect
        self.subscription_id: int | None = None  # the live subscription's id, for diagnostics
        self._start_time: datetime | None = None
        self._nodes: dict[NodeRef, ua.NodeId | None] = {}  # resolved at every connect
        self._lost = asyncio.Event()
        self._lost_reason = ""

    async def connect(self) -> None:
        """Open the session and resolve every ``nsu=`` node id against the server's namespaces."""
        await self.close()
        src = self.source
        client = Client(src.url, timeout=src.timeout, watchdog_intervall=src.watchdog)
        client.name = client.description = f"plantgate {src.name}"
        client.product_uri = "urn:plantgate"
        client.session_timeout = int(src.session_timeout * 1000)
        client.connection_lost_callback = self._on_connection_lost
        self._lost = asyncio.Event()
        try:
            with boundary(f"cannot connect to {src.url}"):
                async with asyncio.timeout(src.connect_timeout):
                    await apply_security(client, src)
                    await client.connect()
                    results = await client.uaclient.session.read(
                        read_request([_NAMESPACES, _START_TIME])
                    )
        except SourceError as exc:
            await _abandon(client)
            explained = _explain(str(exc), src, client)
            if isinstance(exc, ConnectionLost) and explained == str(exc):
                raise  # e.g. UntrustedServer: its message says what to do already
            raise ConnectionLost(explained) from exc
        except BaseException:
            await _abandon(client)
            raise
        namespaces = results[0].Value.Value if results[0].Value is not None else None
        self.namespaces = [str(uri) for uri in namespaces or []]
        self._start_time = results[1].Value.Value if results[1].Value is not None else None
        self.client = client
        self._nodes.clear()
        self._resolve_all(src.tags)
        try:
            await self._learn_types(client, [tag for tag in src.tags if tag.writable])
        except BaseException:
            await self.close()
            raise

    @property
    def subscribes(self) -> bool:
        """True when the source monitors its tags (``subscribe: true``) rather than polls."""
        return self.source.subscribe

    def plan(self, tags: Sequence[OpcUaTag]) -> OpcUaPlan:
        """The Read requests for the tags' nodes, as this session's namespaces number them."""
        wanted = [(i, node) for i, tag in enumerate(tags) if (node := self._node(tag)) is not None]
        reads = tuple(
            (read_request([node for _, node in chunk]), tuple(i for i, _ in chunk))
            for chunk in chunks(wanted, self.source.max_nodes_per_read)
        )
        unresolved = tuple(i for i, tag in enumerate(tags) if self._node(tag) is None)
        return OpcUaPlan(len(tags), reads, unresolved)

    async def read(self, plan: OpcUaPlan) -> list[Sample]:
        """Read the plan's tags' values: one Read call per ``max_nodes_per_read`` nodes."""
        client = self._connected()
        samples: list[Sample] = [BAD_SAMPLE] * plan.size
        unknown = _bad(_UNKNOWN_NAMESPACE)
        for i in plan.unresolved:
            samples[i] = unknown
        # A plan's requests are sent as they are, every scan: asyncua only serialises them.
        for params, indices in plan.reads:
            self.read_requests += 1
            try:
                with boundary(f"{self.source.url}: read"):
                    results = await client.uaclient.session.read(params)
            except Refused as exc:  # this request failed; the other chunks may pass
                refused = _bad(exc.status)
                for i in indices:
                    samples[i] = refused
                continue
            for i, data in zip(indices, results, strict=False):
                samples[i] = to_sample(data)
        return samples

    async def subscribe(self, tags: Sequence[OpcUaTag], deliver: Deliver) -> None:
        """Monitor the tags and deliver their changes until the session or subscription dies."""
        client = self._connected()
        src = self.source
        monitor = _Monitor(src.name, tags, deliver, self._signal_lost)
        publishing = src.publishing(tags)
        keepalive = max(1, math.ceil(src.watchdog / publishing))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=publishing * 1000,
            RequestedMaxKeepAliveCount=keepalive,
            # The server keeps an orphaned subscription about as long as the session.
            RequestedLifetimeCount=max(3 * keepalive, math.ceil(src.session_timeout / publishing)),
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        session = client.uaclient.session
        with boundary(f"{src.url}: subscribe", refusals=False):
            created = await session.create_subscription(params, monitor.on_publish)
            self.subscription_id = int(created.SubscriptionId)
            monitor.set_stale_after(
                3
                * max(
                    created.RevisedPublishingInterval / 1000 * created.RevisedMaxKeepAliveCount,
                    src.watchdog,
                )
            )
            wanted = [
                (i, node) for i, tag in enumerate(tags) if (node := self._node(tag)) is not None
            ]
            failed: list[tuple[int, str]] = [
                (i, _UNKNOWN_NAMESPACE) for i, tag in enumerate(tags) if self._node(tag) is None
            ]
            for chunk in chunks(wanted, src.max_nodes_per_read):
                request = ua.CreateMonitoredItemsParameters(
                    SubscriptionId=created.SubscriptionId,
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                    ItemsToCreate=[self._item(i, tags[i], node) for i, node in chunk],
                )
                results = await session.create_monitored_items(request)
                failed += [
                    (i, r.StatusCode.name)
                    for (i, _), r in zip(chunk, results, strict=False)
                    if not r.StatusCode.is_good()
                ]
        monitor.fail(failed)
        await self._watch(client, monitor)

    def plc_type(self, tag: OpcUaTag) -> PlcType | None:
        """The variable's type for the write rules, as its DataType said at the last connect."""
        kind = self._types.get(tag.node)
        return kind.plc if kind is not None else None

    async def write(self, tag: OpcUaTag, value: Value) -> None:
        """Write a value the write rules accepted as the variable's Value, once.

        A Bad StatusCode raises DeviceError carrying its name (``BadNotWritable``); no answer
        in time raises WriteUnconfirmed. Only the value is sent, without StatusCode or
        timestamps, which many servers refuse to have written.
        """
        client = self._connected()
        node = self._node(tag)
        kind = self._types.get(tag.node)
        if node is None or kind is None:
            raise DeviceError(f"{tag.name}: its DataType is not known; check_write refuses this")
        item = ua.WriteValue(
            NodeId=node,
            AttributeId=AttributeIds.Value,
            Value=ua.DataValue(variant(kind, value), StatusCode=None),
        )
        params = ua.WriteParameters(NodesToWrite=[item])
        self.write_requests += 1
        try:
            with boundary(f"{self.source.url}: write {tag.name}"):
                try:
                    [status] = await client.uaclient.session.write(params)
                except TimeoutError as exc:
                    raise WriteUnconfirmed(
                        f"{tag.name}: no answer to the write in {self.source.timeout:g} s; "
                        "it may have been applied (read it back)"
                    ) from exc
        except ConnectionLost as exc:
            raise ConnectionLost(f"{exc} (writing {tag.name}: it may have been applied)") from exc
        if not status.is_good():
            raise Refused(f"{tag.name}: write refused: {status.name}", status.name)

    async def read_back(self, tag: OpcUaTag) -> Sample:
        """Read one variable's Value now (outside any subscription), to confirm a write."""
        client = self._connected()
        node = self._node(tag)
        if node is None:
            raise DeviceError(f"{tag.name}: {_UNKNOWN_NAMESPACE}")
        self.read_requests += 1
        with boundary(f"{self.source.url}: read {tag.name}"):
            [data] = await client.uaclient.session.read(read_request([node]))
        if data.StatusCode is not None and data.StatusCode.is_bad():
            raise Refused(f"{tag.name}: read refused: {data.StatusCode.name}", data.StatusCode.name)
        return to_sample(data)

    async def _learn_types(self, client: Client, tags: Sequence[OpcUaTag]) -> None:
        """Read the writable tags' DataType, ValueRank and ArrayDimensions: once a session."""
        self._types.clear()
        wanted = [(i, node) for i, tag in enumerate(tags) if (node := self._node(tag)) is not None]
        per_read = max(1, self.source.max_nodes_per_read // len(TYPE_ATTRIBUTES))
        unknown: list[str] = []
        for chunk in chunks(wanted, per_read):
            params = ua.ReadParameters()
            params.NodesToRead = [
                ua.ReadValueId(NodeId=node, AttributeId=attr)
                for _, node in chunk
                for attr in TYPE_ATTRIBUTES
            ]
            self.read_requests += 1
            try:
                with boundary(f"{self.source.url}: read the writable tags' DataTypes"):
                    results = await client.uaclient.session.read(params)
            except Refused as exc:
                unknown += [f"{tags[i].name} ({exc.status})" for i, _ in chunk]
                continue
            width = len(TYPE_ATTRIBUTES)
            for k, (i, _) in enumerate(chunk):
                kind = variable_type(*results[width * k : width * (k + 1)])
                if kind is None:
                    unknown.append(tags[i].name)
                else:
                    self._types[tags[i].node] = kind
        if unknown:
            # Said once a connect: their commands are refused (type) until a DataType is known.
            log.warning(
                "%s: no DataType for writable tag(s), writes refused: %s",
                self.source.name,
                ", ".join(unknown),
            )

    async def close(self) -> None:
        """End the session (deleting its subscriptions); never raises."""
        client, self.client = self.client, None
        if client is not None:
            await _abandon(client, self.source.timeout)

    def _item(self, index: int, tag: OpcUaTag, node: ua.NodeId) -> ua.MonitoredItemCreateRequest:
        params = ua.MonitoringParameters(
            ClientHandle=index,
            SamplingInterval=self.source.sampling_for(tag) * 1000,
            QueueSize=self.source.queue_size,
            DiscardOldest=True,
        )
        if tag.deadband_type is not None and tag.deadband > 0:
            kind = (
                ua.DeadbandType.Absolute
                if tag.deadband_type == "absolute"
                else ua.DeadbandType.Percent
            )
            params.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=kind,
                DeadbandValue=tag.deadband,
            )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=params,
        )

    async def _watch(self, client: Client, monitor: _Monitor) -> None:
        """The watchdog: wake on loss at once, else every ``watchdog`` prove the server is alive."""
        src = self.source
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), src.watchdog)
            if self._lost.is_set():
                raise ConnectionLost(f"{src.url}: {self._lost_reason}")
            if client.uaclient.state is not UaClientState.CONNECTED:
                raise ConnectionLost(f"{src.url}: connection lost")
            with boundary(f"{src.url}: watchdog", refusals=False):
                results = await client.uaclient.session.read(
                    read_request([_SERVER_STATE, _START_TIME])
                )
            state = results[0].Value.Value if results[0].Value is not None else None
            if results[0].StatusCode is not None and not results[0].StatusCode.is_good():
                raise ConnectionLost(
                    f"{src.url}: server status unreadable: {results[0].StatusCode.name}"
                )
            if state != ua.ServerState.Running:
                raise ConnectionLost(f"{src.url}: server state is {_state_name(state)}")
            started = results[1].Value.Value if results[1].Value is not None else None
            if self._start_time is not None and started != self._start_time:
                raise ConnectionLost(f"{src.url}: the server restarted at {started}")
            silent = monitor.silent_for()
            if silent > monitor.stale_after:
                raise ConnectionLost(
                    f"{src.url}: the subscription stopped publishing (silent for {silent:.1f} s)"
                )

    def _connected(self) -> Client:
        client = self.client
        if client is not None and self._lost.is_set():
            raise ConnectionLost(f"{self.source.url}: {self._lost_reason}")
        if client is None or client.uaclient.state is not UaClientState.CONNECTED:
            raise ConnectionLost(f"not connected to {self.source.url}")
        return client

    def _node(self, tag: OpcUaTag) -> ua.NodeId | None:
        if tag.node not in self._nodes:
            self._resolve_all([tag])
        return self._nodes[tag.node]

    def _resolve_all(self, tags: Sequence[OpcUaTag]) -> None:
        """Map node ids to the server's current namespace indices; unknown URIs mark tags bad."""
        for tag in tags:
            try:
                self._nodes[tag.node] = resolve(tag.node, self.namespaces)
            except UnknownNamespace:
                self._nodes[tag.node] = None

    async def _on_connection_lost(self, exc: Exception) -> None:
        self._signal_lost(f"connection lost: {exc}")

    def _signal_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()


class _Monitor:
    """The receiving end of one subscription: publish responses become deliver() calls."""

    def __init__(
        self,
        source: str,
        tags: Sequence[OpcUaTag],
        deliver: Deliver,
        lost: Callable[[str], None],
    ) -> None:
        self.source = source
        self.tags = tags
        self.deliver = deliver
        self.lost = lost
        self.stale_after = math.inf
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()

    def set_stale_after(self, seconds: float) -> None:
        """Silence (no data, no keep-alive) after which the subscription counts as dead."""
        self.stale_after = seconds
        self._last = self._loop.time()

    def silent_for(self) -> float:
        """Seconds since the last publish response."""
        return self._loop.time() - self._last

    def fail(self, failed: list[tuple[int, str]]) -> None:
        """Tags that cannot be monitored: bad at once with their status, the rest run on."""
        if failed:
            self.deliver([(i, _bad(status)) for i, status in failed])

    def on_publish(self, result: ua.PublishResult) -> None:
        """Called by asyncua's publish loop: one notification message, one deliver() call."""
        self._last = self._loop.time()
        changes: list[tuple[int, Sample]] = []
        for notification in result.NotificationMessage.NotificationData or []:
            if isinstance(notification, ua.DataChangeNotification):
                for item in notification.MonitoredItems:
                    index = int(item.ClientHandle)
                    if 0 <= index < len(self.tags):
                        changes.append((index, to_sample(item.Value)))
            elif isinstance(notification, ua.StatusChangeNotification):
                self.lost(f"subscription status {notification.Status.name}")
        if changes:
            try:
                self.deliver(changes)
            except Exception:
                log.exception("%s: delivering %d change(s) failed", self.source, len(changes))


def _state_name(state: object) -> str:
    try:
        return ua.ServerState(state).name  # type: ignore[arg-type]
    except ValueError:
        return str(state)


def _explain(message: str, source: OpcUaSource, client: Client) -> str:
    """Turn the status names that block a session into what to do about them."""
    user_cert = client.user_certificate if source.user_cert_file is not None else None
    if "BadCertificate" in message or "BadSecurityChecksFailed" in message:
        if user_cert is not None:
            return (
                f"{message} (the server refused our client certificate or the user certificate "
                f"{source.user_cert_file} ({describe_user_certificate(user_cert)}): "
                "trust them on the server)"
            )
        return f"{message} (the server refused our client certificate: trust it on the server)"
    if "BadUserAccessDenied" in message or "BadIdentityToken" in message:
        if user_cert is not None:
            return (
                f"{message} (the server refused {source.identity} "
                f"({describe_user_certificate(user_cert)}): it must be registered as a user "
                "on the server)"
            )
        return f"{message} (the server refused {source.identity})"
    return message


async def _abandon(client: Client, timeout: float = 2.0) -> None:
    """Close a session politely if the transport lives, else just drop it; never raises."""
    try:
        if client.uaclient.state is UaClientState.CONNECTED:
            await asyncio.wait_for(client.disconnect(), timeout)
        else:
            # No goodbye over a dead transport: just stop asyncua's background tasks.
            await asyncio.wait_for(client.close_session(), timeout)
    except Exception as exc:
        log.debug("closing the session to %s: %r", client.server_url.geturl(), exc)
    finally:
        # asyncua leaves its publish loop retrying forever when the socket was already gone.
        task = getattr(client.uaclient.session, "_publish_task", None)
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
        client.disconnect_socket()


if TYPE_CHECKING:  # the contract, checked by mypy
    _connector: type[Connector[OpcUaTag, OpcUaPlan]] = OpcUaConnector
    _subscriber: type[Subscriber[OpcUaTag]] = OpcUaConnector
    _writer: type[Writer[OpcUaTag]] = OpcUaConnector
