"""Logix scan benchmark: 1,000 DINT/REAL tags plus one REAL[1000], scanned every 500 ms.

The simulator runs in its own process with a tag database built for the benchmark. Reference
in the same run: plain pycomm3 reading the same tag list with one ``read(*tags)`` per scan,
back to back. Run: ``.venv/bin/python -m bench.logix [--scans N] [--tags N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

from pycomm3 import LogixDriver

from bench.common import (
    CpuClock,
    free_port,
    peak_rss_mib,
    percentile,
    serve_until_sigterm,
    serving,
    table,
)
from connectors.logix.config import LogixSource
from connectors.logix.connector import LogixConnector
from gateway.models import Batch
from gateway.runtime import SourceRunner
from simulators.logix import LogixSimulator
from simulators.logix.tags import TagDatabase, TagSpec
from simulators.logix.types import DINT, REAL

ARRAY = "Trend"
ARRAY_LEN = 1000
ROUNDS = 4


def tag_names(count: int) -> list[str]:
    """Half DINT, half REAL, interleaved as a real program's tag list would be."""
    return [f"{'D' if i % 2 == 0 else 'R'}{i:05d}" for i in range(count)]


def database(count: int) -> TagDatabase:
    """The benchmark's controller: ``count`` scalars and one REAL[1000]."""
    specs = [
        TagSpec(name, DINT, initial=i * 7) if name[0] == "D" else TagSpec(name, REAL, initial=i / 4)
        for i, name in enumerate(tag_names(count))
    ]
    specs.append(TagSpec(ARRAY, REAL, (ARRAY_LEN,), [i * 0.5 for i in range(ARRAY_LEN)]))
    return TagDatabase(specs)


async def serve(port: int, count: int) -> None:
    """Serve the benchmark database until SIGTERM (run in the simulator's own process)."""
    await serve_until_sigterm(LogixSimulator("127.0.0.1", port, database=database(count)))


def simulator(port: int, count: int) -> contextlib.AbstractContextManager[Any]:
    """The simulator in its own process, so its CPU is not counted as ours."""
    return serving(
        [sys.executable, "-m", "bench.logix", "--serve", str(port), "--tags", str(count)],
        port,
        timeout=120,
    )


class CountingDriver(LogixDriver):
    """Plain pycomm3, counting the packets it sends."""

    packets = 0

    def _send(self, message: bytes) -> Any:
        self.packets += 1
        return super()._send(message)  # type: ignore[no-untyped-call]


def reference(port: int, requests: list[str], scans: int, interval: float) -> dict[str, Any]:
    """Plain pycomm3: one ``read(*tags)`` per scan, every ``interval`` s (0: back to back)."""
    plc = CountingDriver(f"127.0.0.1:{port}")
    plc.open()  # type: ignore[no-untyped-call]
    try:
        results = plc.read(*requests)  # warm-up
        bad = [r.tag for r in results if r.error]
        packets, durations, clock = plc.packets, [], CpuClock()
        clock.start()
        tick = time.perf_counter()
        for _ in range(scans):
            tick += interval
            time.sleep(max(0.0, tick - time.perf_counter()))
            t0 = time.perf_counter()
            plc.read(*requests)
            durations.append(time.perf_counter() - t0)
        clock.stop()
        return {
            "durations": durations,
            "requests": (plc.packets - packets) / scans,
            "cpu": clock.cpu / scans,
            "bad": bad,
        }
    finally:
        plc.close()  # type: ignore[no-untyped-call]


