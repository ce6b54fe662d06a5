"""Fixtures: a real mosquitto on a free port (or two), an aedes cluster, the Modbus simulator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from simulators.broker import Mosquitto, free_port
from simulators.cluster import AedesCluster
from simulators.modbus import ModbusSimulator


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto broker of our own, with persistence, on a free loopback port."""
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def two_mosquittos(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    """Two unrelated mosquitto brokers (no bridge, nothing shared), each with persistence."""
    brokers = (Mosquitto(tmp_path / "broker-a"), Mosquitto(tmp_path / "broker-b"))
    try:
        for broker in brokers:
            broker.start()
        yield brokers
    finally:
        for broker in brokers:
            broker.stop()


@pytest.fixture
def aedes_cluster(tmp_path: Path) -> Iterator[AedesCluster]:
    """Three aedes nodes sharing sessions through Redis; a node stores before it acknowledges."""
    cluster = AedesCluster(tmp_path / "cluster", nodes=3)
    cluster.start()
    yield cluster
    cluster.stop()


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
