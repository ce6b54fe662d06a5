"""Fixtures: a real mosquitto on a free port, the Modbus simulator over TCP."""

from __future__ import annotations

import asyncio
import threading
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


@pytest.fixture
def modbus_sim_thread() -> Iterator[ModbusSimulator]:
    """The Modbus simulator in its own thread and loop, so a blocking test body cannot stall it."""
    sim = ModbusSimulator("127.0.0.1", free_port())
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(sim.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield sim
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
