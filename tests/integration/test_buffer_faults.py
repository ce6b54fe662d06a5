"""The buffer at its edges, through real parts: the size bound with the WAL under a long outage,
bytes overwritten in the database file, a database lost, a small real filesystem filling up.

Each test runs ``plantgate run`` as a process against the Modbus simulator and a real
mosquitto, damages or starves the real files, and proves the outcome from seq and counters.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from buffer.space import footprint
from simulators.broker import Mosquitto
from simulators.modbus import ModbusSimulator
from tests.faults import ROOT, GatewayProcess, audit, last_seq
from tests.helpers import Recorder, gateway_config, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TAGS = [{"name": f"r{i}", "address": f"holding:{1000 + i}", "report": "always"} for i in range(50)]
WIDE = [{"name": f"w{i}", "address": f"holding:{1000 + i}", "report": "always"} for i in range(200)]
MOVING = [{"name": f"m{i}", "address": f"holding:{i}", "report": "always"} for i in range(48)]


def config_with(tmp_path: Path, broker: int, modbus: int, **buffer: Any) -> dict[str, Any]:
    config = gateway_config(tmp_path, broker, modbus, tags=TAGS)
    config["sources"][0]["scan"] = "20ms"  # 2,500 readings/s
    config["gateway"]["buffer"].update(buffer)
    return config


@contextmanager
def sampling(path: Path) -> Iterator[list[int]]:
    """Sample the buffer's total bytes on disk every 10 ms while the block runs."""
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            samples.append(sum(footprint(path).values()))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def counters(db: Path) -> dict[str, tuple[int, int, int, int]]:
    """Each source's persisted (last_seq, dropped, corrupt, lost)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, last_seq, dropped, corrupt, lost FROM sources")
        return {name: tuple(rest) for name, *rest in rows}
    except sqlite3.OperationalError:  # the gateway is still creating it
        return {}
    finally:
        conn.close()


def test_the_size_bound_holds_with_the_wal_under_a_long_outage(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    max_bytes = 2 * 2**20
    config = config_with(tmp_path, mosquitto.port, modbus_sim_thread.port, max_bytes="2MiB")
    db = tmp_path / "buffer.db"
    mosquitto.stop()  # the outage: everything goes into the buffer, which overflows its bound
    log = tmp_path / "gw.log"
    with (
        sampling(db) as samples,
        GatewayProcess(write_config(tmp_path / "gw.yaml", config), log) as gw,
    ):
        wait_until(lambda: db.exists() and counters(db).get("press1", (0, 0))[1] > 20_000, 90)
        assert gw.terminate() == 0
    peak = max(samples)
    last, dropped, *_ = counters(db)["press1"]
    print(
        f"size bound: peak {peak / 2**20:.3f} MiB of {max_bytes / 2**20:.0f} MiB "
        f"({peak / max_bytes:.1%}) over {len(samples)} samples; {dropped} of {last} readings "
        "dropped, oldest first"
    )
    assert peak <= max_bytes, f"peak {peak} bytes over max_bytes {max_bytes}"
    assert dropped > 20_000


def damage_one_row(db: Path, nbytes: int = 22) -> tuple[int, int]:
    """Overwrite bytes inside one stored batch's values (the file stays a valid database).

    Returns the first seq and count of the damaged batch.
    """
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id, first_seq, count, vals FROM batches ORDER BY id").fetchall()
    finally:
        conn.close()
    data = bytearray(db.read_bytes())
    for _, first, count, vals in rows[len(rows) // 2 :]:  # one in the middle of the backlog
        at = data.find(vals)
        if at >= 0 and data.find(vals, at + 1) < 0:  # found once: it is this row's
            middle = at + len(vals) // 2 - nbytes // 2
            data[middle : middle + nbytes] = bytes(b ^ 0x5A for b in data[middle : middle + nbytes])
            db.write_bytes(bytes(data))
            check = sqlite3.connect(db)
            try:  # SQLite itself sees nothing wrong: only the row's checksum can tell
                assert check.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            finally:
                check.close()
            return int(first), int(count)
    raise AssertionError("no row found to damage")


@pytest.mark.parametrize("layout", ["per_tag", "per_batch"])
def test_a_damaged_row_is_quarantined_counted_and_the_rest_is_published(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator, layout: str
) -> None:
    config = config_with(tmp_path, mosquitto.port, modbus_sim_thread.port)
    config["mqtt"]["layout"] = layout
    config["sources"][0]["scan"] = "100ms"
    config["sources"][0]["tags"] = MOVING  # every stored batch holds other values
    path = write_config(tmp_path / "gw.yaml", config)
    db, log = tmp_path / "buffer.db", tmp_path / "gw.log"
    mosquitto.stop()
    with GatewayProcess(path, log) as gw:  # a backlog builds up while the broker is away
        wait_until(lambda: db.exists() and counters(db).get("press1", (0,))[0] >= 2000, 60)
        assert gw.terminate() == 0
    first, count = damage_one_row(db)
    mosquitto.start()
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    try:
        backlog = counters(db)["press1"][0]
        with GatewayProcess(path, log) as gw:
            damaged = set(range(first, first + count))
            gw.wait_gap_free(rec, lambda: last_seq(rec) > backlog + 100, 60, except_seqs=damaged)
            assert gw.proc is not None
            assert gw.proc.poll() is None  # still running
            assert gw.terminate() == 0
        state = counters(db)["press1"]
        result = audit(rec.readings("press1"), upto=state[0])
    finally:
        rec.stop()
    text = log.read_text()
    print(f"damaged row: seqs {first}..{first + count - 1}; {result.describe()}; counters {state}")
    assert result.missing == list(range(first, first + count))  # exactly the damaged batch
    assert state[2] == count  # ... counted as corrupt, persisted
    assert text.count("is damaged") == 1  # one line, once
    assert "quarantined, not published" in text
    assert "Traceback" not in text
    not_json = [m for m in rec.snapshot() if not isinstance(m.body, dict)]
    assert not not_json  # the garbage never went out, in either layout
    conn = sqlite3.connect(db)
    try:  # kept aside for inspection
        assert conn.execute("SELECT count FROM quarantine").fetchall() == [(count,)]
    finally:
        conn.close()


def test_seq_never_goes_backwards_when_the_database_is_lost(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    config = config_with(tmp_path, mosquitto.port, modbus_sim_thread.port)
    config["sources"][0]["scan"] = "100ms"
    path = write_config(tmp_path / "gw.yaml", config)
    db, log = tmp_path / "buffer.db", tmp_path / "gw.log"
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    jumps = []
    try:
        for round_ in ("header overwritten", "files deleted"):
            with GatewayProcess(path, log) as gw:
                start = last_seq(rec)
                wait_until(lambda s=start: last_seq(rec) >= s + 1000, 60, "readings before")
                if round_ == "header overwritten":
                    assert gw.terminate() == 0  # stopped cleanly: the WAL is folded in
                else:
                    gw.kill()
            before = last_seq(rec)
            if round_ == "header overwritten":  # SQLite cannot open it, nothing to salvage
                with open(db, "r+b") as f:
                    f.write(os.urandom(100))
            else:  # the volume was replaced: no database at all
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
            with GatewayProcess(path, log) as gw:
                wait_until(lambda b=before: last_seq(rec) > b + 200, 60, "readings after")
                assert gw.terminate() == 0
            seqs = {r["seq"] for r in rec.readings("press1")}
            jumps.append((round_, before, min(s for s in seqs if s > before)))
    finally:
        rec.stop()
    text = log.read_text()
    print(f"database lost: {jumps}")
    assert audit(rec.readings("press1")).conflicts == {}  # no seq was ever used twice
    for _, before, after in jumps:
        assert after > before + 1  # continued above the high-water mark, never below
    assert "moved aside" in text
    assert text.count("seq continues at") == 2  # each jump is said, with where it continues
    assert [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


def in_small_filesystem(size: str, command: list[str], mount: Path) -> list[str]:
    """``command`` in a private mount namespace where ``mount`` is a tmpfs of ``size``."""
    script = f'mount -t tmpfs -o size={size} tmpfs "{mount}" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", *command]


def fill(path: Path) -> int:
    """Write into ``path`` until its filesystem is full; the bytes written."""
    written = 0
    with open(path, "wb") as f:
        try:
            while True:
                written += f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return written


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_a_small_filesystem_and_then_a_full_disk_are_survived(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    config = config_with(tmp_path, mosquitto.port, modbus_sim_thread.port)
    config["sources"][0]["tags"] = WIDE  # 10,000 readings/s
    config["mqtt"]["layout"] = "per_batch"  # what a Python subscriber can count at that rate
    config["gateway"]["buffer"]["path"] = str(small / "buffer.db")  # 1 GiB allowed, 3 MiB real
    path = write_config(tmp_path / "gw.yaml", config)
    log = tmp_path / "gw.log"
    command = [sys.executable, "-m", "gateway", "run", "-c", str(path)]
    mosquitto.stop()
    rec = Recorder(mosquitto.port, "t/line/#", client_id="historian")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            in_small_filesystem("3m", command, small), cwd=ROOT, stdout=out, stderr=out
        )
    inside = Path(f"/proc/{proc.pid}/root") / small.relative_to("/")

    def health() -> dict[str, Any]:
        try:
            return dict(json.loads((inside / "health.json").read_text()))
        except (OSError, ValueError):
            return {}

    def dropped() -> int:
        return sum(health().get("buffer", {}).get("dropped", {}).values())

    try:
        # The buffer bounds itself to what the filesystem can hold: it evicts, the disk never
        # fills up because of it.
        with sampling(inside / "buffer.db") as samples:
            wait_until(lambda: dropped() > 20_000, 120, "the bound to evict")
        peak = max(samples)
        # Then something else fills the disk: the buffer gives up its reserve and carries on.
        filler = fill(inside / "other-files")
        wait_until(
            lambda: health().get("buffer", {}).get("disk_full_events", 0) > 0, 60, "a full disk"
        )
        committed = health()["buffer"]["readings_added"]
        wait_until(lambda: health()["buffer"]["readings_added"] > committed + 10_000, 60)
        mosquitto.start()
        back = time.monotonic()
        rec.start()

        def live() -> bool:
            now = time.time() * 1000
            return any(
                not r.get("historical") and r["ts"] > now - 2000 for r in rec.readings("press1")
            )

        wait_until(live, 60, "live readings after the broker returned")
        flowing = time.monotonic() - back
        wait_until(lambda: not health().get("backlog", {}).get("readings", 1), 120, "the drain")
        final = health()
        lost = sum(final["buffer"]["dropped"].values())
        upto = final["sources"]["press1"]["seq"]
        wait_until(
            lambda: len(audit(rec.readings("press1"), upto=upto).missing) <= lost,
            30,
            "the stream to settle",
        )
        proc.terminate()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        rec.stop()
    text = log.read_text()
    result = audit(rec.readings("press1"), upto=upto)
    print(
        f"small filesystem: peak {peak / 2**20:.2f} MiB of 3 MiB before the disk was filled "
        f"({filler} more bytes by another writer); live readings {flowing:.1f}s after the broker "
        f"returned; dropped {lost}, missing {len(result.missing)}"
    )
    assert peak < 3 * 2**20
    assert "its filesystem can give" in text  # the bound it chose, said once
    assert "the disk is full" in text
    assert len(result.missing) == lost  # every missing reading is a counted drop, and back
    assert not result.conflicts
    assert "Traceback" not in text
