"""Modbus scan benchmark: 10,000 holding-register tags of mixed types, scanned every second.

Reference in the same run: the raw pymodbus client reading the same register blocks back to
back, without decoding, once a second half-way between the gateway's scans (the two
alternate, so a noisy machine slows both alike).
Run: ``.venv/bin/python -m bench.modbus [--scans N] [--tags N] [--data plant|random]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from bench.common import CpuClock, free_port, peak_rss_mib, percentile, simulator_process, table
from connectors.modbus.codec import encode
from connectors.modbus.config import ModbusSource
from connectors.modbus.connector import ModbusConnector
from connectors.modbus.plan import ReadRequest, plan_reads
from gateway.models import Batch
from gateway.runtime import SourceRunner

TYPES = [("uint16", 1), ("int16", 1), ("float32", 2), ("uint32", 2), ("int32", 2), ("float64", 4)]
WEIGHTS = [30, 20, 30, 10, 5, 5]
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]


def tag_map(count: int, start: int = 1000) -> list[dict[str, Any]]:
    """``count`` adjacent holding-register tags of mixed types and byte orders."""
    rng = random.Random(3)
    tags, address = [], start
    for i in range(count):
        data_type, width = rng.choices(TYPES, WEIGHTS)[0]
        tag: dict[str, Any] = {
            "name": f"t{i:05d}",
            "address": f"holding:{address}",
            "type": data_type,
        }
        if width > 1:
            tag["byte_order"] = rng.choice(ORDERS)
        if i % 10 == 0 and data_type in ("uint16", "int16"):
            tag["multiplier"] = 0.1
        tags.append(tag)
        address += width
    return tags


INTEGER_RANGES = {
    "uint16": (0, 5000),
    "int16": (-2000, 2000),
    "uint32": (0, 1_000_000),
    "int32": (-1_000_000, 1_000_000),
}


def plant_values(tags: list[dict[str, Any]], start: int = 1000) -> tuple[list[int], list[float]]:
    """Registers holding values a plant would: temperatures, counts, setpoints of each type.

    The simulator's bulk area holds random bits, which as float32 are mostly numbers no
    device reports (1e-28, NaN) and cost the most to print shortest; ``--data random`` keeps
    them.
    """
    rng = random.Random(7)
    registers: list[int] = []
    values: list[float] = []
    for tag in tags:
        data_type = tag["type"]
        value: float
        if data_type == "float32":
            value = round(rng.uniform(-500, 500), 2)
        elif data_type == "float64":
            value = round(rng.uniform(-10_000, 10_000), 3)
        else:
            low, high = INTEGER_RANGES[data_type]
            value = rng.randrange(low, high)
        order = tag.get("byte_order", "ABCD")
        registers += encode(value, data_type, order)
        values.append(value)
    assert len(registers) == tag_end(tags, start) - start
    return registers, values


def tag_end(tags: list[dict[str, Any]], start: int) -> int:
    """The register after the last tag."""
    widths = dict(TYPES)
    return start + sum(widths[t["type"]] for t in tags)


@contextlib.asynccontextmanager
async def raw_client(port: int) -> AsyncIterator[AsyncModbusTcpClient]:
    """A bare pymodbus client, connected to the simulator."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0, reconnect_delay=0)
    await client.connect()
    try:
        yield client
    finally:
        client.close()


async def read_blocks(client: AsyncModbusTcpClient, blocks: list[ReadRequest]) -> None:
    """Read the blocks back to back, without decoding."""
    for block in blocks:
        await client.read_holding_registers(block.start, count=block.count, device_id=1)


async def write_plant_values(port: int, tags: list[dict[str, Any]], start: int = 1000) -> None:
    """Put :func:`plant_values` into the simulator's holding registers."""
    registers, _ = plant_values(tags, start)
    async with raw_client(port) as client:
        for at in range(0, len(registers), 120):
            await client.write_registers(start + at, registers[at : at + 120], device_id=1)


async def raw_reference(
    port: int, blocks: list[ReadRequest], scans: int, first_tick: float
) -> tuple[list[float], float]:
    """Scan durations of the bare pymodbus client reading the same blocks back to back, once a
    second from ``first_tick`` (monotonic): between the gateway's own scans, so that both see
    the same machine at the same moments. CPU per scan is counted inside the scans only."""
    durations, cpu = [], 0.0
    tick = first_tick
    async with raw_client(port) as client:
        for _ in range(scans + 1):  # the first is a warm-up, like the gateway's
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            tick += 1.0
            t0, c0 = time.perf_counter(), time.process_time()
            await read_blocks(client, blocks)
            durations.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
    return durations[1:], cpu / (scans + 1)


async def settle(port: int, blocks: list[ReadRequest], seconds: float = 5) -> None:
    """Read for a while first: the simulator process is still starting up."""
    until = time.monotonic() + seconds
    async with raw_client(port) as client:
        while time.monotonic() < until:
            await read_blocks(client, blocks)


