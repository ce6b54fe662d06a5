"""paho-mqtt driven from asyncio: one client object per broker connection, sockets on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import BrokerNode, MqttConfig
from gateway.errors import BrokerError, BrokerRefused

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for us if the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MqttLink:
    """One connection to the broker. A new link (and paho client) is made for every reconnect,

    so nothing paho kept in memory from an earlier connection is ever re-sent: what was not
    acknowledged is re-sent from the buffer instead.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        will: Will,
        on_ack: Callable[[int], None],
        on_message: Callable[[str, bytes], None] | None = None,
        node: BrokerNode | None = None,
    ) -> None:
        self.cfg = cfg
        self.node = node or cfg.nodes[0]
        self._loop = asyncio.get_running_loop()
        self._on_ack = on_ack
        self._on_message = on_message
        self._connack: asyncio.Future[ReasonCode] = self._loop.create_future()
        self.closed: asyncio.Future[str] = self._loop.create_future()
        self._misc: asyncio.Task[None] | None = None
        self._sock: Any = None
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        # Our own window bounds what is in flight, so paho never holds messages back itself:
        # 0 = no paho limit, which also skips its per-PUBACK walk over every message in flight
        # (quadratic with thousands in flight).
        client.max_inflight_messages_set(0)
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        if on_message is not None:
            client.on_message = self._on_paho_message
        configure_client(client, cfg, self.node.tls)
        client.on_log = self._on_log
        self.last_socket_error: str | None = None  # what paho saw fail on the socket, if any
        self._client = client

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the socket (in a thread: paho connects blocking) and wait for the CONNACK."""
        cfg = self.cfg
        node = self.node
        where = str(node)
        try:
            await asyncio.wait_for(
                self._loop.run_in_executor(
                    None, self._client.connect, node.host, node.port, round(cfg.keepalive)
                ),
                timeout,
            )
        except socket.gaierror as exc:
            raise BrokerError(f"broker {where}: cannot resolve host name ({exc.strerror})") from exc
        except ssl.SSLError as exc:
            raise BrokerError(f"broker {where}: {tls_problem(exc, cfg, node.host)}") from exc
        except TimeoutError as exc:
            raise BrokerError(f"broker {where}: no TCP connection within {timeout:.0f}s") from exc
        except OSError as exc:
            raise BrokerError(f"broker {where}: {exc.strerror or exc}") from exc
        self._misc = asyncio.create_task(self._keepalive(), name="mqtt-keepalive")
        try:
            code = await asyncio.wait_for(asyncio.shield(self._connack), timeout)
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
            raise BrokerRefused(f"broker {where} refused the connection: {code}")

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Queue one message; returns its message id (matched later by the ack callback)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerError(f"publish failed: {paho.error_string(info.rc)}")
        return info.mid

    def subscribe(self, topics: list[tuple[str, int]]) -> int:
        """Subscribe (topic filter, QoS) pairs; messages go to ``on_message``. Returns the mid."""
        code, mid = self._client.subscribe(topics)
        if code != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerError(f"subscribe failed: {paho.error_string(code)}")
        return int(mid or 0)

    async def disconnect(self) -> None:
        """Say DISCONNECT (so the will is not sent), then close."""
        if not self.closed.done():
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
        if not self.closed.done():
            self.closed.set_result("closed")

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._client.loop_misc()

    # -- paho callbacks (loop thread, except socket_open from the connect thread) -------------

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        if not self._connack.done():
            self._connack.set_result(code)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        why = socket_problem(self.last_socket_error, self.cfg) or str(code)
        if not self._connack.done():
            self._connack.set_exception(BrokerError(f"closed before CONNACK: {why}"))
            self._connack.exception()  # retrieved here too: connect() may be gone already
        if not self.closed.done():
            self.closed.set_result(why)

    def _on_paho_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        assert self._on_message is not None
        self._on_message(msg.topic, bytes(msg.payload))

    def _on_log(self, client: paho.Client, userdata: Any, level: int, message: str) -> None:
        # paho says why a socket read or write failed only in its log (e.g. the TLS alert
        # of a broker that wanted a client certificate): keep it for the error we raise.
        if level == paho.MQTT_LOG_ERR and "on socket" in message:
            self.last_socket_error = message

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, code: ReasonCode, props: Any
    ) -> None:
        self._on_ack(mid)

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
                self._loop.add_reader(sock, client.loop_read)

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
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to watch
            self._loop.call_soon_threadsafe(callback)

    def _unwatch(self, sock: Any) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(sock)
        with contextlib.suppress(Exception):
            self._loop.remove_writer(sock)
        if self._sock is sock:
            self._sock = None


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
    """A failed TLS handshake, said in terms of what to fix."""
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
