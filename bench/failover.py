"""Failover benchmark: the gateway's broker node killed mid-stream in a real aedes cluster.

10,000 tags every 100 ms, `per_batch`, published to node 0 of a three-node aedes cluster
(sessions and subscriptions shared through Redis; a node stores before it acknowledges). A
subscriber on node 1 counts every seq. Node 0 is killed with SIGKILL; the figure is the time
from the kill to the first reading the subscriber gets that was published after it (a seq
above the highest it had), and the loss is counted from seq over the whole run.

Run: ``.venv/bin/python -m bench.failover [--tags 10000] [--runs 3]`` (``make cluster-deps``
installs the cluster's node packages and redis-server).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import free_port, percentile, simulator_process, table
from bench.pipeline import PREFIX, Subscriber, last_seq
from simulators.cluster.aedes import AedesCluster


def config(work: Path, urls: list[str], modbus: int, tags: int) -> Path:
    """10,000 report: always tags every 100 ms, per_batch, to the cluster's nodes in order."""
    data = {
        "gateway": {"name": "bench", "buffer": {"path": str(work / "buffer.db")}},
        "mqtt": {
            "url": urls,
            "topic_prefix": PREFIX,
            "layout": "per_batch",
            "keepalive": "5s",
            "reconnect": {"min": "250ms", "max": "2s"},
        },
        "sources": [
            {
                "name": "press1",
                "protocol": "modbus",
                "host": "127.0.0.1",
                "port": modbus,
                "scan": "100ms",
                "tags": [
                    {"name": f"r{i:05d}", "address": f"holding:{1000 + i}", "report": "always"}
                    for i in range(tags)
                ],
            }
        ],
    }
    path = work / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def one_run(work: Path, modbus: int, tags: int) -> tuple[float, int, int]:
    """(seconds from the kill to the first reading through the next node, lost, delivered)."""
    work.mkdir()
    with AedesCluster(work / "cluster", nodes=3) as cluster:
        sub = Subscriber(cluster.port(1), only=f"{PREFIX}/press1")
        sub.start()
        cfg = config(work, cluster.urls, modbus, tags)
        with open(work / "gateway.log", "wb") as log:
            gw = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(cfg)], stdout=log, stderr=log
            )
        try:
            time.sleep(5)  # connected and warm
            before = sub.top
            cluster.kill(0)
            killed = time.monotonic()
            moved = float("nan")
            while time.monotonic() - killed < 60:
                # A seq a whole scan above the kill: published after it, through the next node.
                if sub.top > before + tags:
                    moved = time.monotonic() - killed
                    break
                time.sleep(0.005)
            time.sleep(5)
        finally:
            gw.terminate()
            gw.wait(60)
            committed = last_seq(work / "buffer.db")
            deadline = time.monotonic() + 30
            while sub.lost(committed) and time.monotonic() < deadline:
                time.sleep(0.2)
            sub.stop()
        return moved, sub.lost(committed), committed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = [("run", "kill -> readings via the next node (s)", "lost", "of")]
    times = []
    with tempfile.TemporaryDirectory(prefix="plantgate-failover-") as tmp:
        modbus = free_port()
        with simulator_process(modbus):
            for n in range(args.runs):
                moved, lost, committed = one_run(Path(tmp) / f"run{n}", modbus, args.tags)
                times.append(moved)
                rows.append((str(n + 1), f"{moved:.2f}", str(lost), f"{committed:,}"))
                print(rows[-1], flush=True)
    print(table(f"Failover: {args.tags} tags every 100 ms, per_batch, aedes cluster of 3", rows))
    print(f"median {percentile(times, 50):.2f} s")


if __name__ == "__main__":
    main()
