"""Fault tests: a broker outage and a SIGKILLed gateway lose nothing, proven from seq."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from simulators.broker import Mosquitto
from simulators.modbus import ModbusSimulator
from tests.faults import GatewayProcess, assert_delivered, last_seq
from tests.helpers import Recorder, gateway_config, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    report = assert_delivered(rec, "press1", tmp_path / "buffer.db", tmp_path / "gateway.log")
    readings = rec.readings("press1")
    historical = [r for r in readings if r.get("historical")]
    print(f"broker outage: {report.describe()}, historical={len(historical)}")
    assert report.first == 1
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
    report = assert_delivered(rec, "press1", tmp_path / "buffer.db", tmp_path / "gateway.log")
    print(f"SIGKILL x3: {report.describe()}")
    assert report.first == 1
    log = (tmp_path / "gateway.log").read_text()
    assert log.count("plantgate stopped") == 1  # only the final SIGTERM was a clean stop
