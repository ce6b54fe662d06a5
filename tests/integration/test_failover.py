"""Broker failover: a list of broker nodes, the gateway moving when its node dies, proven from
seq through a real aedes cluster (sessions shared through Redis) and two unrelated mosquittos."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import Mosquitto
from simulators.cluster.aedes import AedesCluster
from simulators.modbus import ModbusSimulator
from tests.faults import GatewayProcess, audit, buffer_state, last_seq
from tests.helpers import Recorder, gateway_config, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def failover_config(tmp_path: Path, urls: list[str], modbus: int, **mqtt: Any) -> Path:
    config = gateway_config(tmp_path, 1, modbus)
    config["mqtt"] |= {"url": urls, "reconnect": {"min": "250ms", "max": "2s"}, **mqtt}
    config["mqtt"]["keepalive"] = "5s"
    return write_config(tmp_path / "gw.yaml", config)


def recorder(port: int, name: str) -> Recorder:
    return Recorder(port, "t/line/press1/#", client_id=name).start()


def assert_union_complete(recs: list[Recorder], db: Path) -> list[int]:
    """Every committed seq reached one subscriber or another (or is still buffered)."""
    state = buffer_state(db, "press1")
    readings = [r for rec in recs for r in rec.readings("press1")]
    result = audit(readings, upto=state.last_seq)
    missing = [s for s in result.missing if s not in state.buffered]
    assert not missing, result.describe()
    assert not result.conflicts, result.describe()
    return missing


def test_two_unrelated_mosquittos_the_gateway_moves_and_comes_back(
    tmp_path: Path, two_mosquittos: tuple[Mosquitto, Mosquitto], modbus_sim_thread: ModbusSimulator
) -> None:
    a, b = two_mosquittos
    path = failover_config(tmp_path, [a.url, b.url], modbus_sim_thread.port, prefer_first=True)
    log, db = tmp_path / "gw.log", tmp_path / "buffer.db"
    on_a, on_b = recorder(a.port, "hist-a"), recorder(b.port, "hist-b")
    try:
        with GatewayProcess(path, log) as gw:
            wait_until(lambda: last_seq(on_a) >= 50, 30, "readings on A")
            a.stop()
            died = time.monotonic()
            wait_until(lambda: last_seq(on_b) > 0, 30, "readings on B")
            moved = time.monotonic() - died
            seen = last_seq(on_b)
            wait_until(lambda: last_seq(on_b) > seen + 50, 30, "more readings on B")
            a.start()  # prefer_first: the gateway goes back to A
            back = last_seq(on_b)
            wait_until(lambda: last_seq(on_a) > back, 30, "readings on A again")
            assert gw.terminate() == 0
        wait_until(
            lambda: (
                not audit(
                    [r for rec in (on_a, on_b) for r in rec.readings("press1")],
                    upto=buffer_state(db, "press1").last_seq,
                ).missing
            ),
            30,
            "the stream to settle",
        )
        assert_union_complete([on_a, on_b], db)
    finally:
        on_a.stop()
        on_b.stop()
    text = log.read_text()
    print(f"two mosquittos: readings on B {moved:.1f}s after A stopped")
    assert "moving to 127.0.0.1:" in text
    assert "the first node" in text


def test_a_killed_cluster_node_loses_nothing(
    tmp_path: Path, aedes_cluster: AedesCluster, modbus_sim_thread: ModbusSimulator
) -> None:
    cluster = aedes_cluster
    path = failover_config(tmp_path, cluster.urls, modbus_sim_thread.port)
    log, db = tmp_path / "gw.log", tmp_path / "buffer.db"
    on_b = recorder(cluster.port(1), "historian")  # a subscriber on another node
    try:
        with GatewayProcess(path, log) as gw:
            wait_until(lambda: last_seq(on_b) >= 50, 30, "readings through the cluster")
            cluster.kill(0)  # kill -9 of the gateway's node
            died, seen = time.monotonic(), last_seq(on_b)
            wait_until(lambda: last_seq(on_b) > seen, 30, "readings after the node died")
            moved = time.monotonic() - died
            wait_until(lambda: last_seq(on_b) > seen + 100, 30, "more readings")
            assert gw.terminate() == 0
        wait_until(
            lambda: (
                not audit(on_b.readings("press1"), upto=buffer_state(db, "press1").last_seq).missing
            ),
            30,
            "the stream to settle",
        )
        assert_union_complete([on_b], db)
    finally:
        on_b.stop()
    print(f"aedes cluster: readings again {moved:.1f}s after the gateway's node was killed")
    assert "moving to" in log.read_text()


def test_sparkplug_moving_to_another_node_is_a_new_session(
    tmp_path: Path, aedes_cluster: AedesCluster, modbus_sim_thread: ModbusSimulator
) -> None:
    from tests.integration.test_sparkplug import BD_SEQ, Host

    cluster = aedes_cluster
    config = gateway_config(tmp_path, 1, modbus_sim_thread.port)
    config["gateway"]["name"] = "line1-edge"
    config["mqtt"] |= {
        "url": cluster.urls,
        "format": "sparkplug",
        "sparkplug": {"group_id": "plant1"},
        "keepalive": "5s",
        "reconnect": {"min": "250ms", "max": "2s"},
    }
    path = write_config(tmp_path / "gw.yaml", config)
    host = Host(cluster.port(2)).start()
    try:
        with GatewayProcess(path, tmp_path / "gw.log") as gw:
            wait_until(lambda: host.kinds().count("DDATA") >= 5, 30, "data")
            cluster.kill(0)
            wait_until(lambda: host.kinds().count("NBIRTH") == 2, 30, "a birth on the next node")
            # The killed node's clients' wills are published by a survivor 3 to 7 heartbeats
            # later (1 s each), later still when the machine is loaded: seen past 30 s once.
            wait_until(lambda: "NDEATH" in host.kinds(), 90, "the old session's death")
            assert gw.terminate() == 0
    finally:
        host.stop()
    decoded = host.decoded()
    births = [
        {m["name"]: m["value"] for m in b["metrics"]}[BD_SEQ] for t, b in decoded if "/NBIRTH/" in t
    ]
    deaths = [
        {m["name"]: m["value"] for m in b["metrics"]}[BD_SEQ] for t, b in decoded if "/NDEATH/" in t
    ]
    assert births[1] == (births[0] + 1) % 256  # the next bdSeq on the new node
    assert births[0] in deaths  # the old session's will: its own bdSeq, so hosts can tell
