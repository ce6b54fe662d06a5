"""Fleet benchmark: N ``plantgate run`` processes into one mosquitto, as many lines of a plant.

One Modbus simulator process (``bench.peers``'s, registers rewritten every 10 ms; ``--simulators``
spreads the gateways over several), one mosquitto, and N gateways, each with its own name and
client id (``bench-line01``...), topic_prefix (``plant1/line01``...) and buffer directory, each
reading ``--tags`` holding registers every ``--scan`` (``report: always``: every tag every scan).
Each gateway's tree is counted by its own ``mosquitto_sub`` (QoS 1), whose output a thread here
scans for ``"seq":`` markers only: no JSON parsed. After the window the gateways are stopped
(SIGTERM: they flush), and every seq each one committed (its buffer's ``last_seq``) must have
arrived or still be in its buffer (``kept``: a gateway that fell behind stops with a backlog):
``lost`` counts those that are neither.

Figures over the window after a warm-up, per gateway: CPU (user + system from
``/proc/<pid>/stat``) as % of one core, RSS at the end, readings/s delivered; the broker's and
the simulator's CPU and RSS; totals. Reference in the same run: one gateway alone with the same
tags (fresh broker, same simulator), so the ratio says what crowding costs.

Run under the shared lock:
``.venv/bin/python -m bench.fleet [--gateways 20] [--tags 1000]
[--seconds 60] [--scan 1s] [--layouts per_tag,per_batch]`` (needs ``mosquitto_sub``:
``make mosquitto-clients``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.common import cpu_count, free_port, table, terminate
from bench.opcua import proc_cpu_seconds, proc_rss_mib
from bench.peers import START, Case, choice_list, find_mosquitto_client, simulator
from gateway import __version__
from simulators.broker import Mosquitto

SITE = "plant1"
SEQ = re.compile(rb'"seq":(\d+)')
LAYOUTS = ("per_tag", "per_batch")


@dataclass(frozen=True)
class Line:
    """One gateway of the fleet: its name (client id too), topic prefix and work directory."""

    number: int
    work: Path

    @property
    def name(self) -> str:
        """Gateway name and MQTT client id: unique, and the same at every start."""
        return f"bench-line{self.number:02d}"

    @property
    def prefix(self) -> str:
        """The line's topic tree."""
        return f"{SITE}/line{self.number:02d}"

    @property
    def buffer(self) -> Path:
        """Its own buffer (and health file) directory."""
        return self.work / self.name / "buffer.db"


