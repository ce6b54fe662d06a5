"""Measure the aedes cluster: node start-up, and QoS 1 throughput against mosquitto.

    .venv/bin/python -m simulators.cluster.measure [--tags 20000] [--batches 40]

Publisher and subscriber are paho clients, as the gateway and a historian would be: the
publisher keeps 1,000 messages in flight (the gateway's default ``mqtt.max_inflight``), the
subscriber takes QoS 1 on another node. Messages are shaped like the gateway's: a ~70-byte
``per_tag`` reading, or a ~600 KB ``per_batch`` scan of 10,000 tags. Measures, never asserts;
mosquitto on the same machine in the same run is the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from simulators.broker import Mosquitto
from simulators.cluster.aedes import AedesCluster

TOPIC = "bench/line1/press1"


def per_tag(seq: int) -> bytes:
    """One reading as ``layout: per_tag`` publishes it."""
    body = {"value": 21.5 + seq % 7, "quality": "good", "ts": 1763762540123 + seq, "seq": seq}
    return json.dumps(body).encode()


def per_batch(seq: int, tags: int = 10_000) -> bytes:
    """One scan of ``tags`` tags as ``layout: per_batch`` publishes it."""
    readings = [
        {"tag": f"tag{i:05d}", "value": 21.5 + i % 7, "quality": "good", "ts": 0, "seq": seq + i}
        for i in range(tags)
    ]
    return json.dumps({"ts": 1763762540123, "readings": readings}).encode()


class Counter:
    """A QoS 1 subscriber that counts what it receives."""

    def __init__(self, port: int, persistent: bool) -> None:
        self.count = 0
        self.last_at = 0.0
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-historian", clean_session=not persistent
        )
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{TOPIC}/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the subscriber could not subscribe")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self.count += 1
        self.last_at = time.monotonic()

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def end_session(port: int) -> None:
    """Connect the benchmark's subscriber id with a clean session: the cluster drops its queue."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-historian")
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(10)
    client.disconnect()
    client.loop_stop()


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    """A broker to measure: where to publish, where to subscribe, whose CPU time to count."""

    pub_port: int
    sub_port: int
    pids: list[int]


@dataclass
class Result:
    """One run's figures."""

    acked_per_s: float  # messages acknowledged per second of wall time
    received_per_s: float  # messages received per second of wall time
    cpu_us: float  # broker CPU time (every node and Redis) per message, microseconds


def run(target: Target, payloads: list[bytes], persistent: bool) -> Result:
    """Publish every payload with QoS 1 and count what arrives."""
    pub_port, sub_port = target.pub_port, target.sub_port
    counter = Counter(sub_port, persistent)
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-edge")
    publisher.max_inflight_messages_set(1000)
    connected = threading.Event()
    publisher.on_connect = lambda c, u, f, rc, p: connected.set()
    publisher.connect("127.0.0.1", pub_port)
    publisher.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("the publisher could not connect")
        cpu_before = cpu_seconds(target.pids)
        started = time.monotonic()
        infos = [publisher.publish(f"{TOPIC}/t", payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(120)
        acked_at = time.monotonic()
        deadline = acked_at + 120
        while counter.count < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.01)
        if counter.count < len(payloads):
            raise RuntimeError(f"only {counter.count} of {len(payloads)} messages arrived")
        cpu = cpu_seconds(target.pids) - cpu_before
        n = len(payloads)
        return Result(n / (acked_at - started), n / (counter.last_at - started), cpu / n * 1e6)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        counter.stop()
        if persistent:  # or the next run's subscriber inherits its queue
            end_session(sub_port)


@contextmanager
def brokers(workdir: Path) -> Iterator[dict[str, Target]]:
    """The targets by name."""
    mosquitto = Mosquitto(workdir / "mosquitto", persistence=False)
    hooked = AedesCluster(workdir / "aedes", nodes=2)
    stock = AedesCluster(workdir / "stock", nodes=2, stock_puback=True)
    with mosquitto, hooked, stock:
        yield {
            "mosquitto (reference)": Target(mosquitto.port, mosquitto.port, pids(mosquitto.proc)),
            "aedes cluster, store before PUBACK": cluster_target(hooked),
            "aedes cluster, stock (PUBACK first)": cluster_target(stock),
        }


def pids(*procs: subprocess.Popen[bytes] | None) -> list[int]:
    """The ids of running processes."""
    return [proc.pid for proc in procs if proc is not None]


def cluster_target(cluster: AedesCluster) -> Target:
    """Publish on node 0, subscribe on node 1; count every node's CPU time and Redis's."""
    procs = [node.proc for node in cluster.nodes] + [cluster.redis.proc]
    return Target(cluster.port(0), cluster.port(1), pids(*procs))


def startup(workdir: Path) -> list[tuple[str, float]]:
    """Seconds from spawning a node to its port opening, and to its first routed message."""
    results = []
    with AedesCluster(workdir / "startup", nodes=2) as cluster:
        counter = Counter(cluster.port(1), persistent=False)
        try:
            for attempt in range(3):
                cluster.kill(0)
                spawned = time.monotonic()
                cluster.start_node(0)
                listening = time.monotonic() - spawned
                before = counter.count
                client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe{attempt}")
                client.connect("127.0.0.1", cluster.port(0))
                client.loop_start()
                client.publish(f"{TOPIC}/probe", b"1", qos=1).wait_for_publish(10)
                while counter.count == before:
                    time.sleep(0.005)
                usable = time.monotonic() - spawned
                client.disconnect()
                client.loop_stop()
                results.append(("listening", listening))
                results.append(("first message routed to another node", usable))
        finally:
            counter.stop()
    return results


def main() -> None:
    """Print the start-up times and the throughput table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=20_000, help="per_tag messages per run")
    parser.add_argument("--batches", type=int, default=40, help="per_batch messages per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plantgate-cluster-") as tmp:
        workdir = Path(tmp)
        print("node start-up (seconds from spawn):")
        for what, seconds in startup(workdir):
            print(f"  {what:<40} {seconds:6.3f}")
        tag_payloads = [per_tag(seq) for seq in range(args.tags)]
        batch_payloads = [per_batch(seq * 10_000) for seq in range(args.batches)]
        print(f"\nper_tag message {len(tag_payloads[0])} B, per_batch {len(batch_payloads[0])} B")
        print(
            f"{'broker':<37} {'layout':<9} {'subscriber':<10} {'acked/s':>8} {'recv/s':>8}"
            f" {'broker CPU/msg':>15}"
        )
        with brokers(workdir) as targets:
            for name, target in targets.items():
                for layout, payloads in (("per_tag", tag_payloads), ("per_batch", batch_payloads)):
                    for persistent in (False, True):
                        r = run(target, payloads, persistent)
                        kind = "persistent" if persistent else "clean"
                        print(
                            f"{name:<37} {layout:<9} {kind:<10} {r.acked_per_s:8.0f}"
                            f" {r.received_per_s:8.0f} {r.cpu_us:12.0f} µs"
                        )


if __name__ == "__main__":
    main()
