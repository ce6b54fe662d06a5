"""Test helpers: a subscriber that records what the gateway publishes, configs, waiting."""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.app import Gateway
from gateway.config import Config


def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll a condition until it holds or the deadline passes (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def async_wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """The same, for async tests."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


PLANT_T = 1_700_000_000.0  # a fixed plant time keeps plant-driven simulator values exact


def f32(value: float) -> float:
    """``value`` rounded through a 32-bit REAL, as a controller stores it."""
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


@dataclass
class Message:
    """One message as the subscriber saw it."""

    topic: str
    body: Any
    retain: bool
    at: float = 0.0  # epoch ms when it arrived


@dataclass
class SeqRange:
    """The distinct seqs received from one source, and their span."""

    seqs: set[int] = field(default_factory=set)
    lo: int = 0
    hi: int = 0

    def add(self, seqs: list[int]) -> None:
        """Note some received seqs."""
        self.seqs.update(seqs)
        self.lo = min(seqs) if not self.lo else min(self.lo, *seqs)
        self.hi = max(self.hi, *seqs)

    @property
    def missing(self) -> int:
        """Seqs not received between the first and the last received."""
        return (self.hi - self.lo + 1) - len(self.seqs)


@dataclass
class Recorder:
    """A real MQTT subscriber (paho, QoS 1) that keeps every message it receives.

    With ``persistent=True`` it uses a fixed client id and clean_session=False, so the broker
    queues messages for it while it is disconnected, as a historian's subscription would.
    """

    url_port: int
    topic: str
    persistent: bool = True
    client_id: str = "recorder"
    username: str | None = None  # a broker with a password file (and an ACL) wants a user
    password: str | None = None
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    subscribed: threading.Event = field(default_factory=threading.Event)
    _seen: dict[str, SeqRange] = field(default_factory=dict)  # seqs received, per source

    def start(self) -> Recorder:
        """Connect and subscribe; returns once the subscription is acknowledged."""
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=not self.persistent
        )
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async("127.0.0.1", self.url_port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError("recorder could not subscribe")
        return self

    def stop(self) -> None:
        """Disconnect (nothing to do if it never started)."""
        client = getattr(self, "client", None)
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = msg.payload
        source, seqs = None, []
        if isinstance(body, dict) and "/_gateway/" not in msg.topic:
            if "readings" in body:
                source, seqs = msg.topic.rsplit("/", 1)[-1], [r["seq"] for r in body["readings"]]
            elif "seq" in body:
                source, seqs = msg.topic.rsplit("/", 2)[-2], [body["seq"]]
        with self.lock:
            self.messages.append(Message(msg.topic, body, bool(msg.retain), time.time() * 1000))
            if source is not None and seqs:
                seen = self._seen.setdefault(source, SeqRange())
                seen.add(seqs)

    def snapshot(self) -> list[Message]:
        """A copy of the messages so far."""
        with self.lock:
            return list(self.messages)

    def complete_to(self, seq: int, source: str | None = None) -> bool:
        """True once every reading up to ``seq`` arrived, with no gap after the first.

        Kept up to date as messages arrive: tests poll this inside the gateway's own event
        loop, and rebuilding every reading on each poll would starve the gateway under test.
        """
        with self.lock:
            if source is None and len(self._seen) > 1:
                seen = None  # several sources' seqs mixed: the slow, general report
            else:
                seen = self._seen.get(source) if source else next(iter(self._seen.values()), None)
                if seen is None:
                    return False
                return seen.hi >= seq and seen.missing == 0
        report = seq_report(self.readings(source))
        return report["last"] >= seq and report["missing"] == 0

    def readings(self, source: str | None = None) -> list[dict[str, Any]]:
        """Every reading received (per_tag and per_batch layouts), with its tag name."""
        out = []
        for m in self.snapshot():
            if "/_gateway/" in m.topic or not isinstance(m.body, dict):
                continue
            if "readings" in m.body:
                src = m.topic.rsplit("/", 1)[-1]
                if source in (None, src):
                    out.extend(
                        {
                            **r,
                            "source": src,
                            "historical": m.body.get("historical", False),
                            "at": m.at,
                        }
                        for r in m.body["readings"]
                    )
            elif "seq" in m.body:
                src, tag = m.topic.rsplit("/", 2)[-2:]
                if source in (None, src):
                    out.append(
                        {**m.body, "tag": tag, "source": src, "retained": m.retain, "at": m.at}
                    )
        return out


def seq_report(readings: list[dict[str, Any]]) -> dict[str, int]:
    """Received, distinct, duplicates and missing seqs (between the first and last seen)."""
    seqs = [r["seq"] for r in readings]
    distinct = set(seqs)
    if not distinct:
        return {"received": 0, "distinct": 0, "duplicates": 0, "missing": 0, "first": 0, "last": 0}
    lo, hi = min(distinct), max(distinct)
    return {
        "received": len(seqs),
        "distinct": len(distinct),
        "duplicates": len(seqs) - len(distinct),
        "missing": (hi - lo + 1) - len(distinct),
        "first": lo,
        "last": hi,
    }


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a config dict as YAML."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def gateway_config(
    tmp: Path,
    broker_port: int,
    modbus_port: int,
    *,
    tags: list[dict[str, Any]] | None = None,
    **mqtt: Any,
) -> dict[str, Any]:
    """A config against the test broker and Modbus simulator."""
    return {
        "gateway": {
            "name": "test-edge",
            "buffer": {"path": str(tmp / "buffer.db")},
            "metrics_interval": "1s",
        },
        "mqtt": {"url": f"mqtt://127.0.0.1:{broker_port}", "topic_prefix": "t/line", **mqtt},
        "sources": [
            {
                "name": "press1",
                "protocol": "modbus",
                "host": "127.0.0.1",
                "port": modbus_port,
                "scan": "100ms",
                "backoff_max": "1s",
                "tags": tags
                or [
                    {"name": "counter", "address": "holding:0", "report": "always"},
                    {
                        "name": "sine",
                        "address": "holding:10",
                        "type": "float32",
                        "report": "always",
                    },
                ],
            }
        ],
    }


@asynccontextmanager
async def running(config: dict[str, Any] | Config) -> AsyncIterator[Gateway]:
    """Run a gateway in this event loop; stop it cleanly (as SIGTERM would) on exit."""
    import asyncio

    gateway = Gateway(config if isinstance(config, Config) else Config.model_validate(config))
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await asyncio.wait_for(gateway.started.wait(), 10)
    try:
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
