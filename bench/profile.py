"""Where a per_tag reading's CPU goes: plantgate under py-spy, sorted into areas.

Runs what ``bench.peers`` runs for plantgate (its simulator process, a fresh mosquitto,
mosquitto_sub counting), by default 1,000 Modbus tags every 100 ms published per tag
(``--protocol opcua``: 1,000 OPC UA variables subscribed), and records
the gateway with ``py-spy record --format raw --threads``. Every sample is put in the first
area, in this order, that one of its frames belongs to:

- PUBACK handling: ``MqttLink._readable`` (or paho's ``loop_read``, which read the socket
  before issue #16; the broker sends little else) and what it calls back (the window's and
  the publisher's ack bookkeeping, buffer releases);
- MQTT publish: ``MqttLink.publish`` and ``_flush``, ``gateway/mqtt_wire.py``, paho's
  ``publish`` and ``loop_write`` (the socket writes);
- encode: ``gateway/encode.py`` (the stored readings decoded and each message formatted);
- read-back: the publisher reading committed rows (``Buffer.take`` and friends), and SQLite
  work in the reader connection's thread;
- buffer commit: ``Buffer.add``/``_write_loop``/``_commit``, the row encoding
  (``buffer/codec.py``, or ``buffer/rows.py``), and SQLite work in the writer connection's
  thread;
- scan and decode: the source runtime, ``connectors/``, pymodbus, asyncua;
- publisher: the rest of the publisher (``gateway/publisher.py``, and ``window.py`` and
  ``replay.py`` once it is split), its own loop between publishes;
- event loop: asyncio and anything else.

Samples of a thread waiting (the event loop in epoll, an idle SQLite or executor thread) are
left out: py-spy keeps some of them here. The aiosqlite threads are told apart by name:
``Buffer`` opens its writer connection first, so ``Thread-1`` writes and ``Thread-2`` reads.

Run: ``.venv/bin/python -m bench.profile [--seconds 30] [--tags 1000] [--protocol opcua]
[--raw FILE]``
(py-spy is a bench tool, not a dependency: ``make bench-tools`` installs it into the venv).
"""

from __future__ import annotations

import argparse
import concurrent.futures.thread
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite.core

from bench.common import free_port, table
from bench.opcua import proc_cpu_seconds
from bench.peers import Case, Counter, plantgate_argv, side_process, simulator
from bench.pipeline import PREFIX
from simulators.broker import Mosquitto

AREAS = (
    "PUBACK handling",
    "MQTT publish",
    "encode",
    "read-back",
    "buffer commit",
    "scan and decode",
    "publisher",
    "event loop",
)
WRITER, READER = "Thread-1 (_connection_worker_thread)", "Thread-2 (_connection_worker_thread)"


def _line_of(function: object, text: str) -> int:
    """The line of ``function`` whose source contains ``text`` (where a thread waits)."""
    lines, first = inspect.getsourcelines(function)  # type: ignore[arg-type]
    return next(first + n for n, line in enumerate(lines) if text in line)


# A stack whose innermost frame is one of these is a thread waiting, not working.
WAITS = {
    (
        "_connection_worker_thread",
        "aiosqlite/core.py",
        _line_of(aiosqlite.core._connection_worker_thread, "tx.get()"),
    ),
    (
        "_worker",
        "concurrent/futures/thread.py",
        _line_of(concurrent.futures.thread._worker, "work_queue.get("),
    ),
}
IDLE_FUNCTIONS = {"EpollSelector.select"}  # the event loop waiting for a socket or a timer


def frames(stack: str) -> tuple[str, list[tuple[str, str, int]]]:
    """A raw py-spy stack: its thread and its frames (function, file, line), outermost first."""
    parts = stack.split(";")
    thread = parts[0].split(": ", 1)[1] if ": " in parts[0] else parts[0]
    out = []
    for part in parts[1:]:
        function, _, where = part.rpartition(" (")
        file, _, line = where.rstrip(")").rpartition(":")
        out.append((function, file, int(line) if line.isdigit() else 0))
    return thread, out


def idle(stack: list[tuple[str, str, int]]) -> bool:
    """True when the innermost frame is a thread waiting."""
    if not stack:
        return True
    function, file, line = stack[-1]
    return function in IDLE_FUNCTIONS or (function, file, line) in WAITS


