"""Would a second process pay? plantgate per_tag, 10,000 Modbus tags every 100 ms, run as one
process on both cores, one process pinned to one core (``taskset``), and two processes with
5,000 tags each (the best a split into two could do: no hand-over between them at all).

Whatever a real split costs (readings or messages passed between processes) comes on top of
the two-process figures, so a split pays only if two processes deliver clearly more than one,
or the same for less CPU. Same simulator process, fresh broker and subscriber per variant, as
``bench.peers`` runs them.

Run: ``.venv/bin/python -m bench.split [--seconds 30] [--tags 10000]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import cpu_count, free_port, table
from bench.opcua import proc_cpu_seconds, proc_rss_mib
from bench.peers import Case, Counter, side_process, simulator
from bench.pipeline import PREFIX
from bench.pipeline import config as modbus_config
from simulators.broker import Mosquitto

VARIANTS = {
    "one process, 2 cores": (1, None),
    "one process, 1 core": (1, "0"),
    "two processes, 2 cores": (2, None),
}


def split_configs(work: Path, broker: int, modbus: int, tags: int, parts: int) -> list[Path]:
    """bench.pipeline's tag map cut into ``parts`` gateways (own name, buffer, tags)."""
    whole = yaml.safe_load(
        modbus_config(work, broker, modbus, tags, "per_tag", "normal").read_text()
    )
    all_tags = whole["sources"][0]["tags"]
    share = len(all_tags) // parts
    paths = []
    for n in range(parts):
        data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(whole))
        data["gateway"]["name"] = f"bench{n}"
        data["gateway"]["buffer"]["path"] = str(work / f"buffer{n}.db")
        data["sources"][0]["tags"] = all_tags[n * share : (n + 1) * share]
        path = work / f"part{n}.yaml"
        path.write_text(yaml.safe_dump(data))
        paths.append(path)
    return paths


def committed(work: Path, parts: int) -> int:
    """Readings the gateways committed so far (their source's last seq)."""
    total = 0
    for n in range(parts):
        db = sqlite3.connect(f"file:{work / f'buffer{n}.db'}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT last_seq FROM sources WHERE name = 'press1'").fetchone()
        finally:
            db.close()
        total += row[0] if row else 0
    return total


def run(work: Path, case: Case, parts: int, cpus: str | None, args: Any) -> dict[str, float]:
    """One variant: figures over the window after the warm-up."""
    work.mkdir(parents=True)
    port = free_port()
    with simulator(case, port) as sim:
        broker = Mosquitto(work / "broker", persistence=False)
        broker.start()
        counter = Counter(broker.port, f"{PREFIX}/{case.source}/#")
        try:
            with contextlib.ExitStack() as stack:
                procs = []
                for n, path in enumerate(split_configs(work, broker.port, port, case.tags, parts)):
                    argv = [sys.executable, "-m", "gateway", "run", "-c", str(path)]
                    if cpus is not None:
                        argv = [shutil.which("taskset") or "taskset", "-c", cpus, *argv]
                    procs.append(stack.enter_context(side_process(argv, work / f"part{n}.log")))
                deadline = time.monotonic() + 120
                while counter.values == 0:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise SystemExit((work / "part0.log").read_text()[-3000:])
                    time.sleep(0.1)
                time.sleep(args.warmup)
                cpu0 = sum(proc_cpu_seconds(p.pid) for p in procs)
                sim0 = proc_cpu_seconds(sim.pid)
                read0, values0, t0 = committed(work, parts), counter.values, time.monotonic()
                time.sleep(args.seconds)
                wall = time.monotonic() - t0
                values = counter.values - values0
                read = committed(work, parts) - read0
                cpu = sum(proc_cpu_seconds(p.pid) for p in procs) - cpu0
                sim_cpu = proc_cpu_seconds(sim.pid) - sim0
                rss = sum(proc_rss_mib(p.pid) for p in procs)
        finally:
            counter.stop()
            broker.stop()
    return {
        "values/s": values / wall,
        "read/s": read / wall,
        "cpu": 100 * cpu / wall,
        "us/value": 1e6 * cpu / values if values else float("nan"),
        "rss": rss,
        "sim": 100 * sim_cpu / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--tags", type=int, default=10_000)
    args = parser.parse_args()
    case = Case("split", "modbus", args.tags, "per_tag", "split")
    rows: list[tuple[str, ...]] = [
        ("variant", "values/s", "read/s", "CPU %", "CPU us/value", "RSS MiB", "sim CPU %")
    ]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="plantgate-split-") as tmp:
        for n, (name, (parts, cpus)) in enumerate(VARIANTS.items()):
            r = run(Path(tmp) / str(n), case, parts, cpus, args)
            print(f"{name}: {r['values/s']:,.0f} values/s, {r['us/value']:.1f} us CPU per value")
            rows.append(
                (
                    name,
                    f"{r['values/s']:,.0f}",
                    f"{r['read/s']:,.0f}",
                    f"{r['cpu']:.0f}",
                    f"{r['us/value']:.1f}",
                    f"{r['rss']:.0f}",
                    f"{r['sim']:.0f}",
                )
            )
    print(
        table(
            f"plantgate per_tag, {args.tags:,} Modbus tags every 100 ms ({case.asked:,} values/s "
            f"asked), {args.seconds:g} s per variant; {cpu_count()} cores; load average "
            f"{load:.1f} at start, {os.getloadavg()[0]:.1f} at end",
            rows,
        )
    )


if __name__ == "__main__":
    main()
