"""`plantgate simulate`: the chosen simulators serve, the others stay closed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from simulators.broker import free_port

pytestmark = pytest.mark.integration


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


def test_only_the_chosen_protocols_are_simulated() -> None:
    modbus, opcua, logix = free_port(), free_port(), free_port()
    ports = [f"--modbus-port={modbus}", f"--opcua-port={opcua}", f"--logix-port={logix}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", *ports, "--protocols", "modbus,logix"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith(f"simulating the plant: modbus tcp://127.0.0.1:{modbus}, logix")
        deadline = time.monotonic() + 20
        while not (accepts(modbus) and accepts(logix)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert accepts(modbus)
        assert accepts(logix)
        assert not accepts(opcua)
    finally:
        proc.terminate()
        proc.wait(20)


def test_an_unknown_protocol_is_refused_by_name() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "simulate", "--protocols", "modbus,profinet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "profinet: choose from modbus, opcua, logix" in done.stderr