async def gateway_scans(source: ModbusSource, scans: int) -> dict[str, Any]:
    """Run the real runtime (connector + report-by-exception + batches) on its 1 s ticks."""
    connector = ModbusConnector(source)
    batches: list[Batch] = []
    durations: list[float] = []
    runner = SourceRunner(source, source.tags, connector, batches.append)
    read = connector.read
    enough, warmed_up = asyncio.Event(), asyncio.Event()
    requests_at_warm_up: list[int] = []
    batches_at_warm_up: list[int] = []
    clock = CpuClock()  # from the end of the first scan: plans and decoders are built once

    async def timed_read(plan: Any) -> Any:
        t0 = time.perf_counter()
        samples = await read(plan)
        if warmed_up.is_set():
            durations.append(time.perf_counter() - t0)
        else:
            warmed_up.set()
            requests_at_warm_up.append(connector.requests_sent)
            batches_at_warm_up.append(len(batches) + 1)  # + this scan's, reported next
            clock.start()
        if len(durations) >= scans:
            clock.stop()
            enough.set()
        return samples

    scan_once = runner._scan
    scan_cpu: list[float] = []

    async def timed_scan(scan: Any, tick: float) -> None:  # the read and the report
        c0 = time.process_time()
        await scan_once(scan, tick)
        if warmed_up.is_set() and len(scan_cpu) < scans:
            scan_cpu.append(time.process_time() - c0)

    connector.read = timed_read  # type: ignore[method-assign]
    runner._scan = timed_scan  # type: ignore[method-assign]
    gc.freeze()  # as `plantgate run` does once the tag map is loaded
    task = asyncio.create_task(runner.run())
    await enough.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    readings = sum(len(b) for b in batches[batches_at_warm_up[0] : batches_at_warm_up[0] + scans])
    return {
        "durations": durations,
        "requests": (connector.requests_sent - requests_at_warm_up[0]) / max(1, len(durations)),
        "readings": readings,
        "wall": clock.wall,
        "cpu_percent": 100 * sum(scan_cpu) / clock.wall,  # the raw client's CPU left out
        "cpu_per_scan": sum(scan_cpu) / max(1, len(scan_cpu)),
        "last": batches[-1].values,
        "overruns": runner.stats.overruns,
    }


async def main_async(args: argparse.Namespace) -> str:
    port = free_port()
    tags = tag_map(args.tags)
    for tag in tags:
        tag["report"] = "always"
    source = ModbusSource.model_validate(
        {
            "name": "bench",
            "protocol": "modbus",
            "host": "127.0.0.1",
            "port": port,
            "scan": "1s",
            "tags": tags,
        }
    )
    blocks = plan_reads(source.tags, unit_id=1, max_registers=125, max_gap=0)
    with simulator_process(port):
        if args.data == "plant":
            await write_plant_values(port, tags)
        await settle(port, blocks)
        # The runtime's first tick is now; the raw client's half a second later.
        raw_task = asyncio.create_task(
            raw_reference(port, blocks, args.scans, time.monotonic() + 0.5)
        )
        gw = await gateway_scans(source, args.scans)
        raw, raw_cpu = await raw_task
    if args.data == "plant":  # the gateway read what was written (scaled tags aside)
        _, expected = plant_values(tags)
        wrong = [
            t["name"]
            for t, want, got in zip(tags, expected, gw["last"], strict=True)
            if "multiplier" not in t and got != want
        ]
        if wrong:
            raise SystemExit(f"{len(wrong)} tags read wrong, e.g. {wrong[:5]}")
    g50, g99 = percentile(gw["durations"], 50), percentile(gw["durations"], 99)
    r50, r99 = percentile(raw, 50), percentile(raw, 99)
    values_per_s = gw["readings"] / gw["wall"]
    rows = [
        ("", "gateway scan", "raw pymodbus blocks", "ratio"),
        ("tags", str(args.tags), str(args.tags), ""),
        ("requests per scan", f"{gw['requests']:.0f}", str(len(blocks)), ""),
        ("scan p50 (ms)", f"{g50 * 1000:.1f}", f"{r50 * 1000:.1f}", f"{g50 / r50:.2f}x"),
        ("scan p99 (ms)", f"{g99 * 1000:.1f}", f"{r99 * 1000:.1f}", f"{g99 / r99:.2f}x"),
        ("values/s published", f"{values_per_s:,.0f}", "", ""),
        ("CPU % of one core", f"{gw['cpu_percent']:.1f}", "", ""),
        ("CPU ms per scan", f"{gw['cpu_per_scan'] * 1000:.1f}", f"{raw_cpu * 1000:.1f}", ""),
        ("overruns", str(gw["overruns"]), "", ""),
        ("peak RSS (MiB)", f"{peak_rss_mib():.0f}", "", ""),
    ]
    title = f"Modbus scan: {args.tags} tags every 1 s, {args.scans} scans, {args.data} values"
    return table(f"{title} (targets: p50 <= 1.5x raw, < 250 ms)", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument(
        "--data", choices=["plant", "random"], default="plant", help="what the registers hold"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    print(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
