"""Shared helpers for the benchmarks: percentiles, CPU use, a simulator in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of some measurements."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class CpuClock:
    """CPU seconds used by this process between start() and stop(), against wall time."""

    wall: float = 0.0
    cpu: float = 0.0

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu

    @property
    def percent(self) -> float:
        """CPU use as % of one core."""
        return 100.0 * self.cpu / self.wall if self.wall else float("nan")


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def serving(argv: list[str], port: int, timeout: float = 60) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (a simulator), up once ``port`` accepts; SIGTERM at the end.

    Its own process, so its CPU is never counted as the gateway's.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{' '.join(argv)} did not listen on port {port}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def simulator_process(
    modbus_port: int,
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """``plantgate simulate`` serving Modbus alone on ``modbus_port``.

    Alone: the OPC UA simulator's value updates would share its event loop and delay replies.
    """
    argv = ["simulate", f"--modbus-port={modbus_port}", "--protocols=modbus"]
    return serving([sys.executable, "-m", "gateway", *argv], modbus_port)


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table(title: str, rows: Sequence[tuple[str, ...]]) -> str:
    """A plain text table; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title, ""]
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_count() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0))


class Simulator(Protocol):
    """What the benchmarks need of a simulator."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


async def serve_until_sigterm(sim: Simulator) -> None:
    """Run a simulator in this process until SIGTERM (the benchmark's server process)."""
    await sim.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await sim.stop()


def terminate(proc: subprocess.Popen[bytes], grace: float = 30, what: str | None = None) -> None:
    """SIGTERM a process and wait ``grace`` seconds for it, then SIGKILL it (saying so when
    ``what`` names it)."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        if what is not None:
            print(f"{what} did not stop within {grace:.0f} s", file=sys.stderr)
        proc.kill()
        proc.wait()
