"""The failover test bed: a real aedes cluster, proven to lose nothing on its own.

Plain paho clients, no gateway: a QoS 1 publisher on one node that remembers which messages
the broker acknowledged, a persistent QoS 1 subscriber on another, and nodes killed with
SIGKILL mid-stream. The last tests pin down what the gateway's failover must expect of the
cluster: takeovers of a client id across nodes, and the wills of a killed node's clients.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from simulators.cluster import AedesCluster
from tests.helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "t/cluster/press1/counter"
MARKER = "t/cluster/marker"  # published after a kill: once it arrives, the stream has drained


class SeqPublisher:
    """A QoS 1 publisher on one node that knows which seqs the broker acknowledged (PUBACK)."""

    def __init__(self, port: int, client_id: str = "line1-edge", inflight: int = 100) -> None:
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
        client.on_connect = lambda c, u, f, rc, p: (
            present.append(f.session_present),
            c.subscribe("t/cluster/#", qos=1),
        )
        client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        client.on_message = self._on_message
        client.on_disconnect = lambda c, u, f, rc, p: self.gone.set()
        self.gone.clear()
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        self.client = client
        assert subscribed.wait(10), "subscriber could not subscribe"
        return present[0]

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


def lost(acked: set[int], subscriber: SeqSubscriber) -> set[int]:
    """The acknowledged seqs the subscriber has not received, once they had time to arrive."""
    try:
        wait_until(lambda: acked <= subscriber.received(), 5, "every acknowledged message")
    except AssertionError:
        pass
    return acked - subscriber.received()


def kill_publishers_node(cluster: AedesCluster, count: int, kill_after: int) -> dict[str, int]:
    """Publish on node 0 to a subscriber on node 1, SIGKILL node 0 mid-stream; the tally."""
    subscriber = SeqSubscriber()
    subscriber.connect(cluster.port(1))
    publisher = SeqPublisher(cluster.port(0))
    try:
        publisher.publish(count)
        wait_until(lambda: publisher.acks >= kill_after, 30, f"{kill_after} PUBACKs")
        cluster.kill(0)
        publisher.stop()
        acked = publisher.acknowledged()
        drain(cluster, 2, subscriber)
        missing = lost(acked, subscriber)
        return {
            "acknowledged": len(acked),
            "received": len(subscriber.received()),
            "lost": len(missing),
            "duplicates": subscriber.duplicates(),
        }
    finally:
        subscriber.stop()


def test_a_killed_node_loses_nothing_it_acknowledged(aedes_cluster: AedesCluster) -> None:
    tally = kill_publishers_node(aedes_cluster, count=20_000, kill_after=3_000)
    print("\nkill -9 of the publisher's node:", tally)
    assert 3_000 <= tally["acknowledged"] < 20_000  # the kill cut the stream in the middle
    assert tally["lost"] == 0, f"acknowledged, then lost: {tally}"


def test_stock_aedes_loses_what_it_acknowledged(tmp_path: Path) -> None:
    """The same check against stock aedes (PUBACK before store) catches the loss."""
    with AedesCluster(tmp_path / "stock", nodes=3, stock_puback=True) as cluster:
        tally = kill_publishers_node(cluster, count=20_000, kill_after=3_000)
    print("\nkill -9 of the publisher's node, stock aedes:", tally)
    assert tally["lost"] > 0


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
        missing = lost(acked, subscriber)
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
    aedes_cluster.kill(0)
    aedes_cluster.start_node(0)
    publisher = SeqPublisher(aedes_cluster.port(0))
    try:
        publisher.publish(10)
        wait_until(lambda: subscriber.received() == set(range(1, 11)), 10, "10 messages")
    finally:
        publisher.stop()
        subscriber.stop()
