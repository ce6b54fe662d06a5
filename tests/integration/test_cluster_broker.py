"""The failover test bed: a real aedes cluster, proven to lose nothing on its own.

Plain paho clients, no gateway: a QoS 1 publisher on one node that remembers which messages
the broker acknowledged, a persistent QoS 1 subscriber on another, and nodes killed with
SIGKILL mid-stream. The last tests pin down what the gateway's failover must expect of the
cluster: takeovers of a client id across nodes, and the wills of a killed node's clients.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from simulators.broker import Mosquitto
from simulators.cluster import AedesCluster
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

TOPIC = "t/cluster/press1/counter"
MARKER = "t/cluster/marker"  # published after a kill: once it arrives, the stream has drained


@dataclass
class Tally:
    """What a publisher's node acknowledged before it died, and what reached the subscriber."""

    acknowledged: int
    received: int
    lost: int  # acknowledged, never received
    duplicates: int


class SeqPublisher:
    """A QoS 1 publisher on one node that knows which seqs the broker acknowledged (PUBACK)."""

    def __init__(self, port: int, client_id: str = "line1-edge", inflight: int = 1000) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(inflight)
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.client.on_publish = self._on_publish
        self.acks = 0  # PUBACKs received so far
        self.sent: list[tuple[int, paho.MQTTMessageInfo]] = []
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "publisher could not connect"

    def _on_publish(
        self, client: paho.Client, userdata: object, mid: int, rc: ReasonCode, props: object
    ) -> None:
        self.acks += 1

    def publish(self, count: int) -> None:
        """Queue ``count`` messages, seq 1 to ``count``; paho sends them as acks come back."""
        for seq in range(1, count + 1):
            info = self.client.publish(TOPIC, json.dumps({"seq": seq}), qos=1)
            self.sent.append((seq, info))

    def acknowledged(self) -> set[int]:
        """The seqs whose PUBACK arrived."""
        return {seq for seq, info in self.sent if info.is_published()}

    def stop(self) -> None:
        """Stop the network loop (its node may be dead: no goodbye needed)."""
        self.client.disconnect()
        self.client.loop_stop()


class SeqSubscriber:
    """A persistent QoS 1 subscriber (clean_session=False) that can move from node to node."""

    def __init__(self, client_id: str = "historian") -> None:
        self.client_id = client_id
        self.seqs: Counter[int] = Counter()
        self.markers = 0
        self.lock = threading.Lock()
        self.client: paho.Client | None = None
        self.gone = threading.Event()

    def connect(self, port: int) -> bool:
        """Connect to the node on ``port`` and subscribe; return the CONNACK's session present."""
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False
        )
        subscribed, present = threading.Event(), []

        def on_connect(
            c: paho.Client, u: object, flags: paho.ConnectFlags, rc: ReasonCode, p: object
        ) -> None:
            present.append(flags.session_present)
            c.subscribe("t/cluster/#", qos=1)

        client.on_connect = on_connect
        client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        client.on_message = self._on_message
        client.on_disconnect = lambda c, u, f, rc, p: self.gone.set()
        self.gone.clear()
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        self.client = client
        assert subscribed.wait(10), "subscriber could not subscribe"
        return bool(present[0])

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            if msg.topic == MARKER:
                self.markers += 1
            else:
                self.seqs[json.loads(msg.payload)["seq"]] += 1

    def received(self) -> set[int]:
        """The distinct seqs received so far."""
        with self.lock:
            return set(self.seqs)

    def duplicates(self) -> int:
        """Messages received more than once (allowed: delivery is at least once)."""
        with self.lock:
            return sum(self.seqs.values()) - len(self.seqs)

    def drop(self) -> None:
        """Forget the connection without a DISCONNECT (its node died)."""
        if self.client is not None:
            self.client.loop_stop()
            self.client = None

    def stop(self) -> None:
        """Disconnect; the session stays on the cluster."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


def drain(cluster: AedesCluster, node: int, subscriber: SeqSubscriber) -> None:
    """Publish a marker from ``node`` and wait for it: what was routed before it has arrived."""
    before = subscriber.markers
    marker = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"marker-{time.monotonic_ns()}")
    marker.connect("127.0.0.1", cluster.port(node))
    marker.loop_start()
    marker.publish(MARKER, b"end", qos=1).wait_for_publish(10)
    marker.disconnect()
    marker.loop_stop()
    wait_until(lambda: subscriber.markers > before, 30, "the marker to reach the subscriber")


def lost(acked: set[int], subscriber: SeqSubscriber, timeout: float = 5) -> set[int]:
    """The acknowledged seqs the subscriber has not received, once they had time to arrive."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: acked <= subscriber.received(), timeout, "every acknowledged message")
    return acked - subscriber.received()


