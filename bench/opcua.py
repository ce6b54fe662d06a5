"""OPC UA benchmark: 1,000 and 10,000 variables that all change on every tick, both modes.

Ticks are 1 s, stretched to 4 s for 10,000 variables: the asyncua simulator cannot write more
than about 4,000 values/s on a small box, and a saturated simulator skews both sides.

The simulator runs in its own process (``bulk_variables``: Int32s that change on every tick,
each stamped with the moment the server takes its new value). Three stages per size and mode:

- ``bare``: the reference, a bare asyncua client in this process doing the same subscription
  (its handler counting notifications) or the same bulk reads;
- ``runtime``: the real runtime (SourceRunner + OpcUaConnector, report by exception) in this
  process, with a list as the emit sink: the connector's own cost and latency;
- ``mqtt``: the whole gateway (``plantgate run``) in its own process, publishing per tag to a
  local mosquitto; a paho subscriber in this process times each reading's arrival. This is
  the issue's figure: latency from the server's source timestamp to MQTT delivery, CPU and
  RSS of the gateway process.

Run: ``.venv/bin/python -m bench.opcua [--sizes 1000,10000] [--modes subscribe,poll]
[--stages bare,runtime,mqtt] [--seconds S] [--warmup S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as paho
import yaml
from asyncua import ua
from asyncua.client.client import Client
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import free_port, percentile, serve_until_sigterm, serving, table, terminate
from connectors.opcua.config import OpcUaSource
from connectors.opcua.connector import OpcUaConnector, chunks, read_request
from connectors.opcua.resolve import resolve
from gateway.models import Batch, Sample
from gateway.runtime import SourceRunner
from simulators.broker import Mosquitto
from simulators.opcua import OpcUaSimulator, bulk_names, nsu

STAGES = ("bare", "runtime", "mqtt")
MODES = ("subscribe", "poll")
PREFIX = "bench/opcua"


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


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid: int) -> float:
    """Current resident memory of a process, MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Window:
    """Counts and latencies inside a measurement window that opens after a warm-up.

    CPU and RSS are those of ``pid`` (default: this process); ``others`` are processes whose
    CPU is noted beside, to show who competes for the cores.
    """

    def __init__(
        self, expect: int, pid: int | None = None, others: dict[str, int] | None = None
    ) -> None:
        self.pid = pid or os.getpid()
        self.others = dict(others or {})
        self.expect = expect  # tags that must all have reported before the warm-up begins
        self.ready = threading.Event()
        self._seen: set[Any] = set()
        self.open = False
        self.received = 0
        self.published = 0
        self.latencies: list[float] = []
        self.wall = 0.0
        self.cpu = 0.0
        self.rss = float("nan")
        self.other_cpu: dict[str, float] = {}
        self._start: dict[int, float] = {}
        self._wall = 0.0

    def saw(self, keys: Iterable[Any]) -> None:
        """Note tags that reported (until every one has: then the warm-up may begin)."""
        if not self.ready.is_set():
            self._seen.update(keys)
            if len(self._seen) >= self.expect:
                self.ready.set()

    @property
    def seen(self) -> int:
        """Tags that reported so far (counted until all did)."""
        return len(self._seen)

    def start(self) -> None:
        self._start = {p: proc_cpu_seconds(p) for p in {self.pid, *self.others.values()}}
        self._wall = time.perf_counter()
        self.open = True

    def stop(self) -> None:
        self.open = False
        self.wall = time.perf_counter() - self._wall
        used = {p: proc_cpu_seconds(p) - t for p, t in self._start.items()}
        self.cpu = used[self.pid]
        self.other_cpu = {name: 100 * used[p] / self.wall for name, p in self.others.items()}
        self.rss = proc_rss_mib(self.pid)

    def row(self) -> dict[str, Any]:
        wall = self.wall or float("nan")
        return {
            "received/s": self.received / wall,
            "published/s": self.published / wall,
            "p50": percentile(self.latencies, 50),
            "p99": percentile(self.latencies, 99),
            "cpu": 100 * self.cpu / wall,
            "rss": self.rss,
        }


