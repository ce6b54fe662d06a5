"""paho-mqtt driven from asyncio: one client object per broker connection, sockets on the loop.

paho makes the connection (TCP and TLS, CONNECT and CONNACK, keepalive, SUBSCRIBE, incoming
messages, DISCONNECT). The two packets of the hot path are ours (``gateway.mqtt_wire``): each
PUBLISH is appended to a buffer that goes out in one write per loop iteration, and what the
broker sends is read here in large chunks, PUBACKs parsed in one pass and every other packet
handed to paho's own handlers. paho's per-message objects and its three ``recv()`` calls per
PUBACK cost more CPU than the rest of the gateway together (issue #16).

That relies on three internals of paho-mqtt 2.2 (pinned in constraints.txt), each used in one
function below and proven by ``tests/unit/test_mqtt_paho.py``, which fails when an upgrade
breaks one: ``Client._packet_queue`` (our bytes join paho's outgoing queue, so one writer
keeps every packet whole and in order), ``Client._in_packet`` with ``Client._packet_handle``
(a packet we read, handled as if paho had read it), and ``Client._last_mid`` (one message id
counter for our PUBLISHes and paho's SUBSCRIBEs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import BrokerNode, MqttConfig
from gateway.errors import BrokerError, BrokerRefused
from gateway.mqtt_wire import MQTT_5, MQTT_311, Malformed, PacketReader, PublishWriter

log = logging.getLogger(__name__)

READ_SIZE = 1 << 18  # bytes read at once: 65,536 PUBACKs
FLUSH_AT = 1 << 18  # bytes of PUBLISHes that go to the socket without waiting for the loop
NO_LIMIT = 65535  # MQTT 5's Receive Maximum when the broker says none


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for us if the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Refusal:
    """A PUBLISH the broker answered with a failure reason code (MQTT 5)."""

    mid: int
    topic: str
    reason: int  # 0x80 and above, e.g. 0x87 not authorized
    text: str  # the reason's name, its code and the broker's reason string, if it gave one


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """What the broker's CONNACK allows this connection (MQTT 5; 3.1.1 says nothing)."""

    receive_maximum: int = NO_LIMIT  # QoS 1 messages in flight at once (the rest are held)
    topic_alias_maximum: int = 0


def reason_text(code: ReasonCode, properties: Properties | None = None) -> str:
    """An MQTT 5 reason code as an error says it: ``Not authorized (0x87): <reason string>``."""
    text = f"{code} (0x{code.value:02X})"
    reason = properties_of(properties).get("ReasonString")
    return f"{text}: {reason}" if reason else text


def properties_of(properties: Properties | None) -> dict[str, Any]:
    """MQTT 5 properties by name (``ReceiveMaximum``...): only those the packet carried."""
    if properties is None:
        return {}
    said: dict[str, Any] = properties.json()  # type: ignore[no-untyped-call]
    return said


