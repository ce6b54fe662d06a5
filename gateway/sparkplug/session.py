"""The edge node's Sparkplug B session: will, births, data, deaths, rebirth, primary host.

One session per broker connection: the NDEATH will carries a ``bdSeq`` that is incremented
for every connection and kept across restarts; the NBIRTH carries the same ``bdSeq``. Every
message of the session (NBIRTH, DBIRTH, NDATA, DDATA, DDEATH) takes the next ``seq``,
0..255 wrapping; NBIRTH is always 0. The specification fixes data messages at QoS 0, so a
buffered batch is released only when a later QoS 1 message (a fence, outside the Sparkplug
namespace) is acknowledged: the broker has read everything sent before it.

A device (a source) is born at every connection and after a rebirth request. A live batch in
which every reading is bad and empty (the runtime's mark of a lost PLC) is followed by a
DDEATH; the next live batch with a reading is preceded by a DBIRTH. A batch that names a
metric the last DBIRTH did not declare is preceded by a new DBIRTH.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from buffer import Buffer, StoredBatch
from buffer.marks import write_durably
from gateway.commands import WriteDesk
from gateway.config import Config
from gateway.errors import BrokerError, MalformedMessage
from gateway.models import Quality, epoch_ms
from gateway.mqtt import MqttLink, Will
from gateway.session import publish_fenced, publish_tracked
from gateway.sparkplug import payloads
from gateway.sparkplug.decode import parse_dcmd, parse_ncmd, parse_state
from gateway.sparkplug.metrics import Aliases, SourceMetrics
from gateway.sparkplug.tagmap import source_metrics
from gateway.sparkplug.topics import MessageType, device_topic, node_topic, state_topic
from gateway.window import InflightWindow

log = logging.getLogger(__name__)


class BdSeq:
    """The birth/death sequence number, incremented per connection and kept in a small file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = -1  # the next connection takes 0 when nothing was kept

    def load(self) -> None:
        """Read the last value used (none: start at 0)."""
        try:
            self.value = int(json.loads(self.path.read_text())["bdSeq"])
        except FileNotFoundError:
            self.value = -1
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("sparkplug: cannot read %s (%s); bdSeq starts at 0", self.path, exc)
            self.value = -1

    def next(self) -> int:
        """The bdSeq for the next connection attempt (the same until one connects)."""
        return (self.value + 1) % 256

    def used(self, bd_seq: int) -> None:
        """A connection was made with this bdSeq: the next one takes the one after."""
        self.value = bd_seq
        try:
            write_durably(self.path, json.dumps({"bdSeq": bd_seq}).encode())
        except OSError as exc:
            log.warning("sparkplug: cannot keep bdSeq in %s: %s", self.path, exc)