def source_dict(url: str, count: int, subscribe: bool) -> dict[str, Any]:
    """The bench source as YAML would give it."""
    # Subscribed, the scan only paces heartbeats (the runtime re-offers the latest values).
    timing = (
        {"scan": "1s", "sampling_interval": f"{PUBLISH}s", "publishing_interval": f"{PUBLISH}s"}
        if subscribe
        else {"scan": f"{SCAN}s"}
    )
    return {
        "name": "bench",
        "protocol": "opcua",
        "url": url,
        "subscribe": subscribe,
        **timing,
        "timeout": "30s",
        "connect_timeout": "60s",
        "watchdog": "5s",
        "tags": [{"name": f"v{i:05d}", "node": nsu(n)} for i, n in enumerate(bulk_names(count))],
    }


def source(url: str, count: int, subscribe: bool) -> OpcUaSource:
    """The bench source, validated."""
    return OpcUaSource.model_validate(source_dict(url, count, subscribe))


async def measure(window: Window, warmup: float, seconds: float) -> None:
    """Warm up once every tag reported (10,000 monitored items take seconds to create), then
    measure: every stage starts its window in the same state."""
    deadline = time.monotonic() + 300
    while not window.ready.is_set():
        if time.monotonic() > deadline:
            raise SystemExit(f"only {window.seen} of {window.expect} tags ever reported")
        await asyncio.sleep(0.1)
    await asyncio.sleep(warmup)
    window.start()
    await asyncio.sleep(seconds)
    window.stop()


async def runtime(url: str, count: int, subscribe: bool, warmup: float, seconds: float) -> Window:
    """The real runtime with the OPC UA connector; readings go to a counting sink."""
    src = source(url, count, subscribe)
    connector = OpcUaConnector(src)
    window = Window(count)

    def emit(batch: Batch) -> None:
        if window.open:
            now_ms = time.time() * 1000
            window.published += len(batch.readings)
            window.latencies += [(now_ms - r.ts) / 1000 for r in batch.readings]

    if subscribe:
        subscribe_ = connector.subscribe

        async def counting_subscribe(tags: Any, deliver: Any) -> None:
            def counted(changes: Sequence[tuple[int, Sample]]) -> None:
                window.saw(i for i, _ in changes)
                if window.open:
                    window.received += len(changes)
                deliver(changes)

            await subscribe_(tags, counted)

        connector.subscribe = counting_subscribe  # type: ignore[method-assign]
    else:
        read_ = connector.read

        async def counting_read(plan: Any) -> list[Sample]:
            samples = await read_(plan)
            window.saw(range(len(samples)))  # one scan group: every scan reads every tag
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
    window = Window(count)
    # The gateway source's watchdog (5 s): asyncua's default probes every second with a 1 s
    # timeout, which a server busy writing 10,000 values can miss.
    client = Client(url, timeout=30, watchdog_intervall=5.0)
    client.session_timeout = 60_000
    async with client:
        namespaces = await client.get_namespace_array()
        nodes = resolve_bulk(namespaces, count)
        if subscribe:

            class Handler:
                def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                    window.saw((data.monitored_item.ClientHandle,))
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
                        window.saw(i for i, _ in chunk)
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


class Subscriber:
    """A paho QoS 1 subscriber that times each live reading's arrival into a Window."""

    def __init__(self, port: int, window: Window) -> None:
        self.window = window
        self.first = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-opcua-sub")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/bench/#", qos=1)
        self.client.on_message = self._on_message
        self.client.max_inflight_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now_ms = time.time() * 1000  # first: the time spent decoding is not the gateway's
        self.first.set()
        window = self.window
        if not window.ready.is_set():
            body = json.loads(msg.payload)
            window.saw([r.get("tag", msg.topic) for r in body.get("readings", [body])])
        if not window.open:
            return
        body = json.loads(msg.payload)
        if body.get("historical"):
            return
        for r in body.get("readings", [body]):  # per_batch: every reading of the message
            if r.get("quality") == "good":
                window.published += 1
                window.latencies.append((now_ms - r["ts"]) / 1000)


@contextlib.contextmanager
def gateway_process(
    work: Path, url: str, count: int, subscribe: bool, layout: str
) -> Iterator[Any]:
    """``plantgate run`` with the bench source, publishing to a fresh mosquitto."""
    broker = Mosquitto(work / "broker", persistence=False)
    broker.start()
    config = {
        "gateway": {
            "name": "bench",
            "buffer": {"path": str(work / "buffer.db")},
            "metrics_interval": "5s",
        },
        "mqtt": {"url": broker.url, "topic_prefix": PREFIX, "layout": layout},
        "sources": [source_dict(url, count, subscribe)],
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = (work / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(path)], stdout=log, stderr=log
    )
    try:
        yield broker, proc
    finally:
        terminate(proc)
        log.close()
        broker.stop()