def new_properties(packet_type: int) -> Properties:
    """An empty set of MQTT 5 properties for one packet type (paho's class is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


class MqttLink:
    """One connection to the broker. A new link (and paho client) is made for every reconnect,

    so nothing paho kept in memory from an earlier connection is ever re-sent: what was not
    acknowledged is re-sent from the buffer instead.

    ``on_acks`` gets the message ids each read of the socket acknowledged, ``on_refused`` each
    PUBLISH the broker refused (MQTT 5), ``on_message`` what subscriptions bring; all on the
    loop's thread. ``node`` is the broker (node of a cluster) to connect to: default the
    config's first url.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        will: Will,
        on_acks: Callable[[list[int]], None],
        on_refused: Callable[[Refusal], None],
        on_message: Callable[[str, bytes], None] | None = None,
        node: BrokerNode | None = None,
    ) -> None:
        self.cfg = cfg
        self.node = node or cfg.nodes[0]
        self.host, self.port = self.node.host, self.node.port
        self.protocol = MQTT_5 if cfg.mqtt5 else MQTT_311
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._on_acks = on_acks
        self._on_refused = on_refused
        self._on_message = on_message
        self._connack: asyncio.Future[tuple[ReasonCode, Properties | None]] = (
            self._loop.create_future()
        )
        self.closed: asyncio.Future[str] = self._loop.create_future()
        self.limits = BrokerLimits()
        self._subscribed: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._misc: asyncio.Task[None] | None = None
        self._sock: Any = None
        self._reader = PacketReader()
        self._writer = PublishWriter(self.protocol)
        self._out = bytearray()  # PUBLISHes not yet handed to paho's outgoing queue
        self._flush_due = False
        self._mid = 0  # the last message id given out
        self.inflight = 0  # QoS 1 messages sent and not yet answered
        # Messages waiting for the broker's Receive Maximum to allow them, in order (MQTT 5)
        self._held: deque[tuple[str, bytes, int, bool, int]] = deque()
        self._topic_of: list[str] = [""] * 65536  # message id -> topic, to name a refusal
        self.bytes_published = 0  # bytes of PUBLISH packets written on this connection
        self.last_socket_error: str | None = None  # what failed on the socket, if anything
        if cfg.mqtt5:
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=paho.MQTTv5,
                reconnect_on_failure=False,
            )
        else:
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                clean_session=True,
                protocol=paho.MQTTv311,
                # never reconnect by itself (it would block the loop: see _hand_over)
                reconnect_on_failure=False,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_paho_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        configure_client(client, cfg, self.node.tls)
        client.on_log = self._on_log
        self._client = client

    @property
    def where(self) -> str:
        """``host:port`` of this link's broker, for messages."""
        return f"{self.host}:{self.port}"

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the socket (in a thread: paho connects blocking) and wait for the CONNACK."""
        cfg, where = self.cfg, self.where
        args: dict[str, Any] = {}
        if cfg.mqtt5:
            offered = new_properties(PacketTypes.CONNECT)
            if cfg.session_expiry is not None:
                offered.SessionExpiryInterval = round(cfg.session_expiry)
            # A session that outlives its connection is worth resuming; one that does not, not.
            args = {"clean_start": cfg.session_expiry is None, "properties": offered}
        try:
            await asyncio.wait_for(
                self._loop.run_in_executor(
                    None,
                    lambda: self._client.connect(
                        self.host, self.port, round(cfg.keepalive), **args
                    ),
                ),
                timeout,
            )
        except socket.gaierror as exc:
            raise BrokerError(f"broker {where}: cannot resolve host name ({exc.strerror})") from exc
        except ssl.SSLError as exc:
            raise BrokerError(f"broker {where}: {tls_problem(exc, cfg, self.host)}") from exc
        except TimeoutError as exc:
            raise BrokerError(f"broker {where}: no TCP connection within {timeout:.0f}s") from exc
        except OSError as exc:
            raise BrokerError(f"broker {where}: {exc.strerror or exc}") from exc
        self._misc = asyncio.create_task(self._keepalive(), name="mqtt-keepalive")
        try:
            code, properties = await asyncio.wait_for(asyncio.shield(self._connack), timeout)
        except TimeoutError as exc:
            await self.close()
            raise BrokerError(
                f"broker {where}: accepted TCP but sent no CONNACK within {timeout:.0f}s"
            ) from exc
        except BrokerError as exc:  # the connection closed before a CONNACK
            await self.close()
            raise BrokerError(f"broker {where}: {exc}") from exc
        if code.is_failure:
            await self.close()
            said = reason_text(code, properties) if cfg.mqtt5 else str(code)
            raise BrokerRefused(f"broker {where} refused the connection: {said}")
        if cfg.mqtt5:
            allowed = properties_of(properties)
            self.limits = BrokerLimits(
                receive_maximum=allowed.get("ReceiveMaximum", NO_LIMIT),
                topic_alias_maximum=allowed.get("TopicAliasMaximum", 0),
            )
            self._writer = PublishWriter(self.protocol, self.limits.topic_alias_maximum)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Queue one message; returns its message id (0 at QoS 0), matched later by the acks."""
        if self.closed.done():
            raise BrokerError(f"publish failed: the connection is closed ({self.closed.result()})")
        mid = 0
        if qos:
            mid = self._mid = self._mid % 65535 + 1
            self._topic_of[mid] = topic
            if self._held or self.inflight >= self.limits.receive_maximum:
                self._held.append((topic, payload, qos, retain, mid))
                return mid
            self.inflight += 1
        elif self._held:  # behind the held ones: the broker reads them in the order given
            self._held.append((topic, payload, qos, retain, mid))
            return mid
        self._writer.write(self._out, topic, payload, qos, retain, mid)
        if len(self._out) >= FLUSH_AT:
            self._flush()
        elif not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)
        return mid

    async def subscribe(self, topics: Sequence[str], qos: int, timeout: float = 10.0) -> None:
        """Subscribe to ``topics`` (their messages go to ``on_message``); returns once the broker
        granted every one, raises :class:`BrokerRefused` naming those it refused."""
        self._flush()  # what was published before goes before
        client = self._client
        client._last_mid = self._mid  # paho numbers the SUBSCRIBE after our last PUBLISH
        rc, mid = client.subscribe([(topic, qos) for topic in topics])
        self._mid = client._last_mid
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise BrokerError(f"subscribe failed: {paho.error_string(rc)}")
        granted = self._subscribed[mid] = self._loop.create_future()
        try:
            await asyncio.wait(
                [granted, self.closed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self._subscribed.pop(mid, None)
        if not granted.done():
            granted.cancel()
            if self.closed.done():
                raise BrokerError(f"connection closed: {self.closed.result()}")
            raise BrokerError(f"broker {self.where} sent no SUBACK within {timeout:.0f}s")
        refused = [
            f"{topic}: {reason_text(code) if self.cfg.mqtt5 else code}"
            for topic, code in zip(topics, granted.result(), strict=False)
            if code.is_failure
        ]
        if refused:
            raise BrokerRefused(f"broker {self.where} refused to subscribe {'; '.join(refused)}")

    async def disconnect(self) -> None:
        """Say DISCONNECT (so the will is not sent), then close."""
        if not self.closed.done():
            self._flush()
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.closed), 2.0)
        await self.close()

    async def close(self) -> None:
        """Drop the connection without ceremony; never raises."""
        if self._misc is not None:
            self._misc.cancel()
            await asyncio.wait({self._misc})  # never swallows a cancellation of our own
            self._misc = None
        if self._sock is not None:
            self._unwatch(self._sock)
        sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._ended("closed")

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._client.loop_misc()

    # -- the hot path --------------------------------------------------------------------------

    def _flush(self) -> None:
        """Hand the PUBLISHes queued since the last flush to paho's writer, and write now."""
        self._flush_due = False
        if not self._out or self.closed.done():
            return
        data, self._out = self._out, bytearray()
        self.bytes_published += len(data)
        queue_bytes(self._client, data)
        self._client.loop_write()

    def _readable(self) -> None:
        """Read what the broker sent: acks go to ``on_acks`` at once, the rest to paho."""
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(READ_SIZE)
            if isinstance(sock, ssl.SSLSocket):
                # Records TLS already decrypted are not readable to the loop: take them now.
                while (pending := sock.pending()) > 0:
                    data += sock.recv(pending)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as exc:
            self._lost(f"failed to receive on socket: {exc}")
            return
        if not data:
            self._lost("the broker closed the connection")
            return
        try:
            got = self._reader.feed(data)
        except Malformed as exc:
            self._lost(f"protocol error: {exc}")
            return
        answered = len(got.acked) + len(got.refused)
        if answered:
            self.inflight -= answered
            if self._held:
                self._release_held()
        if got.acked:
            self._on_acks(got.acked)
        for mid, reason, properties in got.refused:
            self._refused(mid, reason, properties)
        for first, body in got.other:
            if self.closed.done():
                return
            rc = hand_over(self._client, first, body)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._lost(paho.error_string(rc))

    def _release_held(self) -> None:
        """Send what the Receive Maximum held back, as far as it now allows."""
        held, write, out, allowed = self._held, self._writer.write, self._out, self.limits
        while held and (held[0][2] == 0 or self.inflight < allowed.receive_maximum):
            topic, payload, qos, retain, mid = held.popleft()
            self.inflight += qos
            write(out, topic, payload, qos, retain, mid)
        self._flush()

    def _refused(self, mid: int, reason: int, properties: bytes) -> None:
        said = new_properties(PacketTypes.PUBACK)
        with contextlib.suppress(Exception):  # a reason string we cannot read is no reason
            said.unpack(properties)  # type: ignore[no-untyped-call]
        text = reason_text(ReasonCode(PacketTypes.PUBACK, identifier=reason), said)
        self._on_refused(Refusal(mid, self._topic_of[mid], reason, text))

    def _lost(self, why: str) -> None:
        """The socket failed under our reader: close it, and say why as paho would."""
        self.last_socket_error = why
        if self._sock is not None:
            sock = self._sock
            self._unwatch(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._ended(socket_problem(why, self.cfg) or why)

    def _ended(self, why: str) -> None:
        if not self._connack.done():
            self._connack.set_exception(BrokerError(f"closed before CONNACK: {why}"))
            self._connack.exception()  # retrieved here too: connect() may be gone already
        if not self.closed.done():
            self.closed.set_result(why)

    # -- paho callbacks (loop thread, except socket_open from the connect thread) -------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        code: ReasonCode,
        props: Properties | None,
    ) -> None:
        if not self._connack.done():
            self._connack.set_result((code, props))

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        if flags.is_disconnect_packet_from_server:  # MQTT 5: the broker said why
            why = f"the broker disconnected us: {reason_text(code, props)}"
        else:
            why = socket_problem(self.last_socket_error, self.cfg) or str(code)
        self._ended(why)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        granted = self._subscribed.get(mid)
        if granted is not None and not granted.done():
            granted.set_result(codes)

    def _on_paho_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(msg.topic, bytes(msg.payload))
        except Exception:  # a failing handler must not take the broker connection down
            log.exception("message on %s: its handler failed", msg.topic)

    def _on_log(self, client: paho.Client, userdata: Any, level: int, message: str) -> None:
        # paho says why a socket read or write failed only in its log (e.g. the TLS alert
        # of a broker that wanted a client certificate): keep it for the error we raise.
        if level == paho.MQTT_LOG_ERR and "on socket" in message:
            self.last_socket_error = message

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def watch() -> None:
            if self.closed.done():
                # connect() gave up on this link (timeout) before paho's thread got through:
                # a late socket would log in with our client id and push out the next link.
                with contextlib.suppress(OSError):
                    sock.close()
                return
            self._sock = sock
            with contextlib.suppress(ValueError, OSError):
                self._loop.add_reader(sock, self._readable)

        self._soon(watch)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._soon(lambda: self._unwatch(sock))

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def watch() -> None:
            if self.closed.done():  # nothing is sent on a link that is over (not even CONNECT)
                return
            with contextlib.suppress(ValueError, OSError):  # the socket closed in the meantime
                self._loop.add_writer(sock, client.loop_write)

        self._soon(watch)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def unwatch() -> None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(sock)

        self._soon(unwatch)

    def _soon(self, callback: Callable[[], None]) -> None:
        """Run on the loop's thread; paho may call from the connect thread or a finaliser."""
        if threading.get_ident() == self._loop_thread and not self._loop.is_closed():
            callback()  # already there (a flush, a read): no wake-up of the loop needed
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to watch
            self._loop.call_soon_threadsafe(callback)

    def _unwatch(self, sock: Any) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(sock)
        with contextlib.suppress(Exception):
            self._loop.remove_writer(sock)
        if self._sock is sock:
            self._sock = None


