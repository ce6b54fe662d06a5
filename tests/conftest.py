"""Fixtures: a real mosquitto on a free port, the Modbus simulator over TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from simulators.broker import Mosquitto, free_port
from simulators.modbus import ModbusSimulator


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto broker of our own, with persistence, on a free loopback port."""
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def modbus_sim() -> AsyncIterator[ModbusSimulator]:
    """The Modbus simulator on a free port, in the test's event loop."""
    sim = ModbusSimulator("127.0.0.1", free_port())
    await sim.start()
    yield sim
    await sim.stop()