async def gateway_scans(source: LogixSource, scans: int) -> dict[str, Any]:
    """The real runtime (connector, report-by-exception, batches) on its 500 ms ticks."""
    connector = LogixConnector(source)
    batches: list[Batch] = []
    durations: list[float] = []
    sent = -1  # requests before the first counted scan; -1 while warming up

    def emit(batch: Batch) -> None:
        if sent >= 0 and durations:  # the warm-up scan's batch is not counted
            batches.append(batch)

    runner = SourceRunner(source, source.tags, connector, emit)
    read, driver_read = connector.read, connector._read
    enough = asyncio.Event()
    in_driver: list[float] = []

    def timed_driver_read(*args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return driver_read(*args)
        finally:
            in_driver.append(time.perf_counter() - t0)

    async def timed_read(plan: Any) -> Any:
        nonlocal sent
        t0 = time.perf_counter()
        samples = await read(plan)
        if sent < 0:  # the first scan warms up (first replies, first values): not counted
            sent = connector.requests_sent
            clock.start()  # from here, ``scans`` more ticks of 500 ms
            return samples
        durations.append(time.perf_counter() - t0)
        overhead.append(durations[-1] - in_driver[-1])
        if len(durations) >= scans:
            clock.stop()
            enough.set()
        return samples

    overhead: list[float] = []  # the connector's own time: a scan minus pycomm3's read
    connector.read = timed_read  # type: ignore[method-assign]
    connector._read = timed_driver_read  # type: ignore[method-assign,assignment]
    clock = CpuClock()
    task = asyncio.create_task(runner.run())
    await enough.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    readings = [r for b in batches for r in b.readings]
    return {
        "durations": durations,
        "overhead": overhead,
        "requests": (connector.requests_sent - sent) / len(durations),
        "readings": len(readings),
        "bad": sorted({r.tag for r in readings if r.quality.value != "good"}),
        "values": sum(len(r.value) if isinstance(r.value, list) else 1 for r in readings),
        "wall": clock.wall,
        "cpu": clock.cpu,
        "overruns": runner.stats.overruns,
    }


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one measurement as one: lists joined, counts summed, rates averaged."""
    out: dict[str, Any] = {}
    for key, first in rounds[0].items():
        values = [r[key] for r in rounds]
        if isinstance(first, list):
            out[key] = [v for r in values for v in r]
        elif key == "requests":
            out[key] = sum(values) / len(values)
        else:
            out[key] = sum(values)
    return out


async def main_async(args: argparse.Namespace) -> str:
    port = free_port()
    names = [*tag_names(args.tags), ARRAY]
    source = LogixSource.model_validate(
        {
            "name": "bench",
            "protocol": "logix",
            "host": "127.0.0.1",
            "port": port,
            "scan": "500ms",
            "tags": [{"name": n, "address": n, "report": "always"} for n in names],
        }
    )
    requests = [*tag_names(args.tags), f"{ARRAY}{{{ARRAY_LEN}}}"]
    with simulator(port, args.tags):
        ref = await asyncio.to_thread(reference, port, requests, args.scans, 0.0)
        # Alternating rounds spread a busy machine's noise over both measurements alike.
        paced_rounds, gw_rounds = [], []
        for _ in range(ROUNDS):
            per_round = max(1, args.scans // ROUNDS)
            paced_rounds.append(await asyncio.to_thread(reference, port, requests, per_round, 0.5))
            gw_rounds.append(await gateway_scans(source, per_round))
        paced, gw = merge(paced_rounds), merge(gw_rounds)
    if ref["bad"] or gw["bad"]:
        raise SystemExit(f"bad tags: reference {ref['bad'][:5]}, gateway {gw['bad'][:5]}")
    g50, g99 = percentile(gw["durations"], 50), percentile(gw["durations"], 99)
    r50, r99 = percentile(ref["durations"], 50), percentile(ref["durations"], 99)
    scans = len(gw["durations"])
    p50, p99 = percentile(paced["durations"], 50), percentile(paced["durations"], 99)
    o50, o99 = percentile(gw["overhead"], 50), percentile(gw["overhead"], 99)
    rows = [
        ("", "gateway", "pycomm3 paced", "pycomm3 back to back", "gateway/paced"),
        ("tags", str(len(names)), str(len(requests)), str(len(requests)), ""),
        ("CIP requests per scan", f"{gw['requests']:.1f}", f"{paced['requests']:.1f}", "", ""),
        ("scan p50 (ms)", ms(g50), ms(p50), ms(r50), f"{g50 / p50:.2f}x"),
        ("scan p99 (ms)", ms(g99), ms(p99), ms(r99), f"{g99 / p99:.2f}x"),
        ("connector overhead p50/p99 (ms)", f"{ms(o50)}/{ms(o99)}", "", "", ""),
        ("readings/s published", f"{gw['readings'] / gw['wall']:,.0f}", "", "", ""),
        ("values/s (array elements counted)", f"{gw['values'] / gw['wall']:,.0f}", "", "", ""),
        ("CPU % of one core", f"{100 * gw['cpu'] / gw['wall']:.1f}", "", "", ""),
        ("CPU ms per scan", ms(gw["cpu"] / scans), ms(paced["cpu"] / ROUNDS), ms(ref["cpu"]), ""),
        ("overruns", str(gw["overruns"]), "", "", ""),
        ("peak RSS (MiB)", f"{peak_rss_mib():.0f}", "", "", ""),
    ]
    title = (
        f"Logix scan: {args.tags} DINT/REAL + REAL[{ARRAY_LEN}] every 500 ms, {args.scans} scans"
    )
    return table(title, rows)


def ms(seconds: float) -> str:
    """Seconds as milliseconds with one decimal."""
    return f"{seconds * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--scans", type=int, default=40)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pycomm3").setLevel(logging.CRITICAL)
    if args.serve:
        asyncio.run(serve(args.serve, args.tags))
        return
    print(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