async def end_to_end(
    url: str,
    count: int,
    subscribe: bool,
    warmup: float,
    seconds: float,
    sim_pid: int,
    layout: str,
) -> Window:
    """The gateway process end to end: source timestamp to arrival at an MQTT subscriber."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-opcua-") as tmp,
        gateway_process(Path(tmp), url, count, subscribe, layout) as (broker, proc),
    ):
        assert broker.proc is not None
        others = {"simulator": sim_pid, "mosquitto": broker.proc.pid, "subscriber": os.getpid()}
        window = Window(count, proc.pid, others)
        sub = Subscriber(broker.port, window)
        try:
            deadline = time.monotonic() + 120
            while not sub.first.is_set():
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (Path(tmp) / "gateway.log").read_text()[-2000:]
                    raise SystemExit(f"the gateway published nothing:\n{log}")
                await asyncio.sleep(0.1)
            await measure(window, warmup, seconds)
        finally:
            sub.stop()
    return window


def fmt(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        f"{row['received/s']:,.0f}",
        f"{row['published/s']:,.0f}",
        f"{row['p50'] * 1000:.0f}",
        f"{row['p99'] * 1000:.0f}",
        f"{row['cpu']:.0f}",
        f"{row['rss']:.0f}",
    )


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


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
        offered = f"{count / tick(count):,.0f}"
        with simulator(port, count) as sim:
            for mode in args.modes:
                subscribe = mode == "subscribe"
                windows: dict[str, Window] = {}
                if "bare" in args.stages:
                    windows["bare"] = await bare_asyncua(
                        url, count, subscribe, args.warmup, args.seconds
                    )
                if "runtime" in args.stages:
                    windows["runtime"] = await runtime(
                        url, count, subscribe, args.warmup, args.seconds
                    )
                if "mqtt" in args.stages:
                    windows["mqtt"] = await end_to_end(
                        url, count, subscribe, args.warmup, args.seconds, sim.pid, args.layout
                    )
                labels = {
                    "bare": "bare asyncua",
                    "runtime": "runtime",
                    "mqtt": f"gateway -> MQTT ({args.layout})",
                }
                results = {stage: w.row() for stage, w in windows.items()}
                for stage, row in results.items():
                    cells = fmt(row)
                    if stage == "mqtt":
                        cells = ("-", *cells[1:])  # the gateway's intake is not visible outside
                    rows.append((f"{count:,} {mode}: {labels[stage]}", offered, *cells))
                ref = results.get("bare")
                for stage in ("runtime", "mqtt"):
                    if ref is None or stage not in results:
                        continue
                    row = results[stage]
                    notes.append(
                        f"{count:,} {mode}: {labels[stage]}/bare asyncua = "
                        f"{ratio(row['published/s'], ref['published/s']):.2f}x published/s, "
                        f"{ratio(row['cpu'], ref['cpu']):.2f}x CPU, "
                        f"{ratio(row['p50'], ref['p50']):.2f}x p50, "
                        f"{ratio(row['p99'], ref['p99']):.2f}x p99 latency"
                    )
                if "mqtt" in windows:
                    others = ", ".join(
                        f"{name} {cpu:.0f}%" for name, cpu in windows["mqtt"].other_cpu.items()
                    )
                    notes.append(f"{count:,} {mode}: beside the gateway process: {others}")
    title = (
        "OPC UA: N Int32 variables, all changing on every simulator tick; "
        f"publishing {PUBLISH * 1000:.0f} ms, poll scan {SCAN * 1000:.0f} ms; "
        f"{args.seconds:g} s measured after {args.warmup:g} s warm-up; "
        f"CPU % of one core ({os.cpu_count()} cores), of the measured client process only"
    )
    return table(title, rows) + "\n\n" + "\n".join(notes)


def names(allowed: Sequence[str]) -> Any:
    """An argparse type: a comma-separated subset of ``allowed``, in the order given."""

    def parse(text: str) -> list[str]:
        chosen = [x.strip() for x in text.split(",") if x.strip()]
        unknown = [x for x in chosen if x not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
        return chosen

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000]
    )
    parser.add_argument("--modes", type=names(MODES), default=list(MODES), help="subscribe,poll")
    parser.add_argument(
        "--stages", type=names(STAGES), default=list(STAGES), help="bare,runtime,mqtt"
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument(
        "--layout", choices=["per_tag", "per_batch"], default="per_tag", help="of the MQTT stage"
    )
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