def line_config(line: Line, broker: int, modbus: int, tags: int, layout: str, scan: str) -> Path:
    """The line's tag map: ``tags`` adjacent holding registers, every one every scan."""
    line.buffer.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "gateway": {"name": line.name, "buffer": {"path": str(line.buffer)}},
        "mqtt": {
            "url": f"mqtt://127.0.0.1:{broker}",
            "client_id": line.name,
            "topic_prefix": line.prefix,
            "layout": layout,
        },
        "sources": [
            {
                "name": "press1",
                "protocol": "modbus",
                "host": "127.0.0.1",
                "port": modbus,
                "scan": scan,
                "tags": [
                    {"name": f"r{i:05d}", "address": f"holding:{START + i}", "report": "always"}
                    for i in range(tags)
                ],
            }
        ],
    }
    path = line.work / f"{line.name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class SeqCounter:
    """``mosquitto_sub`` on one line's tree; a thread marks every seq its output carries."""

    def __init__(self, port: int, line: Line) -> None:
        self.seen = bytearray(1 << 16)  # one byte per seq: 1 once received
        self.readings = 0  # seq markers, duplicates included
        self.messages = 0
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [
                find_mosquitto_client("mosquitto_sub"),
                *("-h", "127.0.0.1", "-p", str(port), "-i", f"bench-fleet-sub-{line.number:02d}"),
                *("-q", "1", "-t", f"{line.prefix}/press1/#", "-F", "%p"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._thread = threading.Thread(target=self._count, name=f"count-{line.name}", daemon=True)
        self._thread.start()

    def _count(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        carry = b""
        while chunk := os.read(fd, 1 << 16):
            joined = carry + chunk
            end = joined.rfind(b"\n") + 1  # whole lines only: a marker may straddle reads
            carry = joined[end:]
            self._mark(joined[:end])

    def _mark(self, lines: bytes) -> None:
        seqs = [int(s) for s in SEQ.findall(lines)]
        with self.lock:
            self.messages += lines.count(b"\n")
            self.readings += len(seqs)
            if seqs:
                top = max(seqs)
                if top >= len(self.seen):
                    self.seen.extend(bytes(max(top + 1 - len(self.seen), len(self.seen))))
                for s in seqs:
                    self.seen[s] = 1

    def missing(self, upto: int, kept: Sequence[tuple[int, int]] = ()) -> int:
        """Seqs 1..upto neither received nor in ``kept``, (first_seq, count) ranges still in
        the buffer."""
        with self.lock:
            seen = bytearray(self.seen)
        if len(seen) <= upto:
            seen.extend(bytes(upto + 1 - len(seen)))
        for first, count in kept:
            seen[first : first + count] = b"\x01" * count
        return seen.count(0, 1, upto + 1)

    def stop(self) -> None:
        """End mosquitto_sub; the thread ends with its output."""
        terminate(self.proc, 10)
        self._thread.join(10)


def buffer_state(line: Line) -> tuple[int, list[tuple[int, int]]]:
    """The last seq the line's gateway committed, and the (first_seq, count) of the batches
    still in its buffer (a gateway that fell behind stops with a backlog: kept, not lost)."""
    db = sqlite3.connect(f"file:{line.buffer}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT last_seq FROM sources WHERE name = 'press1'").fetchone()
        kept = db.execute("SELECT first_seq, count FROM batches WHERE source = 'press1'").fetchall()
    finally:
        db.close()
    return (int(row[0]) if row else 0), [(int(f), int(c)) for f, c in kept]


def subscribed(port: int, lines: list[Line], counters: list[SeqCounter]) -> None:
    """Return once every counter's subscription delivers (a probe without a seq gets through)."""
    pub = [find_mosquitto_client("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "-q", "1"]
    deadline = time.monotonic() + 30
    for line, counter in zip(lines, counters, strict=True):
        while counter.messages == 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"mosquitto_sub on {line.prefix} received nothing")
            subprocess.run([*pub, "-t", f"{line.prefix}/press1/probe", "-m", "{}"], check=True)
            time.sleep(0.05)


@contextlib.contextmanager
def gateways(argvs: list[list[str]], logs: list[Path]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The gateway processes; at the end all are sent SIGTERM at once, then waited for."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv, log in zip(argvs, logs, strict=True):
            with log.open("wb") as out:
                procs.append(subprocess.Popen(argv, stdout=out, stderr=out, cwd=log.parent))
        yield procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_fleet(
    work: Path, count: int, sims: list[tuple[int, int]], layout: str, args: Any
) -> dict[str, Any]:
    """``count`` gateways (spread over the simulators ``(port, pid)``) into one fresh broker."""
    work.mkdir(parents=True)
    lines = [Line(n + 1, work) for n in range(count)]
    broker = Mosquitto(work / "broker", persistence=False)
    broker.start()
    assert broker.proc is not None
    counters = [SeqCounter(broker.port, line) for line in lines]
    argvs = [
        [
            sys.executable,
            *("-m", "gateway", "run", "-c"),
            str(
                line_config(line, broker.port, sims[n % len(sims)][0], args.tags, layout, args.scan)
            ),
        ]
        for n, line in enumerate(lines)
    ]
    logs = [work / f"{line.name}.log" for line in lines]
    try:
        subscribed(broker.port, lines, counters)
        with gateways(argvs, logs) as procs:
            deadline = time.monotonic() + 300
            while any(c.readings == 0 for c in counters):
                dead = [
                    log for proc, log in zip(procs, logs, strict=True) if proc.poll() is not None
                ]
                if dead or time.monotonic() > deadline:
                    said = dead[0].read_text()[-3000:] if dead else "no readings within 300 s"
                    raise SystemExit(f"a gateway published nothing:\n{said}")
                time.sleep(0.2)
            time.sleep(args.warmup)
            pids = [p.pid for p in procs]
            others = {
                "broker": broker.proc.pid,
                **{f"sim{n}": pid for n, (_, pid) in enumerate(sims)},
            }
            subs = [c.proc.pid for c in counters]
            cpu0 = [proc_cpu_seconds(pid) for pid in pids]
            other0 = {k: proc_cpu_seconds(pid) for k, pid in others.items()}
            sub0 = sum(proc_cpu_seconds(pid) for pid in subs) + time.process_time()
            got0 = [c.readings for c in counters]
            t0 = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - t0
            got = [c.readings - g for c, g in zip(counters, got0, strict=True)]
            cpu = [proc_cpu_seconds(pid) - c0 for pid, c0 in zip(pids, cpu0, strict=True)]
            other = {k: proc_cpu_seconds(pid) - other0[k] for k, pid in others.items()}
            sub = sum(proc_cpu_seconds(pid) for pid in subs) + time.process_time() - sub0
            rss = [proc_rss_mib(pid) for pid in pids]
            broker_rss = proc_rss_mib(broker.proc.pid)
            exited = [log for proc, log in zip(procs, logs, strict=True) if proc.poll() is not None]
            if exited:
                raise SystemExit(f"a gateway exited:\n{exited[0].read_text()[-3000:]}")
        # Stopped and flushed: every seq a gateway committed must arrive.
        states = [buffer_state(line) for line in lines]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            c.missing(top, kept) for c, (top, kept) in zip(counters, states, strict=True)
        ):
            time.sleep(0.2)
        lost = [c.missing(top, kept) for c, (top, kept) in zip(counters, states, strict=True)]
    finally:
        for counter in counters:
            counter.stop()
        broker.stop()
    return {
        "lines": [line.name for line in lines],
        "cpu": [100 * c / wall for c in cpu],
        "rss": rss,
        "rate": [g / wall for g in got],
        "lost": lost,
        "committed": [top for top, _ in states],
        "kept": [sum(count for _, count in kept) for _, kept in states],
        "broker_cpu": 100 * other["broker"] / wall,
        "broker_rss": broker_rss,
        "sim_cpu": 100 * sum(v for k, v in other.items() if k.startswith("sim")) / wall,
        "sub_cpu": 100 * sub / wall,
    }


@contextlib.contextmanager
def simulators(count: int, tags: int) -> Iterator[list[tuple[int, int]]]:
    """``count`` Modbus simulator processes: (port, pid) of each."""
    with contextlib.ExitStack() as stack:
        found = []
        for _ in range(count):
            port = free_port()
            case = Case("fleet", "modbus", tags, "per_tag", "fleet")
            found.append((port, stack.enter_context(simulator(case, port)).pid))
        yield found


def mean(values: list[float]) -> float:
    """The arithmetic mean."""
    return sum(values) / len(values)


def rows_of(layout: str, alone: dict[str, Any], fleet: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per gateway, then the broker, the simulators, the subscribers and totals."""

    def row(*cells: str) -> tuple[str, ...]:
        return (layout, *cells, *[""] * (len(HEADER) - 1 - len(cells)))

    def gateway(name: str, figures: dict[str, Any], n: int) -> tuple[str, ...]:
        return row(
            name,
            f"{figures['cpu'][n]:.1f}",
            f"{figures['rss'][n]:.0f}",
            f"{figures['rate'][n]:,.0f}",
            str(figures["lost"][n]),
            str(figures["kept"][n]),
        )

    count = len(fleet["lines"])
    rows = [gateway(name, fleet, n) for n, name in enumerate(fleet["lines"])]
    return [
        *rows,
        gateway(f"alone: {alone['lines'][0]}", alone, 0),
        row(
            "fleet mean per gateway / alone",
            f"{mean(fleet['cpu']) / alone['cpu'][0]:.2f}x",
            f"{mean(fleet['rss']) / alone['rss'][0]:.2f}x",
            f"{mean(fleet['rate']) / alone['rate'][0]:.2f}x",
        ),
        row("broker (fleet)", f"{fleet['broker_cpu']:.1f}", f"{fleet['broker_rss']:.0f}"),
        row("broker (alone)", f"{alone['broker_cpu']:.1f}", f"{alone['broker_rss']:.0f}"),
        row("simulator (fleet)", f"{fleet['sim_cpu']:.1f}"),
        row(f"{count} mosquitto_sub + counter", f"{fleet['sub_cpu']:.1f}"),
        row(
            f"total, {count} gateways",
            f"{sum(fleet['cpu']):.1f}",
            f"{sum(fleet['rss']):.0f}",
            f"{sum(fleet['rate']):,.0f}",
            str(sum(fleet["lost"])),
            str(sum(fleet["kept"])),
        ),
    ]


HEADER = ("layout", "process", "CPU %", "RSS MiB", "readings/s", "lost", "kept")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateways", type=int, default=20)
    parser.add_argument("--tags", type=int, default=1000, help="per gateway")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=10.0, help="after every gateway's first")
    parser.add_argument("--scan", default="1s", help="every tag's scan (1s, 100ms...)")
    parser.add_argument("--simulators", type=int, default=1, help="Modbus simulator processes")
    parser.add_argument(
        "--layouts", type=choice_list(LAYOUTS), default=list(LAYOUTS), help=",".join(LAYOUTS)
    )
    parser.add_argument("--keep", type=Path, help="work here and keep the logs and configs")
    args = parser.parse_args()
    find_mosquitto_client("mosquitto_sub")
    load = os.getloadavg()[0]
    rows: list[tuple[str, ...]] = [HEADER]
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = args.keep
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="plantgate-fleet-")))
        sims = stack.enter_context(simulators(args.simulators, args.tags))
        for layout in args.layouts:
            alone = run_fleet(work / layout / "alone", 1, sims, layout, args)
            print(f"{layout}, one gateway alone: {alone['cpu'][0]:.1f} % CPU", flush=True)
            fleet = run_fleet(work / layout / "fleet", args.gateways, sims, layout, args)
            print(
                f"{layout}, {args.gateways} gateways: {mean(fleet['cpu']):.1f} % CPU each, "
                f"{sum(fleet['rate']):,.0f} readings/s, lost {sum(fleet['lost'])}",
                flush=True,
            )
            rows += rows_of(layout, alone, fleet)
    print()
    print(
        table(
            f"plantgate {__version__}: {args.gateways} gateways x {args.tags:,} Modbus tags every "
            f"{args.scan} (report: always) into one mosquitto, {args.simulators} simulator "
            f"process(es); {args.seconds:g} s window after {args.warmup:g} s warm-up; CPU % of one "
            f"core ({cpu_count()} cores); load average {load:.1f} at start, "
            f"{os.getloadavg()[0]:.1f} at end",
            rows,
        )
    )


if __name__ == "__main__":
    main()
