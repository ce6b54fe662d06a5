"""End-to-end pipeline benchmark: Modbus simulator -> gateway -> mosquitto -> a subscriber.

Every case runs the real `plantgate run` process against the simulator process and a local
mosquitto; a subscriber in this process checks every reading's `seq` (lost readings must be
0) and measures latency from the scan's timestamp to delivery. References measured in the
same run: a bare paho-mqtt QoS 1 publisher sending the same messages from memory (the
ceiling for one Python client), and the SQLite insert rate for the same batches.

Run: ``.venv/bin/python -m bench.pipeline [--seconds 60] [--tags 10000] [--outage 600]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import free_port, percentile, simulator_process, table
from buffer.rows import COLUMNS, encode
from gateway.models import Batch, Quality, Reading
from gateway.sparkplug.sparkplug_b_pb2 import Payload
from simulators.broker import Mosquitto

PREFIX = "bench/line"


@dataclass
class Subscriber:
    """Counts every reading by seq and records delivery latency."""

    port: int
    seen: bytearray = field(default_factory=bytearray)  # one byte per seq: 1 once received
    received: int = 0
    historical: int = 0
    latencies: list[float] = field(default_factory=list)
    scans: tuple[int, int] = (0, 0)  # press1's (scans, overruns) in the newest metrics
    lock: threading.Lock = field(default_factory=threading.Lock)

    sparkplug: bool = False  # count DDATA metrics (Sparkplug) instead of JSON readings
    # One topic filter instead of the default pair (aedes answers a SUBSCRIBE of several
    # filters with no SUBACK, and does not match "a/#" to "a").
    only: str | None = None
    committed_at_start: int = 0  # Sparkplug carries no seq: readings are counted instead
    top: int = 0  # the highest seq received

    def start(self) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=False
        )
        data = (
            (f"spBv1.0/{PREFIX.split('/')[0]}/DDATA/#", 0)
            if self.sparkplug
            else (
                f"{PREFIX}/press1/#",
                1,
            )
        )
        wanted = [(self.only, 1)] if self.only else [data, (f"{PREFIX}/_gateway/metrics", 0)]
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(wanted)
        self.client.on_message = self._on_sparkplug if self.sparkplug else self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.max_inflight_messages_set(0)
        self.client.connect_async("127.0.0.1", self.port)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.time() * 1000
        body = json.loads(msg.payload)
        if msg.topic.endswith("/_gateway/metrics"):
            press1 = body["sources"]["press1"]
            self.scans = (press1["scans"], press1["overruns"])
            return
        items = body.get("readings", [body])
        historical = body.get("historical", False)
        with self.lock:
            top = max(r["seq"] for r in items)
            if top >= len(self.seen):  # grow in big steps: a 10-minute outage is 60M seqs
                self.seen.extend(bytes(max(top + 1 - len(self.seen), len(self.seen))))
            for r in items:
                self.seen[r["seq"]] = 1
            self.top = max(self.top, top)
            if not historical and len(self.latencies) < 200_000:
                self.latencies.extend(now - r["ts"] for r in items)
            self.received += len(items)
            if historical:
                self.historical += len(items)

    def _on_sparkplug(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic.endswith("/_gateway/metrics"):
            self._on_message(client, userdata, msg)
            return
        now = time.time() * 1000
        payload = Payload()
        payload.ParseFromString(bytes(msg.payload))
        metrics = payload.metrics
        with self.lock:
            historical = bool(metrics) and metrics[0].is_historical
            if not historical and len(self.latencies) < 200_000:
                self.latencies.extend(now - m.timestamp for m in metrics)
            self.received += len(metrics)
            if historical:
                self.historical += len(metrics)

    def lost(self, upto: int) -> int:
        """Seqs 1..upto not received."""
        if self.sparkplug:  # no seqs: what was committed and not received (no duplicates here)
            with self.lock:
                return max(0, upto - self.committed_at_start - self.received)
        with self.lock:
            have = min(len(self.seen), upto + 1)
            return self.seen.count(0, 1, have) + (upto + 1 - have if upto >= have else 0)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def config(
    work: Path,
    broker: int,
    modbus: int,
    tags: int,
    layout: str,
    durability: str,
    connections: int = 1,
) -> Path:
    """A tag map of ``tags`` adjacent registers scanned every 100 ms, report: always."""
    data = {
        "gateway": {
            "name": "bench",
            # Room for a 10-minute outage at 100,000 readings/s: nothing evicted, nothing lost.
            "buffer": {
                "path": str(work / "buffer.db"),
                "durability": durability,
                "max_bytes": "32GiB",
            },
            "metrics_interval": "1s",  # the scan counts bracket each case's window
        },
        "mqtt": {
            "url": f"mqtt://127.0.0.1:{broker}",
            "topic_prefix": PREFIX,
            "replay": {"order": "live_first", "max_rate": 10_000_000},
            **(
                {"format": "sparkplug", "sparkplug": {"group_id": PREFIX.split("/")[0]}}
                if layout == "sparkplug"
                else {"layout": layout}
            ),
        },
        "sources": [
            {
                "name": "press1",
                "protocol": "modbus",
                "host": "127.0.0.1",
                "port": modbus,
                "connections": connections,
                "scan": "100ms",
                "tags": [
                    {"name": f"r{i:05d}", "address": f"holding:{1000 + i}", "report": "always"}
                    for i in range(tags)
                ],
            }
        ],
    }
    path = work / f"{layout}-{durability}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def last_seq(db: Path) -> int:
    """The last seq the gateway committed for press1."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT last_seq FROM sources WHERE name = 'press1'").fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else 0


