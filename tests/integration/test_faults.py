"""Fault tests: a broker outage and a SIGKILLed gateway lose nothing, proven from seq."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from simulators.broker import Mosquitto
from simulators.modbus import ModbusSimulator
from tests.helpers import Recorder, gateway_config, seq_report, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


class GatewayProcess:
    """``plantgate run`` as a real child process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def wait_gap_free(self, rec: Recorder, until: Callable[[], bool], timeout: float) -> None:
        """Wait for ``until`` and no gap in seq; on failure say which seqs and show the log."""
        try:
            wait_until(
                lambda: until() and seq_report(rec.readings("press1"))["missing"] == 0, timeout
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {missing_seqs(rec)}\n{self.log.read_text()}") from None

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def missing_seqs(rec: Recorder) -> str:
    """Which seqs are missing, for the failure message."""
    seqs = {r["seq"] for r in rec.readings("press1")}
    gaps = sorted(set(range(min(seqs), max(seqs) + 1)) - seqs) if seqs else []
    return f"missing {len(gaps)} seqs: {gaps[:50]}"


def last_seq(rec: Recorder) -> int:
    readings = rec.readings("press1")
    return max((r["seq"] for r in readings), default=0)


def test_broker_outage_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    cfg = gateway_config(
        tmp_path,
        mosquitto.port,
        modbus_sim_thread.port,
        replay={"order": "live_first", "max_rate": 2000},
    )
    config = write_config(tmp_path / "gw.yaml", cfg)
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    try:
        with GatewayProcess(config, tmp_path / "gateway.log") as gateway:
            wait_until(lambda: last_seq(rec) >= 40, 20, "readings before the outage")
            mosquitto.stop()
            outage_started = last_seq(rec)
            time.sleep(4)  # the outage itself: scans go on into the buffer meanwhile
            mosquitto.start()
            # After the restart the backlog drains and live values flow again.
            gateway.wait_gap_free(rec, lambda: last_seq(rec) >= outage_started + 150, 60)
            assert gateway.terminate() == 0
    finally:
        rec.stop()
    readings = rec.readings("press1")
    report = seq_report(readings)
    historical = [r for r in readings if r.get("historical")]
    print(f"broker outage: {report}, historical={len(historical)}")
    assert report["first"] == 1
    assert report["missing"] == 0
    assert len(historical) >= 40  # 4 s at 2 tags x 10 scans/s were buffered and replayed
    assert all(not r["retained"] for r in historical)  # replayed history is never retained


def test_sigkill_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    cfg = gateway_config(tmp_path, mosquitto.port, modbus_sim_thread.port)
    config = write_config(tmp_path / "gw.yaml", cfg)
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    try:
        with GatewayProcess(config, tmp_path / "gateway.log") as gateway:
            for round_ in range(3):
                target = last_seq(rec) + 60
                wait_until(
                    lambda t=target: last_seq(rec) >= t, 30, f"readings before kill {round_}"
                )
                gateway.kill()
                gateway.start()
            target = last_seq(rec) + 60
            gateway.wait_gap_free(rec, lambda: last_seq(rec) >= target, 50)
            assert gateway.terminate() == 0
    finally:
        rec.stop()
    report = seq_report(rec.readings("press1"))
    print(f"SIGKILL x3: {report}")
    assert report["first"] == 1
    assert report["missing"] == 0
    log = (tmp_path / "gateway.log").read_text()
    assert log.count("plantgate stopped") == 1  # only the final SIGTERM was a clean stop
