"""Revisions benchmark: the same JSON pipeline cases run by several git revisions of the gateway.

Each revision is exported with ``git archive`` into a temporary directory, and its gateway runs
from there (``cwd`` and ``PYTHONPATH`` of that tree, so its own ``gateway``, ``buffer`` and
``connectors`` are imported; this venv's packages, whose pins only grew since). Everything else
is this tree's and the same for every revision: bench.pipeline's tag map (10,000 adjacent
holding registers every 100 ms, ``report: always``), the Modbus simulator in its own process,
a fresh mosquitto per run and ``mosquitto_sub`` (QoS 1) as the subscriber, counted by a thread
here as bench.peers does, which also records every ``seq`` it sees.

Runs are interleaved (round 1: A, B, C for each case; round 2: the same again…), so drift in the
machine's load falls on every revision alike. Figures per run, over the window after a warm-up:
readings/s delivered to mosquitto_sub, readings/s committed to the buffer (its ``last_seq``),
gateway CPU (user + system) as % of one core and per reading delivered, the broker's and the
subscriber's CPU (to show when they set the pace), and value age (arrival
at mosquitto_sub minus the payload's ``ts``). After the window the gateway is stopped with
SIGTERM; ``lost`` is the seqs missing below the highest one received, ``unsent`` what was
committed above it (still in the buffer at the stop, not lost). The table gives the median of
the rounds and each revision's ratio to the first revision's.

Run: ``.venv/bin/python -m bench.revisions
[--revisions 4fae3e3^,4fae3e3,HEAD] [--cases per_tag,per_batch] [--rounds 3] [--seconds 20]``
(needs ``mosquitto_sub``: ``make mosquitto-clients``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import cpu_count, free_port, percentile, simulator_process, table, terminate
from bench.peers import Counter
from bench.pipeline import PREFIX, config, last_seq, proc_cpu_seconds
from simulators.broker import Mosquitto

REPO = Path(__file__).resolve().parent.parent
SEQ = re.compile(rb'"seq":(\d+)')


@dataclass(frozen=True)
class Revision:
    """One git revision exported into its own directory."""

    name: str  # as asked, e.g. 4fae3e3^
    commit: str  # its full hash
    tree: Path

    @property
    def label(self) -> str:
        """The name as asked, with the short hash when the name is not one."""
        short = self.commit[:7]
        return self.name if self.commit.startswith(self.name) else f"{self.name} ({short})"

    def env(self) -> dict[str, str]:
        """The environment that makes a Python process import this tree's packages."""
        return {**os.environ, "PYTHONPATH": str(self.tree)}


def git(*args: str) -> bytes:
    """The output of a git command in this repository."""
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True).stdout