def stream(cluster: AedesCluster, count: int) -> tuple[SeqPublisher, SeqSubscriber]:
    """A subscriber on node 1, and a publisher on node 0 queueing ``count`` messages to it."""
    subscriber = SeqSubscriber()
    subscriber.connect(cluster.port(1))
    publisher = SeqPublisher(cluster.port(0))
    publisher.publish(count)
    return publisher, subscriber


def tally(cluster: AedesCluster, publisher: SeqPublisher, subscriber: SeqSubscriber) -> Tally:
    """After node 0 died: how many messages it acknowledged, and how many of those got lost."""
    publisher.stop()
    acked = publisher.acknowledged()
    drain(cluster, 2, subscriber)
    return Tally(
        len(acked),
        len(subscriber.received()),
        len(lost(acked, subscriber)),
        subscriber.duplicates(),
    )


@pytest.mark.slow
def test_a_killed_node_loses_nothing_it_acknowledged(aedes_cluster: AedesCluster) -> None:
    publisher, subscriber = stream(aedes_cluster, 20_000)
    try:
        wait_until(lambda: publisher.acks >= 3_000, 30, "3,000 PUBACKs")
        aedes_cluster.kill(0)
        result = tally(aedes_cluster, publisher, subscriber)
    finally:
        subscriber.stop()
    print("\nkill -9 of the publisher's node:", result)
    assert 3_000 <= result.acknowledged < 20_000  # the kill cut the stream in the middle
    assert result.lost == 0, f"acknowledged, then lost: {result}"


@pytest.mark.slow
def test_the_loss_check_catches_stock_aedes(tmp_path: Path) -> None:
    """Stock aedes acknowledges before it stores: with its store frozen, killed, it loses."""
    with AedesCluster(tmp_path / "stock", nodes=3, stock_puback=True) as cluster:
        subscriber = SeqSubscriber()
        subscriber.connect(cluster.port(1))
        publisher = SeqPublisher(cluster.port(0))
        try:
            cluster.redis.pause()  # nothing can be stored or routed from now on
            publisher.publish(1_000)
            wait_until(lambda: publisher.acks > 0, 10, "a PUBACK while the store is frozen")
            cluster.kill(0)
            cluster.redis.resume()
            result = tally(cluster, publisher, subscriber)
        finally:
            subscriber.stop()
    print("\nkill -9 of the publisher's node, stock aedes, store frozen:", result)
    assert result.acknowledged > 0
    assert result.lost == result.acknowledged


@pytest.mark.slow
def test_a_persistent_session_survives_its_node_dying(aedes_cluster: AedesCluster) -> None:
    subscriber = SeqSubscriber()
    subscriber.connect(aedes_cluster.port(1))
    publisher = SeqPublisher(aedes_cluster.port(0))
    try:
        publisher.publish(10_000)
        wait_until(lambda: len(subscriber.received()) >= 2_000, 30, "2,000 messages received")
        aedes_cluster.kill(1)
        assert subscriber.gone.wait(10), "the subscriber did not notice its node dying"
        subscriber.drop()
        before = subscriber.received()
        wait_until(lambda: publisher.acks == 10_000, 60, "every PUBACK")
        acked = publisher.acknowledged()
        assert acked - before, "nothing was published while the subscriber was away"

        assert subscriber.connect(aedes_cluster.port(2)) is True  # the session is still there
        # a session's backlog replays slowly (~600 messages/s here): each message costs a few
        # Redis round trips, and each PUBACK an LREM over the whole queue
        missing = lost(acked, subscriber, 120)
        print(
            f"\nsubscriber's node killed: {len(acked)} acknowledged, {len(before)} received "
            f"before, {len(subscriber.received())} after moving, {len(missing)} lost, "
            f"{subscriber.duplicates()} duplicates"
        )
        assert not missing, f"{len(missing)} acknowledged messages never reached the session"
    finally:
        publisher.stop()
        subscriber.stop()


