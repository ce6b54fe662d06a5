"""Hot reload of the tag map on a running gateway process: SIGHUP, `plantgate reload`, a file
watch; applied per source, proven from seq; a broken file changes nothing."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import Mosquitto
from simulators.modbus import ModbusSimulator
from tests.faults import ROOT, GatewayProcess, audit, last_seq
from tests.helpers import Recorder, gateway_config, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def two_sources(tmp_path: Path, broker: int, modbus: int) -> dict[str, Any]:
    config = gateway_config(tmp_path, broker, modbus)
    press2 = copy.deepcopy(config["sources"][0]) | {"name": "press2"}
    press2["tags"] = [{"name": "c2", "address": "holding:0", "report": "always"}]
    config["sources"].append(press2)
    return config


def reload_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "reload", "-c", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def scan_gaps(rec: Recorder, source: str, tag: str) -> float:
    """The longest time between two scans of a report: always tag, in seconds."""
    stamps = sorted({r["ts"] for r in rec.readings(source) if r["tag"] == tag})
    return max((b - a for a, b in pairwise(stamps)), default=0) / 1000


def test_reload_applies_per_source_and_a_broken_file_changes_nothing(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    config = two_sources(tmp_path, mosquitto.port, modbus_sim_thread.port)
    path = write_config(tmp_path / "gw.yaml", config)
    log = tmp_path / "gw.log"
    rec = Recorder(mosquitto.port, "t/line/#", client_id="historian").start()
    try:
        with GatewayProcess(path, log) as gw:
            wait_until(lambda: last_seq(rec, "press2") >= 20, 30, "both sources")
            # press2 gains a tag: it restarts alone; press1 is not touched.
            config["sources"][1]["tags"].append(
                {"name": "sine2", "address": "holding:10", "type": "float32", "report": "always"}
            )
            write_config(path, config)
            done = reload_cli(path)
            assert done.returncode == 0, done.stderr
            assert "reloaded" in done.stdout
            wait_until(
                lambda: any(r["tag"] == "sine2" for r in rec.readings("press2")), 20, "the new tag"
            )
            # A broken file is refused, in full, and changes nothing.
            path.write_text(path.read_text().replace("holding:10", "holding:99999"))
            refused = reload_cli(path)
            assert refused.returncode == 2  # checked by the command itself first
            assert "holding:99999" in refused.stderr
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGHUP)  # the gateway refuses it too, and says why
            wait_until(lambda: "refused, the running config stays" in log.read_text(), 20)
            seen = last_seq(rec, "press1")
            wait_until(lambda: last_seq(rec, "press1") > seen + 30, 20, "readings go on")
            assert gw.terminate() == 0
    finally:
        rec.stop()
    text = log.read_text()
    for source in ("press1", "press2"):
        result = audit(rec.readings(source))
        assert not result.missing, f"{source}: {result.describe()}"  # seq continued, no gap
        assert not result.conflicts
    assert scan_gaps(rec, "press1", "counter") < 0.35  # not a scan missed (100 ms ticks)
    assert "reload:" in text
    assert "changed press2" in text
    assert text.count("press1: connected") == 1  # the unchanged source kept its connection
    assert text.count("press2: connected") == 2  # the changed one restarted alone


def test_mqtt_changes_reconnect_and_the_buffer_path_cannot_change(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    config = gateway_config(tmp_path, mosquitto.port, modbus_sim_thread.port)
    config["gateway"]["watch_config"] = True  # no signal needed: the file is watched
    path = write_config(tmp_path / "gw.yaml", config)
    log = tmp_path / "gw.log"
    old = Recorder(mosquitto.port, "t/line/press1/#", client_id="old").start()
    new = Recorder(mosquitto.port, "t/line2/press1/#", client_id="new").start()
    try:
        with GatewayProcess(path, log) as gw:
            wait_until(lambda: last_seq(old) >= 20, 30, "readings")
            moved = copy.deepcopy(config)
            moved["mqtt"]["topic_prefix"] = "t/line2"
            write_config(path, moved)
            wait_until(lambda: last_seq(new) > 0, 30, "readings under the new prefix")
            elsewhere = copy.deepcopy(moved)
            elsewhere["gateway"]["buffer"]["path"] = str(tmp_path / "other" / "buffer.db")
            write_config(path, elsewhere)
            wait_until(lambda: "a restart is needed" in log.read_text(), 30, "the refusal")

            def refusal() -> str:
                # The log line comes first; the health file is stamped right after it.
                health = json.loads((tmp_path / "health.json").read_text())
                return str(health["config"]["last_error"])

            wait_until(
                lambda: "gateway.buffer.path changes" in refusal(), 10, "the refusal's health"
            )
            seen = last_seq(new)
            wait_until(lambda: last_seq(new) > seen + 20, 20, "readings go on")
            assert gw.terminate() == 0
    finally:
        old.stop()
        new.stop()
    result = audit(old.readings("press1") + new.readings("press1"))
    assert not result.missing, result.describe()  # nothing lost across the reconnect