# -- paho 2.2 internals: each proven by tests/unit/test_mqtt_paho.py ---------------------------


def queue_bytes(client: paho.Client, data: bytearray) -> None:
    """Put ready-made packets in paho's outgoing queue, behind what it queued itself.

    Marked QoS 1 so that paho's writer, when it has sent them, neither calls ``on_publish``
    nor looks for a message info (it does both for a QoS 0 PUBLISH of its own).
    """
    client._packet_queue(paho.PUBLISH, data, 0, 1)


def hand_over(client: paho.Client, first: int, body: bytes) -> MQTTErrorCode:
    """Have paho handle one packet we read (CONNACK, SUBACK, PUBLISH, PINGRESP, DISCONNECT...)."""
    client._in_packet = {
        "command": first,
        "have_remaining": 1,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": bytearray(body),
        "to_process": 0,
        "pos": 0,
    }
    try:
        return client._packet_handle()
    except MalformedPacket:
        return MQTTErrorCode.MQTT_ERR_PROTOCOL
    finally:
        client._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(),
            "to_process": 0,
            "pos": 0,
        }


def configure_client(client: paho.Client, cfg: MqttConfig, tls: bool | None = None) -> None:
    """Credentials and TLS exactly as the config says: one set-up for ``run`` and ``tail``
    (``tls``: the node's mqtts://, default the first node's)."""
    if cfg.username is not None:
        try:
            secret = cfg.secret()
        except OSError as exc:  # a password_file gone since validate: say which, retry later
            raise BrokerError(f"cannot read {cfg.password_file}: {exc.strerror or exc}") from exc
        client.username_pw_set(cfg.username, secret)
    if cfg.use_tls if tls is None else tls:
        client.tls_set(
            ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
            certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            cert_reqs=ssl.CERT_NONE if cfg.tls.insecure else ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(cfg.tls.insecure)


# OpenSSL's verify codes that mean "not signed by anything we trust".
_UNTRUSTED = {2, 18, 19, 20, 21, 27}
_NAME_MISMATCH = {62, 64}  # host name, IP address
_EXPIRED = 10


def tls_problem(exc: ssl.SSLError, cfg: MqttConfig, host: str | None = None) -> str:
    """A failed TLS handshake, said in terms of what to fix (``host``: the one connected to)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, detail = exc.verify_code, exc.verify_message
        if code in _NAME_MISMATCH:
            return (
                f"TLS: the broker's certificate is not for host {host or cfg.host!r} (host name "
                f"mismatch: {detail}); use the host name the certificate names"
            )
        if code == _EXPIRED:
            return f"TLS: the broker's certificate has expired ({detail})"
        if code in _UNTRUSTED:
            ca = f"tls.ca_file {cfg.tls.ca_file}" if cfg.tls.ca_file else "the system's CAs"
            return (
                f"TLS: the broker's certificate is not trusted by {ca} ({detail}); set "
                "mqtt.tls.ca_file to the CA that signed it"
            )
        return f"TLS: the broker's certificate was refused ({detail})"
    return socket_problem(str(exc), cfg) or f"TLS handshake failed: {exc.reason or exc}"


def socket_problem(error: str | None, cfg: MqttConfig) -> str | None:
    """A socket error from a TLS connection, said in terms of what to fix (None: unknown)."""
    if not error:
        return None
    text = error.lower()
    if "certificate required" in text or "peer did not return a certificate" in text:
        return (
            "TLS: the broker requires a client certificate; set mqtt.tls.cert_file and key_file"
            if cfg.tls.cert_file is None
            else f"TLS: the broker requires a client certificate and did not take "
            f"{cfg.tls.cert_file}"
        )
    if (
        cfg.use_tls
        and cfg.tls.cert_file is None
        and ("eof occurred in violation of protocol" in text or "connection reset" in text)
    ):
        # The broker hung up during TLS without saying why: what it most often wants is a
        # client certificate (it may send its alert, or only close the socket).
        return (
            "TLS: the broker closed the connection before answering; does it require a client "
            "certificate? (mqtt.tls.cert_file and key_file are not set)"
        )
    if "unknown ca" in text or "bad certificate" in text or "certificate unknown" in text:
        return (
            f"TLS: the broker refused our client certificate {cfg.tls.cert_file} (not signed "
            "by a CA it trusts)"
        )
    return error.removeprefix("failed to receive on socket: ")