def run_case(
    work: Path,
    modbus: int,
    tags: int,
    layout: str,
    durability: str,
    seconds: float,
    outage: float = 0,
    connections: int = 1,
) -> dict[str, Any]:
    """One case: fresh broker and buffer, the gateway for ``seconds`` (with an outage first)."""
    case = work / f"{layout}-{durability}-{int(outage)}"
    case.mkdir()
    # Persistence: the subscriber's session (its queue) must outlive the broker's restart,
    # or what the gateway delivers before the subscriber is back would count as lost.
    broker = Mosquitto(case / "broker", persistence=bool(outage), autosave_interval=0)
    broker.start()
    sub = Subscriber(broker.port, sparkplug=layout == "sparkplug")
    sub.start()
    cfg = config(case, broker.port, modbus, tags, layout, durability, connections)
    with open(case / "gateway.log", "wb") as log:
        gw = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(cfg)], stdout=log, stderr=log
        )
    result: dict[str, Any] = {"case": f"{layout} / {durability}"}
    try:
        time.sleep(3)  # connect and warm up
        if outage:
            broker.stop()
            time.sleep(outage)
            backlog = last_seq(case / "buffer.db") - sub.received
            broker.start()
            t0, before = time.monotonic(), sub.historical
            deadline = t0 + 3600
            while sub.lost(last_seq(case / "buffer.db") - tags * 2) and time.monotonic() < deadline:
                time.sleep(0.5)
            result["drain"] = (sub.historical - before) / (time.monotonic() - t0)
            result["backlog"] = backlog
        cpu0, t0, got0 = proc_cpu_seconds(gw.pid), time.monotonic(), sub.received
        scans0 = sub.scans
        time.sleep(seconds)
        cpu1, t1, got1 = proc_cpu_seconds(gw.pid), time.monotonic(), sub.received
        (done0, skipped0), (done1, skipped1) = scans0, sub.scans
        result["scans"], result["skipped"] = done1 - done0, skipped1 - skipped0
        result["rate"] = (got1 - got0) / (t1 - t0)
        result["cpu"] = 100 * (cpu1 - cpu0) / (t1 - t0)
        result["rss"] = proc_peak_rss_mib(gw.pid)
    finally:
        gw.terminate()
        try:
            gw.wait(60)
        except subprocess.TimeoutExpired:
            print(f"gateway did not stop within 60 s; see {case / 'gateway.log'}", file=sys.stderr)
            gw.kill()
            gw.wait()
        time.sleep(1)
        committed = last_seq(case / "buffer.db")
        deadline = time.monotonic() + 30
        while sub.lost(committed) and time.monotonic() < deadline:
            time.sleep(0.2)
        sub.stop()
        broker.stop()
    with sub.lock:
        lat = list(sub.latencies)
    result["lost"] = sub.lost(committed)
    result["committed"] = committed
    result["p50"], result["p99"] = percentile(lat, 50), percentile(lat, 99)
    return result


def bare_paho(work: Path, tags: int, layout: str, seconds: float = 10) -> float:
    """Readings/s of a bare paho QoS 1 publisher sending the same messages from memory.

    The same subscriber listens as in the gateway's cases: only the publisher differs.
    """
    broker = Mosquitto(work / f"bare-{layout}", persistence=False)
    broker.start()
    sub = Subscriber(broker.port)
    sub.start()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bare")
    client.max_inflight_messages_set(0)  # paho's own limit walks every message per PUBACK
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    reading = {"value": 12345, "quality": "good", "ts": int(time.time() * 1000), "seq": 1}
    per_tag = [
        (f"{PREFIX}/press1/r{i:05d}", json.dumps({**reading, "seq": i}).encode())
        for i in range(tags)
    ]
    batch = json.dumps({"ts": 0, "readings": [{"tag": t, **reading} for t, _ in per_tag]}).encode()
    sent, t0 = 0, time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            if layout == "per_tag":
                infos = [client.publish(t, p, qos=1) for t, p in per_tag]
            else:
                infos = [client.publish(f"{PREFIX}/press1", batch, qos=1)]
            for info in infos:  # the same window as the gateway's: one scan's messages at a time
                info.wait_for_publish(30)
            sent += tags
        return sent / (time.monotonic() - t0)
    finally:
        client.loop_stop()
        client.disconnect()
        sub.stop()
        broker.stop()