def export(name: str, into: Path) -> Revision:
    """The revision ``name`` as a plain tree under ``into`` (``git archive``, no worktree)."""
    commit = git("rev-parse", "--verify", f"{name}^{{commit}}").decode().strip()
    tree = into / commit[:12]
    tree.mkdir()
    archive = into / f"{commit[:12]}.tar"
    archive.write_bytes(git("archive", "--format=tar", commit))
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    revision = Revision(name, commit, tree)
    # The editable install of this checkout must not win over PYTHONPATH: say so if it does.
    where = subprocess.run(
        [sys.executable, "-c", "import gateway, buffer; print(gateway.__file__, buffer.__file__)"],
        cwd=tree,
        env=revision.env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if not all(Path(w).is_relative_to(tree) for w in where):
        raise SystemExit(f"{name}: the gateway would be imported from {where}, not from {tree}")
    return revision


class Seqs:
    """Every ``seq`` in mosquitto_sub's output, fed as it is read (a line may straddle reads)."""

    def __init__(self) -> None:
        self.seen = bytearray()  # one byte per seq: 1 once received
        self.top = 0  # the highest seq received
        self._partial = b""  # a line not yet ended in the last read
        self.lock = threading.Lock()  # fed by the counting thread, asked by the main one

    def feed(self, chunk: bytes) -> None:
        """Mark the seqs of the lines this read completes."""
        head, _, self._partial = (self._partial + chunk).rpartition(b"\n")
        seqs = [int(s) for s in SEQ.findall(head)]
        if not seqs:
            return
        with self.lock:
            top = max(seqs)
            if top >= len(self.seen):  # grow in big steps
                self.seen.extend(bytes(max(top + 1 - len(self.seen), len(self.seen), 1 << 20)))
            for s in seqs:
                self.seen[s] = 1
            self.top = max(self.top, top)

    def missing(self, upto: int) -> int:
        """Seqs 1..upto not received."""
        with self.lock:
            have = min(len(self.seen), upto + 1)
            return self.seen.count(0, 1, have) + max(0, upto + 1 - have)


class SeqCounter(Counter):
    """mosquitto_sub counted as bench.peers does, and every reading's ``seq`` recorded."""

    def __init__(self, port: int, topic: str) -> None:
        self.seqs = Seqs()  # before the counting thread starts
        super().__init__(port, topic)

    def feed(self, chunk: bytes) -> None:
        """Count one read of the output and mark its seqs."""
        super().feed(chunk)
        self.seqs.feed(chunk)


@dataclass
class Run:
    """The figures of one revision on one case in one round."""

    rate: float  # readings/s delivered to mosquitto_sub
    committed: float  # readings/s committed to the buffer
    cpu: float  # gateway CPU, % of one core
    broker: float  # mosquitto's CPU, % of one core
    subscriber: float  # mosquitto_sub's CPU and this process's (the counting thread), likewise
    us: float  # gateway CPU per reading delivered, microseconds
    p50: float
    p99: float
    lost: int
    unsent: int


def others_cpu(broker: int, subscriber: int) -> tuple[float, float]:
    """CPU seconds so far of the broker, and of mosquitto_sub with this process's counting."""
    return proc_cpu_seconds(broker), proc_cpu_seconds(subscriber) + time.process_time()


@contextlib.contextmanager
def gateway(revision: Revision, cfg: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``plantgate run`` of ``revision`` on ``cfg``; SIGTERM (its clean stop) at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
            cwd=revision.tree,
            env=revision.env(),
            stdout=out,
            stderr=out,
        )
    try:
        yield proc
    finally:
        terminate(proc, 60, f"the gateway (log: {log})")


def run_case(
    revision: Revision, layout: str, work: Path, modbus: int, args: argparse.Namespace
) -> Run:
    """One run: fresh broker, subscriber and buffer; the revision's gateway for the window."""
    work.mkdir(parents=True)
    broker = Mosquitto(work / "broker", persistence=False)
    broker.start()
    assert broker.proc is not None
    counter = SeqCounter(broker.port, f"{PREFIX}/press1/#")
    cfg = config(work, broker.port, modbus, args.tags, layout, "normal")
    db = work / "buffer.db"
    log = work / "gateway.log"
    try:
        with gateway(revision, cfg, log) as proc:
            deadline = time.monotonic() + 120
            while counter.values == 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{revision.label} published nothing:\n{log.read_text()}")
                time.sleep(0.1)
            time.sleep(args.warmup)
            cpu0, read0 = proc_cpu_seconds(proc.pid), last_seq(db)
            others0 = others_cpu(broker.proc.pid, counter.proc.pid)
            t0, values0 = time.monotonic(), counter.values
            counter.sampling = True
            time.sleep(args.seconds)
            counter.sampling = False
            t1, values1 = time.monotonic(), counter.values
            cpu1, read1 = proc_cpu_seconds(proc.pid), last_seq(db)
            others1 = others_cpu(broker.proc.pid, counter.proc.pid)
            if proc.poll() is not None:
                raise SystemExit(f"{revision.label} exited:\n{log.read_text()[-3000:]}")
        committed = last_seq(db)
        # What the stopped gateway sent may still be on its way through the broker.
        deadline = time.monotonic() + 30
        while counter.seqs.missing(counter.seqs.top) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        counter.stop()
        broker.stop()
    wall, values = t1 - t0, values1 - values0
    return Run(
        rate=values / wall,
        committed=(read1 - read0) / wall,
        cpu=100 * (cpu1 - cpu0) / wall,
        broker=100 * (others1[0] - others0[0]) / wall,
        subscriber=100 * (others1[1] - others0[1]) / wall,
        us=1e6 * (cpu1 - cpu0) / values if values else float("nan"),
        p50=percentile(counter.ages, 50),
        p99=percentile(counter.ages, 99),
        lost=counter.seqs.missing(counter.seqs.top),
        unsent=committed - counter.seqs.top,
    )


@dataclass
class Figures:
    """The runs of one revision on one case, over the rounds."""

    runs: list[Run] = field(default_factory=list)

    def median(self, key: str) -> float:
        """The median of one figure over the rounds."""
        return float(statistics.median(getattr(r, key) for r in self.runs))

    def spread(self, key: str) -> str:
        """The rounds' lowest and highest value of one figure."""
        values = [getattr(r, key) for r in self.runs]
        return f"{min(values):,.0f}-{max(values):,.0f}"


HEADER = (
    "case",
    "revision",
    "readings/s",
    "rounds' range",
    "of asked",
    "committed/s",
    "CPU %",
    "broker CPU %",
    "sub CPU %",
    "CPU us/reading",
    "age p50 ms",
    "age p99 ms",
    "lost",
    "unsent",
    "readings/s vs first",
    "CPU/reading vs first",
)


def rows_of(
    layout: str, revisions: Sequence[Revision], figures: dict[tuple[str, str], Figures], asked: int
) -> list[tuple[str, ...]]:
    """One row per revision of a case, with its ratios to the first revision."""
    first = figures[(layout, revisions[0].commit)]
    rows: list[tuple[str, ...]] = []
    for revision in revisions:
        f = figures[(layout, revision.commit)]
        rows.append(
            (
                layout,
                revision.label,
                f"{f.median('rate'):,.0f}",
                f.spread("rate"),
                f"{f.median('rate') / asked:.2f}",
                f"{f.median('committed'):,.0f}",
                f"{f.median('cpu'):.0f}",
                f"{f.median('broker'):.0f}",
                f"{f.median('subscriber'):.0f}",
                f"{f.median('us'):.1f}",
                f"{f.median('p50'):.0f}",
                f"{f.median('p99'):.0f}",
                str(sum(r.lost for r in f.runs)),
                str(sum(r.unsent for r in f.runs)),
                f"{f.median('rate') / first.median('rate'):.2f}x",
                f"{f.median('us') / first.median('us'):.2f}x",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--revisions",
        default="4fae3e3^,4fae3e3,HEAD",
        help="git revisions, the first being the reference",
    )
    parser.add_argument("--cases", default="per_tag,per_batch", help="JSON layouts")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="after the first reading")
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="work here and keep the logs and configs")
    args = parser.parse_args()
    layouts = [c.strip() for c in args.cases.split(",") if c.strip()]
    if any(layout not in ("per_tag", "per_batch") for layout in layouts):
        raise SystemExit("--cases: choose from per_tag,per_batch")
    asked = args.tags * 10
    load = os.getloadavg()
    figures: dict[tuple[str, str], Figures] = {}
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = args.keep
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="plantgate-revs-")))
        trees = work / "trees"
        trees.mkdir()
        revisions = [export(name.strip(), trees) for name in args.revisions.split(",")]
        modbus = free_port()
        stack.enter_context(simulator_process(modbus))
        for n in range(args.rounds):
            for layout in layouts:
                for revision in revisions:
                    run = run_case(
                        revision,
                        layout,
                        work / f"{n}-{layout}-{revision.commit[:12]}",
                        modbus,
                        args,
                    )
                    figures.setdefault((layout, revision.commit), Figures()).runs.append(run)
                    print(
                        f"round {n + 1}, {layout}, {revision.label}: {run.rate:,.0f} readings/s, "
                        f"{run.us:.1f} us CPU per reading, age p50 {run.p50:.0f} ms, "
                        f"lost {run.lost}, unsent {run.unsent}",
                        flush=True,
                    )
    rows: list[tuple[str, ...]] = [HEADER]
    for layout in layouts:
        rows += rows_of(layout, revisions, figures, asked)
    print()
    print(
        table(
            f"Revisions: {args.tags:,} tags every 100 ms ({asked:,} readings/s asked), "
            f"counted by mosquitto_sub; median of {args.rounds} interleaved rounds of "
            f"{args.seconds:g} s after {args.warmup:g} s warm-up; {cpu_count()} cores, "
            f"load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end",
            rows,
        )
    )


if __name__ == "__main__":
    main()