class SparkplugSession:
    """The gateway as a Sparkplug B edge node; each source a device, each tag a metric."""

    def __init__(
        self,
        config: Config,
        buffer: Buffer,
        source_states: Callable[[], Mapping[str, str]] = dict,
        desk: WriteDesk | None = None,
    ) -> None:
        sp = config.mqtt.sparkplug
        assert sp.group_id is not None  # the config refuses format sparkplug without it
        self.group = sp.group_id
        self.edge = sp.edge_node_id or config.gateway.name
        self.host = sp.primary_host_id
        self.buffer = buffer
        self.source_states = source_states
        self.fence_topic = f"{config.mqtt.topic_prefix}/_gateway/fence"
        self.aliases = Aliases()  # one numbering for the whole edge node
        self.metrics = {s.name: source_metrics(s, self.aliases) for s in config.sources}
        self.bd_seq = BdSeq(Path(f"{buffer.path}.bdseq"))
        self.bd_seq.load()
        self._bd: int | None = None  # this connection's bdSeq
        self._seq = 0
        self.born: dict[str, bool] = {}
        self.desk = desk
        self.prefix = config.mqtt.topic_prefix
        self.host_online = self.host is None
        self._host_ts = -1  # the newest STATE timestamp seen: older ones are ignored
        self._host_changed = asyncio.Event()
        # One event wakes the pump for all the session acts on: write results, rebirth, host.
        self._attention = desk.ready if desk is not None else asyncio.Event()
        self._dcmds = 0
        self._rebirth = False
        self._births: set[str] = set()  # devices to be born again (a reload changed them)
        self._deaths: set[str] = set()  # devices a reload removed
        self.births = 0  # NBIRTHs sent (metrics, tests)
        self.deaths = 0  # DDEATHs sent

    # -- topics and counters -----------------------------------------------------------------

    def node(self, kind: MessageType) -> str:
        """A node message's topic."""
        return node_topic(self.group, kind, self.edge)

    def device(self, kind: MessageType, source: str) -> str:
        """A device message's topic."""
        return device_topic(self.group, kind, self.edge, source)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    # -- the session protocol ------------------------------------------------------------------

    @property
    def attention(self) -> asyncio.Event:
        """Set when a rebirth, a host's STATE or a write result waits."""
        return self._attention

    def will(self) -> Will:
        """NDEATH with the next bdSeq, QoS 1, not retained."""
        self._bd = self.bd_seq.next()
        return Will(self.node(MessageType.NDEATH), payloads.ndeath(self._bd, epoch_ms()), 1, False)

    def subscriptions(self) -> list[tuple[str, int]]:
        """Node commands (rebirth) and, with a primary host, its STATE."""
        topics = [(self.node(MessageType.NCMD), 1)]
        if self.desk is not None:
            topics.append((f"spBv1.0/{self.group}/DCMD/{self.edge}/+", 1))
        if self.host is not None:
            topics.append((state_topic(self.host), 1))
        return topics

    def received(self, topic: str, payload: bytes) -> None:
        """NCMD (Node Control/Rebirth) and the primary host's STATE."""
        try:
            if topic == self.node(MessageType.NCMD):
                command = parse_ncmd(payload)
                if command.rebirth:
                    log.info("sparkplug: rebirth requested")
                    self._rebirth = True
                    self._host_changed.set()  # wakes a wait for the host, too
                    self._attention.set()
            elif self.desk is not None and topic.startswith(f"spBv1.0/{self.group}/DCMD/"):
                self._dcmd(topic.rsplit("/", 1)[-1], payload)
            elif self.host is not None and topic == state_topic(self.host):
                state = parse_state(payload)
                if state.timestamp < self._host_ts:
                    return  # an older STATE arriving late says nothing about now
                self._host_ts = state.timestamp
                if state.online != self.host_online:
                    log.info(
                        "sparkplug: primary host %s is %s",
                        self.host,
                        "online" if state.online else "offline",
                    )
                self.host_online = state.online
                self._host_changed.set()
                self._attention.set()
        except MalformedMessage as exc:
            log.warning("sparkplug: ignored a message on %s: %s", topic, exc)

    def reconfigure(self, config: Config, born: list[str], gone: list[str]) -> None:
        """Changed and added devices are born again with their new metrics; removed ones die."""
        for source in config.sources:
            if source.name in born:
                self.metrics[source.name] = source_metrics(source, self.aliases)
                self._births.add(source.name)
        self._deaths.update(gone)
        self._attention.set()

    async def ready(self, link: MqttLink) -> None:
        """Wait for the primary host, if one is set, to say it is online."""
        assert self._bd is not None
        self.bd_seq.used(self._bd)  # the broker holds this connection's will now
        if not self.host_online:
            log.info("sparkplug: waiting for primary host %s to be online", self.host)
        while not self.host_online:
            self._host_changed.clear()
            closed = link.closed
            changed: asyncio.Future[Any] = asyncio.ensure_future(self._host_changed.wait())
            await asyncio.wait([changed, closed], return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if closed.done():
                raise BrokerError(f"connection closed: {closed.result()}")

    async def begin(self, link: MqttLink, window: InflightWindow) -> None:
        """NBIRTH and every DBIRTH."""
        await self._birth(link, window)

    async def check(self, link: MqttLink, window: InflightWindow) -> None:
        """A host gone offline ends the session (NDEATH, clean disconnect); a rebirth
        request is answered on the same connection."""
        if not self.host_online:
            await self._die(link, window)
            raise BrokerError(f"primary host {self.host} is offline; waiting for it")
        if self._rebirth:
            await self._birth(link, window)
        if self._births or self._deaths:
            await self._reborn(link, window)
        if self.desk is not None:
            if self._attention.is_set():
                await self.desk.publish(link, window, self.prefix, results=False)
        else:
            self._attention.clear()

    async def send(
        self, link: MqttLink, window: InflightWindow, batch: StoredBatch, historical: bool
    ) -> int:
        """One DDATA per batch, preceded by the DBIRTH it needs and followed by a DDEATH when
        it is the mark of a lost PLC; QoS 0, released by a fence."""
        source = batch.source
        metrics = self.metrics.get(source)
        if metrics is None:  # a source no longer in the tag map: its metrics from its data
            metrics = self.metrics[source] = SourceMetrics(source, self.aliases)
        learnt = metrics.learn(batch.tags.names, batch.values)
        lost = all(q is Quality.BAD for q in batch.qualities) and all(
            v is None for v in batch.values
        )
        born = self.born.get(source, False)
        messages: list[tuple[str, bytes]] = []
        if lost and not historical:
            if born:  # the PLC is lost now: its last (bad) readings, then its death
                messages += [self._ddata(metrics, batch, False), self._ddeath(source)]
            # else: dead already, said by a DDEATH; nothing more to say
        elif historical and not born:
            # History of a device that is dead now: born for it, and dead again after.
            messages += [
                self._dbirth(source),
                self._ddata(metrics, batch, True),
                self._ddeath(source),
            ]
        else:
            if learnt or not born:  # the last DBIRTH does not declare every metric, or none
                messages.append(self._dbirth(source))
            messages.append(self._ddata(metrics, batch, historical))
        await publish_fenced(link, window, messages, self.fence_topic, batch)
        return len(messages)

    def _ddata(
        self, metrics: SourceMetrics, batch: StoredBatch, historical: bool
    ) -> tuple[str, bytes]:
        return (
            self.device(MessageType.DDATA, batch.source),
            payloads.ddata(metrics, batch, self._next_seq(), epoch_ms(), historical),
        )

    async def end(self, link: MqttLink, window: InflightWindow) -> None:
        """NDEATH with this session's bdSeq (a clean DISCONNECT sends no will)."""
        await self._die(link, window)

    # -- births and deaths ---------------------------------------------------------------------

    async def _reborn(self, link: MqttLink, window: InflightWindow) -> None:
        """After a reload: a DDEATH for each removed device, a DBIRTH for each changed one."""
        messages = []
        for source in sorted(self._deaths):
            if self.born.get(source):
                messages.append(self._ddeath(source))
            self.metrics.pop(source, None)
        for source in sorted(self._births):
            messages.append(self._dbirth(source))
        self._births.clear()
        self._deaths.clear()
        for topic, payload in messages:
            link.publish(topic, payload, qos=0, retain=False)
        await publish_tracked(link, window, [(self.fence_topic, b"")], retain=False)

    def _dcmd(self, source: str, payload: bytes) -> None:
        """A DCMD's metrics become write commands (answered on the audit topic)."""
        assert self.desk is not None
        metrics = self.metrics.get(source)
        if metrics is None:
            log.warning("sparkplug: DCMD for %s, which is not a device of this node", source)
            return
        try:
            commands = parse_dcmd(payload, metrics)
        except MalformedMessage as exc:
            log.warning("sparkplug: DCMD for %s refused: %s", source, exc)
            return
        for command in commands:
            self._dcmds += 1
            self.desk.submit_value(source, command.tag, command.value, f"dcmd-{self._dcmds}")

    async def _birth(self, link: MqttLink, window: InflightWindow) -> None:
        """NBIRTH (seq 0), a DBIRTH per source, a DDEATH for each whose PLC is lost now."""
        self._rebirth = False
        self._seq = 0
        assert self._bd is not None
        messages = [(self.node(MessageType.NBIRTH), payloads.nbirth(self._bd, 0, epoch_ms()))]
        self._seq = 1
        states = self.source_states()
        for source in self.metrics:
            messages.append(self._dbirth(source))
            if states.get(source, "connected") != "connected":
                messages.append(self._ddeath(source))
            else:
                self.born[source] = True
        # QoS 0 as the spec says, then one acknowledged message: births are read before data.
        for topic, payload in messages:
            link.publish(topic, payload, qos=0, retain=False)
        await publish_tracked(link, window, [(self.fence_topic, b"")], retain=False)
        self.births += 1
        if self.desk is not None:
            self.desk.connection_lost()  # results in flight on the last connection: again

    def _dbirth(self, source: str) -> tuple[str, bytes]:
        metrics = self.metrics[source]
        readings = self.buffer.latest.readings(source)
        metrics.learn([r.tag for r in readings], [r.value for r in readings])
        current = {r.tag: (r.value, r.quality, r.ts) for r in readings}
        self.born[source] = True
        return (
            self.device(MessageType.DBIRTH, source),
            payloads.dbirth(metrics, current, self._next_seq(), epoch_ms()),
        )

    def _ddeath(self, source: str) -> tuple[str, bytes]:
        self.born[source] = False
        self.deaths += 1
        return (
            self.device(MessageType.DDEATH, source),
            payloads.ddeath(self._next_seq(), epoch_ms()),
        )

    async def _die(self, link: MqttLink, window: InflightWindow) -> None:
        assert self._bd is not None
        death = payloads.ndeath(self._bd, epoch_ms())
        window.track(link.publish(self.node(MessageType.NDEATH), death, qos=1, retain=False))
        await window.wait_empty(2.0)
        await link.disconnect()