def sqlite_inserts(work: Path, tags: int, durability: str, seconds: float = 5) -> float:
    """Readings/s of plain SQLite inserts of the same batches (one row per batch)."""
    conn = sqlite3.connect(work / f"insert-{durability}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute(f"CREATE TABLE b (id INTEGER PRIMARY KEY, stored INT, {COLUMNS})")
    batch = Batch(
        "press1", 0, [Reading(f"r{i:05d}", 12345, Quality.GOOD, 0, i) for i in range(tags)]
    )
    done, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        row = encode(batch)  # the gateway's own row encoding, then a bare insert
        conn.execute("BEGIN")
        conn.execute(
            f"INSERT INTO b (stored, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (done, *row),
        )
        conn.execute("COMMIT")
        done += tags
    conn.close()
    return done / (time.monotonic() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--outage", type=float, default=600, help="seconds of broker outage to drain"
    )
    parser.add_argument(
        "--cases",
        default="per_batch/normal,per_batch/full,per_tag/normal,per_tag/full,sparkplug/normal",
        help="layout/durability pairs; layout per_batch, per_tag or sparkplug",
    )
    parser.add_argument(
        "--connections", type=int, default=1, help="Modbus connections the gateway opens"
    )
    args = parser.parse_args()
    asked = args.tags * 10
    with tempfile.TemporaryDirectory(prefix="plantgate-bench-") as tmp:
        work = Path(tmp)
        modbus = free_port()
        rows: list[tuple[str, ...]] = [
            (
                "case",
                "readings/s",
                "of asked",
                "gateway CPU %",
                "peak RSS MiB",
                "p50 ms",
                "p99 ms",
                "scans skipped",
                "lost",
            )
        ]
        results = []
        with simulator_process(modbus):
            for case in args.cases.split(","):
                layout, durability = case.split("/")
                r = run_case(
                    work,
                    modbus,
                    args.tags,
                    layout,
                    durability,
                    args.seconds,
                    connections=args.connections,
                )
                results.append(r)
                rows.append(
                    (
                        r["case"],
                        f"{r['rate']:,.0f}",
                        f"{r['rate'] / asked:.2f}",
                        f"{r['cpu']:.0f}",
                        f"{r['rss']:.0f}",
                        f"{r['p50']:.0f}",
                        f"{r['p99']:.0f}",
                        f"{r['skipped']} of {r['scans'] + r['skipped']}",
                        str(r["lost"]),
                    )
                )
                print(rows[-1], flush=True)
            drain = None
            if args.outage:
                drain = run_case(
                    work,
                    modbus,
                    args.tags,
                    "per_batch",
                    "normal",
                    10,
                    outage=args.outage,
                    connections=args.connections,
                )
        refs = [("reference", "readings/s")]
        for layout in ("per_batch", "per_tag"):
            refs.append(
                (f"bare paho QoS 1, {layout}", f"{bare_paho(work, args.tags, layout):,.0f}")
            )
        for durability in ("normal", "full"):
            refs.append(
                (
                    f"SQLite inserts, {durability}",
                    f"{sqlite_inserts(work, args.tags, durability):,.0f}",
                )
            )
    title = (
        f"Pipeline: {args.tags} tags every 100 ms ({asked:,} readings/s asked), "
        f"{args.connections} Modbus connection(s)"
    )
    print(table(f"{title}, {args.seconds:.0f} s per case", rows))
    print()
    print(table("References, same run", refs))
    if drain is not None:
        print()
        rate = drain["drain"]
        print(
            f"Outage of {args.outage:.0f} s: backlog {drain['backlog']:,} readings drained at "
            f"{rate:,.0f} readings/s while the live {asked:,} readings/s went on "
            f"({rate / asked:.1f}x this live rate, {rate / 1000:,.0f}x a 1,000 readings/s one); "
            f"peak RSS {drain['rss']:.0f} MiB; lost {drain['lost']}"
        )


if __name__ == "__main__":
    main()