def area(thread: str, stack: list[tuple[str, str, int]]) -> str:
    """The area a working sample belongs to."""
    if thread == WRITER:
        return "buffer commit"
    if thread == READER:
        return "read-back"
    names = {(function, file) for function, file, _ in stack}
    files = {file for _, file in names}
    functions = {function for function, _ in names}

    def in_file(*wanted: str) -> bool:
        return any(f.endswith(w) or f"/{w}" in f or f.startswith(w) for f in files for w in wanted)

    if {"MqttLink._readable", "Client.loop_read"} & functions:
        return "PUBACK handling"
    if {
        "MqttLink.publish",
        "MqttLink._flush",
        "Client.publish",
        "Client.loop_write",
    } & functions or in_file("gateway/mqtt_wire.py"):
        return "MQTT publish"
    if in_file("gateway/encode.py"):
        return "encode"
    if {"Buffer.take", "Buffer.max_id", "Buffer.wait_committed", "Buffer.backlog"} & functions:
        return "read-back"
    if {"Buffer.add", "Buffer._write_loop", "Buffer._commit"} & functions or in_file(
        "buffer/codec.py",
        "buffer/rows.py",  # the row encoding (rows.py from buffer schema 2)
    ):
        return "buffer commit"
    if in_file("gateway/runtime.py", "connectors/", "pymodbus/", "asyncua/"):
        return "scan and decode"
    if in_file("gateway/publisher.py", "gateway/window.py", "gateway/replay.py"):
        return "publisher"
    return "event loop"


@dataclass
class Breakdown:
    """Working samples per area and per innermost frame in each area; waiting samples."""

    areas: Tally[str] = field(default_factory=Tally)
    hottest: dict[str, Tally[str]] = field(default_factory=lambda: defaultdict(Tally))
    waiting: int = 0


def breakdown(raw: Iterable[str]) -> Breakdown:
    """Sort py-spy's raw samples into areas."""
    result = Breakdown()
    for line in raw:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        thread, parsed = frames(stack)
        if idle(parsed):
            result.waiting += int(count)
            continue
        name = area(thread, parsed)
        result.areas[name] += int(count)
        function, file, _ = parsed[-1] if parsed else ("(native)", "", 0)
        result.hottest[name][f"{function} ({file})"] += int(count)
    return result


def find_py_spy() -> str:
    """py-spy in the venv or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.is_file() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed; run: make bench-tools")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="recorded")
    parser.add_argument("--warmup", type=float, default=5.0, help="after the first value")
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--layout", choices=["per_tag", "per_batch"], default="per_tag")
    parser.add_argument(
        "--protocol",
        choices=["modbus", "opcua"],
        default="modbus",
        help="the source: Modbus polled, or OPC UA subscribed (as bench.peers runs them)",
    )
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    args = parser.parse_args()
    py_spy = find_py_spy()
    case = Case("profile", args.protocol, args.tags, args.layout, "profiled")
    with tempfile.TemporaryDirectory(prefix="plantgate-profile-") as tmp:
        work = Path(tmp)
        raw = args.raw or work / "raw.txt"
        port = free_port()
        broker = Mosquitto(work / "broker", persistence=False)
        with simulator(case, port):
            broker.start()
            counter = Counter(broker.port, f"{PREFIX}/{case.source}/#")
            try:
                argv = plantgate_argv(case, work, broker.port, port)
                with side_process(argv, work / "plantgate.log") as proc:
                    deadline = time.monotonic() + 120
                    while counter.values == 0:
                        if proc.poll() is not None or time.monotonic() > deadline:
                            log = (work / "plantgate.log").read_text()[-3000:]
                            raise SystemExit(f"plantgate published nothing:\n{log}")
                        time.sleep(0.1)
                    time.sleep(args.warmup)
                    cpu0, values0, t0 = proc_cpu_seconds(proc.pid), counter.values, time.monotonic()
                    subprocess.run(
                        [
                            py_spy,
                            "record",
                            "--pid",
                            str(proc.pid),
                            "--threads",
                            "--rate",
                            str(args.rate),
                            "--duration",
                            str(round(args.seconds)),
                            "--format",
                            "raw",
                            "--output",
                            str(raw),
                        ],
                        check=True,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    cpu = proc_cpu_seconds(proc.pid) - cpu0
                    values, wall = counter.values - values0, time.monotonic() - t0
            finally:
                counter.stop()
                broker.stop()
        with raw.open() as f:
            found = breakdown(f)
    working = sum(found.areas.values())
    per_value = 1e6 * cpu / values if values else float("nan")
    rows = [("area", "samples", "% of working", "us CPU per value")]
    hottest = []
    for name in AREAS:
        share = found.areas[name] / working if working else float("nan")
        rows.append(
            (name, str(found.areas[name]), f"{100 * share:.1f}", f"{share * per_value:.1f}")
        )
        top = ", ".join(
            f"{frame} {100 * n / working:.1f}%" for frame, n in found.hottest[name].most_common(3)
        )
        hottest.append(f"  {name}: {top}")
    rows.append(("all", str(working), "100.0", f"{per_value:.1f}"))
    print(
        table(
            f"plantgate {args.layout}, {args.tags:,} {args.protocol} tags every 100 ms, "
            f"{wall:.0f} s under "
            f"py-spy at {args.rate}/s: {values / wall:,.0f} values/s delivered, "
            f"{100 * cpu / wall:.0f}% of one core, {os.cpu_count()} cores; "
            f"{found.waiting} samples of waiting threads left out",
            rows,
        )
    )
    print("\nHottest innermost frames per area (% of working samples):")
    print("\n".join(hottest))


if __name__ == "__main__":
    main()
