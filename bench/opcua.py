"""OPC UA benchmark: 1,000 and 10,000 variables that all change on every tick, both modes.

Ticks are 1 s, stretched to 4 s for 10,000 variables: the asyncua simulator cannot write more
than about 4,000 values/s on a small box, and a saturated simulator skews both sides.

The simulator runs in its own process (``bulk_variables``: Int32s that change on every tick).
The gateway side is the real runtime (SourceRunner + OpcUaConnector, report by exception) with
a list as the emit sink. Reference in the same run, same process: a bare asyncua client doing
the same subscription (its handler counting notifications) and the same bulk reads.

Latency is from a value's source timestamp (the simulator's tick) to the reading leaving the
runtime (or the bare client's handler running). Run: ``.venv/bin/python -m bench.opcua
[--sizes 1000,10000] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

from asyncua import ua
from asyncua.client.client import Client

from bench.common import CpuClock, free_port, percentile, serve_until_sigterm, serving, table
from connectors.opcua.config import OpcUaSource
from connectors.opcua.connector import OpcUaConnector, chunks, read_request
from connectors.opcua.resolve import resolve
from gateway.models import Batch, Sample
from gateway.runtime import SourceRunner
from simulators.opcua import OpcUaSimulator, bulk_names, nsu


def tick(count: int) -> float:
    """Seconds between simulator ticks: one asyncua server writes about 4,000 values/s here."""
    return max(1.0, count / 2500)


# Finer than the tick so no change is missed; a change waits for the next publish (or scan),
# so latency includes up to one interval, at a phase that varies from run to run.
PUBLISH = 0.05  # subscribe: sampling and publishing interval
SCAN = 0.25  # poll: scan interval


async def serve(port: int, count: int) -> None:
    """Serve ``count`` bulk variables until SIGTERM (in the simulator's own process)."""
    await serve_until_sigterm(OpcUaSimulator(port=port, interval=tick(count), bulk_variables=count))


def simulator(port: int, count: int) -> contextlib.AbstractContextManager[Any]:
    """The simulator in its own process, so its CPU is not counted as ours."""
    return serving(
        [sys.executable, "-m", "bench.opcua", "--serve", str(port), "--sizes", str(count)],
        port,
        timeout=120,
    )


def rss_mib() -> float:
    """Current resident memory of this process, MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Window:
    """Counts and latencies inside a measurement window that opens after a warm-up."""

    def __init__(self) -> None:
        self.open = False
        self.received = 0
        self.published = 0
        self.latencies: list[float] = []
        self.clock = CpuClock()

    def start(self) -> None:
        self.open = True
        self.clock.start()

    def stop(self) -> None:
        self.clock.stop()
        self.open = False

    def row(self) -> dict[str, Any]:
        wall = self.clock.wall
        return {
            "received/s": self.received / wall,
            "published/s": self.published / wall,
            "p50": percentile(self.latencies, 50),
            "p99": percentile(self.latencies, 99),
            "cpu": self.clock.percent,
            "rss": rss_mib(),
        }


def source(url: str, count: int, subscribe: bool) -> OpcUaSource:
    # Subscribed, the scan only paces heartbeats (the runtime re-offers the latest values).
    timing = (
        {"scan": "1s", "sampling_interval": f"{PUBLISH}s", "publishing_interval": f"{PUBLISH}s"}
        if subscribe
        else {"scan": f"{SCAN}s"}
    )
    return OpcUaSource.model_validate(
        {
            "name": "bench",
            "protocol": "opcua",
            "url": url,
            "subscribe": subscribe,
            **timing,
            "timeout": "30s",
            "connect_timeout": "60s",
            "watchdog": "5s",
            "tags": [
                {"name": f"v{i:05d}", "node": nsu(n)} for i, n in enumerate(bulk_names(count))
            ],
        }
    )


async def measure(window: Window, warmup: float, seconds: float) -> None:
    await asyncio.sleep(warmup)
    window.start()
    await asyncio.sleep(seconds)
    window.stop()


async def gateway(url: str, count: int, subscribe: bool, warmup: float, seconds: float) -> Window:
    """The real runtime with the OPC UA connector; readings go to a counting sink."""
    src = source(url, count, subscribe)
    connector = OpcUaConnector(src)
    window = Window()

    def emit(batch: Batch) -> None:
        if window.open:
            now_ms = time.time() * 1000
            window.published += len(batch.readings)
            window.latencies += [(now_ms - r.ts) / 1000 for r in batch.readings]

    if subscribe:
        subscribe_ = connector.subscribe

        async def counting_subscribe(tags: Any, deliver: Any) -> None:
            def counted(changes: Sequence[tuple[int, Sample]]) -> None:
                if window.open:
                    window.received += len(changes)
                deliver(changes)

            await subscribe_(tags, counted)

        connector.subscribe = counting_subscribe  # type: ignore[method-assign]
    else:
        read_ = connector.read

        async def counting_read(tags: Any) -> list[Sample]:
            samples = await read_(tags)
            if window.open:
                window.received += len(samples)
            return samples

        connector.read = counting_read  # type: ignore[method-assign]

    runner = SourceRunner(src, src.tags, connector, emit)
    task = asyncio.create_task(runner.run())
    try:
        await measure(window, warmup, seconds)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    bad = runner.stats.last_error
    if bad:
        raise SystemExit(f"gateway source failed: {bad}")
    return window


async def bare_asyncua(
    url: str, count: int, subscribe: bool, warmup: float, seconds: float
) -> Window:
    """The reference: a bare asyncua client doing the same subscription or the same reads."""
    window = Window()
    client = Client(url, timeout=30)
    client.session_timeout = 60_000
    async with client:
        namespaces = await client.get_namespace_array()
        nodes = resolve_bulk(namespaces, count)
        if subscribe:

            class Handler:
                def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                    if window.open:
                        window.received += 1
                        window.published += 1
                        stamp = data.monitored_item.Value.SourceTimestamp
                        window.latencies.append(time.time() - stamp.timestamp())

            sub = await client.create_subscription(PUBLISH * 1000, Handler())
            for chunk in chunks(list(enumerate(nodes)), 500):
                await sub.subscribe_data_change(
                    [client.get_node(n) for _, n in chunk],
                    sampling_interval=cast("ua.Double", PUBLISH * 1000),
                )
            await measure(window, warmup, seconds)
            await sub.delete()
        else:

            async def poll() -> None:
                loop = asyncio.get_running_loop()
                next_at = loop.time()
                last: dict[int, Any] = {}
                while True:
                    for chunk in chunks(list(enumerate(nodes)), 500):
                        results = await client.uaclient.session.read(
                            read_request([n for _, n in chunk])
                        )
                        now = time.time()
                        for (i, _), data in zip(chunk, results, strict=True):
                            value = data.Value.Value if data.Value is not None else None
                            if window.open:
                                window.received += 1
                                if last.get(i) != value:
                                    window.published += 1
                                    stamp = data.SourceTimestamp
                                    if stamp is not None:
                                        window.latencies.append(now - stamp.timestamp())
                            last[i] = value
                    next_at += SCAN
                    while next_at <= loop.time():  # skip missed ticks, as the runtime does
                        next_at += SCAN
                    await asyncio.sleep(next_at - loop.time())

            task = asyncio.create_task(poll())
            try:
                await measure(window, warmup, seconds)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    return window


def resolve_bulk(namespaces: Sequence[str], count: int) -> list[ua.NodeId]:
    """The bulk variables' node ids in the running server's namespace indices."""
    return [resolve(tag.node, namespaces) for tag in source("opc.tcp://x:1", count, True).tags]


def fmt(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        f"{row['received/s']:,.0f}",
        f"{row['published/s']:,.0f}",
        f"{row['p50'] * 1000:.0f}",
        f"{row['p99'] * 1000:.0f}",
        f"{row['cpu']:.0f}",
        f"{row['rss']:.0f}",
    )


async def main_async(args: argparse.Namespace) -> str:
    header = (
        "",
        "offered/s",
        "changes/s in",
        "published/s",
        "p50 ms",
        "p99 ms",
        "CPU %",
        "RSS MiB",
    )
    rows: list[tuple[str, ...]] = [header]
    notes = []
    for count in args.sizes:
        port = free_port()
        url = f"opc.tcp://127.0.0.1:{port}"
        with simulator(port, count):
            for subscribe in (True, False):
                mode = "subscribe" if subscribe else "poll"
                ref = await bare_asyncua(url, count, subscribe, args.warmup, args.seconds)
                gw = await gateway(url, count, subscribe, args.warmup, args.seconds)
                g, r = gw.row(), ref.row()
                offered = f"{count / tick(count):,.0f}"
                rows.append((f"{count:,} {mode}: gateway", offered, *fmt(g)))
                rows.append((f"{count:,} {mode}: bare asyncua", offered, *fmt(r)))
                rate = g["published/s"] / r["published/s"] if r["published/s"] else float("nan")
                cpu = g["cpu"] / r["cpu"] if r["cpu"] else float("nan")
                p50 = g["p50"] / r["p50"] if r["p50"] else float("nan")
                notes.append(
                    f"{count:,} {mode}: gateway/bare asyncua = {rate:.2f}x published/s, "
                    f"{cpu:.2f}x CPU, {p50:.2f}x p50 latency"
                )
    title = (
        "OPC UA: N Int32 variables, all changing on every simulator tick; "
        f"publishing {PUBLISH * 1000:.0f} ms, poll scan {SCAN * 1000:.0f} ms; "
        f"{args.seconds:g} s measured after "
        f"{args.warmup:g} s warm-up; CPU % of one core, this process only"
    )
    return table(title, rows) + "\n\n" + "\n".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000]
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    if args.serve:
        asyncio.run(serve(args.serve, args.sizes[0]))
        return
    print(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
