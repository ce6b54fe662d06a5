"""The gateway process at its edges: honest exit codes, health that follows the process and the
flow of readings, signals, and the current value of every tag retained for late subscribers."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from simulators.broker import Mosquitto, free_port
from simulators.modbus import ModbusSimulator
from tests.faults import ROOT, GatewayProcess, assert_delivered, last_seq
from tests.helpers import (
    Recorder,
    async_wait_until,
    gateway_config,
    running,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def health(config: Path, strict: bool = False) -> tuple[int, str]:
    """`plantgate health` as the container's HEALTHCHECK runs it: exit code and its report."""
    args = [sys.executable, "-m", "gateway", "health", "-c", str(config)]
    done = subprocess.run(
        [*args, "--strict"] if strict else args, cwd=ROOT, capture_output=True, text=True
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
def test_a_fatal_start_exits_1_with_one_line_and_a_bad_config_exits_2(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the buffer's directory should be")
    config = gateway_config(tmp_path, free_port(), free_port())
    config["gateway"]["buffer"]["path"] = str(tmp_path / "data" / "buffer.db")
    path = write_config(tmp_path / "gw.yaml", config)
    run = [sys.executable, "-m", "gateway", "run", "-c", str(path)]
    done = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    fatal = [line for line in done.stderr.splitlines() if "fatal" in line]
    assert len(fatal) == 1, done.stderr
    assert "cannot create buffer directory" in fatal[0]
    config["gateway"]["bufer"] = {}
    write_config(path, config)
    done = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "gateway.bufer: unknown key (did you mean 'buffer'?)" in done.stderr


@pytest.mark.slow
def test_health_follows_the_process_and_sighup_is_not_fatal(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    path = write_config(
        tmp_path / "gw.yaml", gateway_config(tmp_path, mosquitto.port, modbus_sim_thread.port)
    )
    log = tmp_path / "gw.log"
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    try:
        with GatewayProcess(path, log) as gw:
            wait_until(lambda: health(path, strict=True)[0] == 0, 30, "healthy")
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGHUP)  # a reload: not fatal, no scan lost
            seen = last_seq(rec)
            wait_until(lambda: last_seq(rec) > seen + 20, 20, "readings after SIGHUP")
            # SIGHUP reloaded the (same) tag map
            wait_until(lambda: "nothing changed" in log.read_text(), 20, "the reload")
            assert gw.proc.poll() is None
            assert health(path, strict=True)[0] == 0
            gw.kill()
            # Gone now: the health file still has a fresh stamp, but names a dead process.
            code, report = health(path)
            assert code == 1
            assert "is gone" in report
    finally:
        rec.stop()


@pytest.mark.slow
def test_health_is_unhealthy_while_the_buffer_cannot_commit(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    path = write_config(
        tmp_path / "gw.yaml", gateway_config(tmp_path, mosquitto.port, modbus_sim_thread.port)
    )
    db, log = tmp_path / "buffer.db", tmp_path / "gw.log"
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    try:
        with GatewayProcess(path, log) as gw:
            wait_until(lambda: health(path)[0] == 0 and last_seq(rec) > 10, 30, "healthy")
            # Another process takes the database's write lock and keeps it: nothing commits.
            blocker = sqlite3.connect(db, isolation_level=None, timeout=10)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                wait_until(lambda: health(path)[0] == 1, 60, "unhealthy while stalled")
                _, report = health(path)
                assert "the buffer is not committing" in report, report
                assert gw.proc is not None
                assert gw.proc.poll() is None  # alive, and waiting: nothing dropped
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            wait_until(lambda: health(path)[0] == 0, 60, "healthy again")
            assert gw.terminate() == 0
        assert_delivered(rec, "press1", db, log)  # the stall lost nothing
    finally:
        rec.stop()


async def test_every_tag_has_a_retained_current_value_even_one_that_never_changes(
    tmp_path: Path, modbus_sim: ModbusSimulator
) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=False)
    tags = [
        {"name": "counter", "address": "holding:0", "report": "always"},
        {"name": "fixed", "address": "holding:1000"},  # on_change, and it never changes
    ]
    config = gateway_config(tmp_path, broker.port, modbus_sim.port, tags=tags)
    async with running(config) as gateway:  # the broker is not there yet: all goes to the buffer
        await async_wait_until(lambda: gateway.buffer.stats.readings_added > 10)
        broker.start()
        try:
            await async_wait_until(lambda: gateway.publisher.session.current_sent >= 2, 20)
            late = Recorder(broker.port, "t/line/press1/#", client_id="late", persistent=False)
            late.start()
            await async_wait_until(lambda: len({r["tag"] for r in late.readings()}) == 2, 10)
            late.stop()
            retained = {r["tag"]: r for r in late.readings() if r["retained"]}
            assert set(retained) == {"counter", "fixed"}
            assert not any(r.get("historical") for r in retained.values())  # live, current
            # The broker restarts without persistence: its retained values are gone. The
            # gateway republishes the current ones when it reconnects.
            broker.stop()
            broker.start()
            connects = gateway.publisher.stats.connects
            await async_wait_until(lambda: gateway.publisher.stats.connects > connects, 20)
            await async_wait_until(lambda: gateway.publisher.session.current_sent >= 4, 20)
            again = Recorder(broker.port, "t/line/press1/#", client_id="again", persistent=False)
            again.start()
            await async_wait_until(lambda: len({r["tag"] for r in again.readings()}) == 2, 10)
            again.stop()
            fixed = [r for r in again.readings() if r["tag"] == "fixed"]
            assert fixed[0]["retained"]
            assert fixed[0]["seq"] == retained["fixed"]["seq"]  # the same reading, not older
        finally:
            broker.stop()


def test_buffer_stats_need_no_broker_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLANTGATE_TEST_SECRET", raising=False)
    config = gateway_config(tmp_path, free_port(), free_port())
    config["mqtt"] |= {"username": "edge", "password": "${PLANTGATE_TEST_SECRET}"}
    path = write_config(tmp_path / "gw.yaml", config)
    db = tmp_path / "buffer.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE sources (name TEXT PRIMARY KEY, last_seq INTEGER, dropped INTEGER, "
        "corrupt INTEGER, lost INTEGER); CREATE TABLE batches (id INTEGER PRIMARY KEY, "
        "source TEXT, count INTEGER, stored INTEGER);"
        "INSERT INTO sources VALUES ('press1', 42, 0, 0, 0);"
    )
    conn.close()
    assert main(["validate", "-c", str(path)]) == 2  # running would need the secret
    assert "PLANTGATE_TEST_SECRET is not set" in capsys.readouterr().err
    assert main(["buffer", "stats", "-c", str(path)]) == 0  # reading the buffer does not
    assert "press1" in capsys.readouterr().out


@pytest.mark.slow
def test_simulate_reports_every_port_it_cannot_serve_and_exits_1(tmp_path: Path) -> None:
    import socket

    taken = [socket.socket() for _ in range(2)]
    try:
        ports = []
        for s in taken:
            s.bind(("127.0.0.1", 0))
            s.listen()
            ports.append(s.getsockname()[1])
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "simulate",
                "--modbus-port",
                str(ports[0]),
                "--logix-port",
                str(ports[1]),
                "--opcua-port",
                str(free_port()),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        for s in taken:
            s.close()
    assert done.returncode == 1, done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("simulator ")]
    assert {line.split()[1] for line in failed} == {"modbus", "logix"}, done.stderr