def test_a_killed_node_restarts_on_its_port(aedes_cluster: AedesCluster) -> None:
    subscriber = SeqSubscriber()
    subscriber.connect(aedes_cluster.port(1))
    port = aedes_cluster.port(0)  # what a client's config names
    aedes_cluster.kill(0)
    aedes_cluster.start_node(0)
    publisher = SeqPublisher(port)
    try:
        publisher.publish(10)
        wait_until(lambda: subscriber.received() == set(range(1, 11)), 10, "10 messages")
    finally:
        publisher.stop()
        subscriber.stop()


class Watcher:
    """A clean-session subscriber to the status topics, keeping what arrives in order."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, str, float]] = []  # topic, payload, monotonic time
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="status-watcher")
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("st/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload.decode(), time.monotonic())
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "watcher could not subscribe"

    def payloads(self, topic: str) -> list[str]:
        """What arrived on ``topic``, in order."""
        return [payload for t, payload, _ in list(self.messages) if t == topic]

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def gateway_client(port: int, *, drive: bool = True) -> tuple[paho.Client, threading.Event]:
    """A client "line1-edge" whose will is a retained "offline"; ``drive=False`` stalls it.

    A stalled client answers nothing after its CONNACK, like a gateway whose link went
    half-dead: the broker still holds its connection open.
    """
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="line1-edge")
    client.will_set("st/line1-edge", "offline", qos=1, retain=True)
    client.reconnect_delay_set(60, 60)  # no quiet reconnect to a dead node behind the test
    connected, gone = threading.Event(), threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if rc == 0 else None
    client.on_disconnect = lambda c, u, f, rc, p: gone.set()
    client.connect("127.0.0.1", port, keepalive=60)
    if drive:
        client.loop_start()
        assert connected.wait(10), "the gateway client was refused"
    else:
        wait_until(lambda: client.loop(0.05) != 0 or connected.is_set(), 10, "a CONNACK")
        assert connected.is_set(), "the gateway client was refused"
    return client, gone


def test_a_client_id_taken_over_on_another_node_closes_the_old_connection_and_sends_its_will(
    aedes_cluster: AedesCluster,
) -> None:
    watcher = Watcher(aedes_cluster.port(1))
    old, old_gone = gateway_client(aedes_cluster.port(0), drive=False)
    online = old.publish("st/line1-edge", "online", qos=1, retain=True)
    wait_until(lambda: old.loop(0.05) != 0 or online.is_published(), 10, "the first online")
    # Node 1 has seen node 0 register the old connection once the watcher on node 1 has the
    # old connection's "online" (both came through Redis in that order). Two connections of
    # one id a few milliseconds apart on two nodes can both be closed: each node hears of the
    # other's after registering its own.
    wait_until(lambda: watcher.payloads("st/line1-edge") == ["online"], 10, "the first online")
    new, _ = gateway_client(aedes_cluster.port(1))  # accepted while the old one hangs, stalled
    try:
        new.publish("st/line1-edge", "online", qos=1, retain=True).wait_for_publish(10)
        wait_until(
            lambda: "offline" in watcher.payloads("st/line1-edge"), 10, "the old connection's will"
        )
        # node 0 closed the stalled connection: its next read finds the socket closed
        wait_until(lambda: old.loop(0.05) != 0 or old_gone.is_set(), 10, "node 0 to close it")
        wait_until(lambda: len(watcher.payloads("st/line1-edge")) == 3, 10, "the second online")
        print("\ntakeover, in arrival order:", watcher.payloads("st/line1-edge"))
    finally:
        new.disconnect()
        new.loop_stop()
        watcher.stop()


@pytest.mark.slow
def test_a_killed_nodes_wills_come_from_a_survivor_even_after_the_client_moved(
    aedes_cluster: AedesCluster,
) -> None:
    watcher = Watcher(aedes_cluster.port(2))
    first, first_gone = gateway_client(aedes_cluster.port(0))
    aedes_cluster.kill(0)
    killed_at = time.monotonic()
    assert first_gone.wait(10), "the client did not notice its node dying"
    first.loop_stop()
    moved, _ = gateway_client(aedes_cluster.port(1))  # same id, same will, now on node 1
    try:
        moved.publish("st/line1-edge", "online", qos=1, retain=True).wait_for_publish(10)
        # node 0's copy of the will outlives the move: a survivor publishes it once node 0's
        # heartbeats have stopped for 3 beats (checked every 4), whoever holds the id now
        wait_until(
            lambda: watcher.payloads("st/line1-edge")[-1:] == ["offline"], 20, "the stale will"
        )
        will_at = next(at for t, p, at in watcher.messages if p == "offline")
        print(f"\nwill of a killed node's client after {will_at - killed_at:.1f}s (beat 1s)")
        assert watcher.payloads("st/line1-edge") == ["online", "offline"]
    finally:
        moved.disconnect()
        moved.loop_stop()
        watcher.stop()


def test_two_mosquittos_share_no_session(two_mosquittos: tuple[Mosquitto, Mosquitto]) -> None:
    """The plain pair is what the cluster is not: a session made on one is unknown to the other."""
    first, second = two_mosquittos
    subscriber = SeqSubscriber()
    assert subscriber.connect(first.port) is False
    subscriber.stop()
    assert subscriber.connect(first.port) is True  # mosquitto keeps it...
    subscriber.stop()
    assert subscriber.connect(second.port) is False  # ...and the other broker never heard of it
    subscriber.stop()


@pytest.mark.slow
def test_a_hung_node_sends_stale_wills(aedes_cluster: AedesCluster) -> None:
    """A frozen node's client gets its will sent while still connected, and again once moved.

    The survivors take a node that stopped beating for dead and send its clients' wills, though
    the connections are open; the node, once it runs again, closes the connection that moved to
    another node and sends the same will once more. Both copies carry the same broker id and
    counter, so aedes' duplicate filter drops the second for a subscriber that got the first;
    it replaces the retained status all the same.
    """
    watcher = Watcher(aedes_cluster.port(2))
    first, first_gone = gateway_client(aedes_cluster.port(0))
    try:
        first.publish("st/line1-edge", "online", qos=1, retain=True).wait_for_publish(10)
        aedes_cluster.pause_node(0)
        wait_until(lambda: "offline" in watcher.payloads("st/line1-edge"), 20, "a survivor's will")
        assert not first_gone.is_set()  # the client still holds its connection to node 0
        first.loop_stop()  # the gateway gives up on node 0 and moves (its socket stays open)
        moved, _ = gateway_client(aedes_cluster.port(1))
        moved.publish("st/line1-edge", "online", qos=1, retain=True).wait_for_publish(10)
        assert retained(aedes_cluster.port(2), "st/line1-edge") == "online"
        aedes_cluster.resume_node(0)
        wait_until(
            lambda: retained(aedes_cluster.port(2), "st/line1-edge") == "offline",
            20,
            "node 0's will as the retained status",
        )
        assert watcher.payloads("st/line1-edge")[:3] == ["online", "offline", "online"]
        moved.disconnect()
        moved.loop_stop()
    finally:
        aedes_cluster.resume_node(0)
        watcher.stop()


def retained(port: int, topic: str) -> str:
    """The retained message on ``topic`` (there must be one), as a new subscriber gets it."""
    got: list[str] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"reader-{time.monotonic_ns()}")
    subscribed = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    client.on_message = lambda c, u, m: got.append(m.payload.decode())
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert subscribed.wait(10), "the reader could not subscribe"
        wait_until(lambda: bool(got), 10, f"the retained message on {topic}")  # after the SUBACK
        return got[0]
    finally:
        client.disconnect()
        client.loop_stop()
