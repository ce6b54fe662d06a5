"""Store-and-forward under faults: bounded drops counted exactly, paced replay, SIGKILL anywhere."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import Config
from simulators.broker import Mosquitto
from simulators.modbus import ModbusSimulator
from tests.faults import (
    GatewayProcess,
    SeqAudit,
    assert_delivered,
    audit,
    buffer_state,
    last_seq,
)
from tests.helpers import (
    Recorder,
    async_wait_until,
    gateway_config,
    running,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TAGS = [{"name": f"r{i}", "address": f"holding:{1000 + i}", "report": "always"} for i in range(50)]


async def run_until(config: dict[str, Any], condition: Any, timeout: float = 30) -> Gateway:
    """Run a gateway in-process until a condition on it holds, then stop it cleanly."""
    gateway = Gateway(Config.model_validate(config))
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await asyncio.wait_for(gateway.started.wait(), 10)
        await async_wait_until(lambda: condition(gateway), timeout, "the gateway's condition")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    return gateway


async def test_a_tiny_buffer_drops_the_oldest_and_counts_them_exactly(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    config = gateway_config(tmp_path, mosquitto.port, modbus_sim.port, tags=TAGS)
    config["sources"][0]["scan"] = "20ms"
    config["gateway"]["buffer"]["max_bytes"] = "1MiB"
    mosquitto.stop()  # a long outage: the buffer overflows its bound
    first = await run_until(config, lambda g: sum(g.buffer.stats.dropped.values()) > 2000, 60)
    dropped_first = sum(first.buffer.stats.dropped.values())
    last = first.runners[0].seq

    mosquitto.start()
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    try:
        second = await run_until(
            config, lambda g: g.runners[0].seq > last + 500 and not g.publisher.window.messages
        )
    except BaseException:
        rec.stop()
        raise
    dropped = sum(second.buffer.stats.dropped.values())  # read back from the database at start
    state = buffer_state(second.buffer.path, "press1")

    def result() -> SeqAudit:
        found = audit(rec.readings(), upto=state.last_seq)
        found.missing = [s for s in found.missing if s not in state.buffered]
        return found

    # Every missing reading is one the bound forced out, counted (waiting for the stream to
    # settle: live readings overtake the backlog, so a stream cut short has gaps).
    await async_wait_until(lambda: len(result().missing) <= dropped, 30, "the stream")
    rec.stop()
    final = result()
    print(f"tiny buffer: dropped {dropped} (first run {dropped_first}); {final.describe()}")
    assert dropped >= dropped_first > 0
    assert len(final.missing) == dropped, final.describe()
    assert not final.conflicts, final.describe()
    # Oldest first: the very first readings went, and every one that went is older than every
    # live reading (batches being published are never evicted, so the run can have a hole).
    live = [r["seq"] for r in rec.readings() if not r.get("historical")]
    assert final.missing[0] == 1
    assert max(final.missing) < min(live)


async def test_replay_is_paced_while_live_values_go_first(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    max_rate = 400
    config = gateway_config(
        tmp_path,
        mosquitto.port,
        modbus_sim.port,
        tags=TAGS[:10],
        replay={"order": "live_first", "max_rate": max_rate},
    )
    config["sources"][0]["scan"] = "50ms"  # 200 readings/s live
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    gateway = Gateway(Config.model_validate(config))
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await async_wait_until(lambda: gateway.publisher.stats.readings_acked > 50)
        mosquitto.stop()
        outage_from = gateway.runners[0].seq
        await async_wait_until(lambda: gateway.runners[0].seq > outage_from + 1500, 30)
        mosquitto.start()
        await async_wait_until(lambda: gateway.publisher.stats.replayed > 0, 30)
        started, target = time.monotonic(), gateway.runners[0].seq
        await async_wait_until(lambda: rec.complete_to(target), 60, "the drain")
        drained_in = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        rec.stop()
    readings = rec.readings()
    historical = [r for r in readings if r.get("historical")]
    replayed = gateway.publisher.stats.replayed
    print(f"replay: {replayed} in {drained_in:.1f}s at max_rate {max_rate}; {len(historical)} seen")
    assert len(historical) >= 1500
    # Paced: the backlog cannot have gone faster than max_rate (plus one second's burst).
    assert replayed <= max_rate * (drained_in + 1) + 50
    # Live first: while the backlog drained, fresh readings kept arriving unmarked.
    first_hist = min(r["seq"] for r in historical)
    live_during = [r for r in readings if not r.get("historical") and r["seq"] > first_hist + 1500]
    assert live_during


def test_sigkill_during_an_outage_and_during_the_replay(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim_thread: ModbusSimulator
) -> None:
    config = gateway_config(
        tmp_path, mosquitto.port, modbus_sim_thread.port, tags=TAGS[:10], replay={"max_rate": 300}
    )
    config["sources"][0]["scan"] = "50ms"
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    try:
        with GatewayProcess(
            write_config(tmp_path / "gw.yaml", config), tmp_path / "gw.log"
        ) as gateway:
            wait_until(lambda: last_seq(rec) >= 100, 30, "readings before the outage")
            mosquitto.stop()
            time.sleep(3)  # scans go into the buffer during the outage
            gateway.kill()  # ... and the gateway dies in the middle of it
            gateway.start()
            time.sleep(2)
            mosquitto.start()
            wait_until(
                lambda: any(r.get("historical") for r in rec.readings()), 30, "the replay to start"
            )
            gateway.kill()  # dies again, in the middle of the paced replay
            gateway.start()
            gateway.wait_gap_free(rec, lambda: last_seq(rec) > 600, 60)
            assert gateway.terminate() == 0
        report = assert_delivered(rec, "press1", tmp_path / "buffer.db", tmp_path / "gw.log")
    finally:
        rec.stop()
    print(f"SIGKILL in outage and replay: {report.describe()}")
    assert report.first == 1


async def test_a_30_second_outage_at_1000_readings_per_second(
    tmp_path: Path, mosquitto: Mosquitto, modbus_sim: ModbusSimulator
) -> None:
    max_rate = 5000
    config = gateway_config(
        tmp_path, mosquitto.port, modbus_sim.port, tags=TAGS, replay={"max_rate": max_rate}
    )
    config["sources"][0]["scan"] = "50ms"  # 50 tags x 20 scans/s = 1,000 readings/s
    rec = Recorder(mosquitto.port, "t/line/press1/#", client_id="historian").start()
    async with running(config) as gateway:
        await async_wait_until(lambda: gateway.publisher.stats.readings_acked > 1000, 20)
        mosquitto.stop()
        outage_from = gateway.runners[0].seq
        await asyncio.sleep(30)  # the outage itself
        mosquitto.start()
        await async_wait_until(lambda: gateway.publisher.stats.replayed > 0, 30)
        started, target = time.monotonic(), gateway.runners[0].seq
        await async_wait_until(lambda: rec.complete_to(target), 120, "the drain")
        drained_in = time.monotonic() - started
        replayed = gateway.publisher.stats.replayed
    try:
        report = assert_delivered(rec, "press1", gateway.buffer.path)
    finally:
        rec.stop()
    readings = rec.readings()
    historical = [r for r in readings if r.get("historical")]
    live_during = [r for r in readings if not r.get("historical") and r["seq"] > target]
    worst_live_age = max((r["at"] - r["ts"] for r in live_during), default=0)
    print(
        f"30 s outage: {report.describe()}; backlog {target - outage_from}, replayed {replayed} in "
        f"{drained_in:.1f}s; worst live age during the drain {worst_live_age:.0f} ms"
    )
    assert report.first == 1
    assert len(historical) >= 25_000  # ~30 s x 1,000 readings/s came back marked historical
    assert replayed <= max_rate * (drained_in + 1) + 100  # paced
    assert live_during  # live values kept flowing while the backlog drained
