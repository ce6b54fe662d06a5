"""bench.peers' counting, the Node-RED flows it generates, and bench.profile's areas."""

from __future__ import annotations

import json

import pytest

from bench.nodered.flows import blocks, modbus_flow, opcua_flow
from bench.peers import Tally
from bench.profile import WAITS, area, breakdown, frames, idle

LINES = [
    b'1795885562.100000000 {"value":%d,"quality":"good","ts":1795885562000,"seq":%d}\n' % (i, i)
    for i in range(1, 40)
]
BATCH = (
    b'1795885563.250000000 {"ts":1795885563000,"readings":['
    + b",".join(
        b'{"tag":"r%05d","value":1,"quality":"good","ts":1795885563000,"seq":%d}' % (i, i)
        for i in range(25)
    )
    + b"]}\n"
)


@pytest.mark.parametrize("size", [1, 2, 5, 7, 64, 4096])
def test_tally_counts_every_value_whatever_the_reads_split(size: int) -> None:
    stream = b"".join(LINES) + BATCH
    tally = Tally()
    for at in range(0, len(stream), size):
        tally.feed(stream[at : at + size])
    assert (tally.messages, tally.values) == (len(LINES) + 1, len(LINES) + 25)


def test_tally_ages_a_line_whose_arrival_stamp_came_in_an_earlier_read() -> None:
    # mosquitto_sub flushes "\n<stamp> " before writing a large payload on its own.
    tally = Tally()
    tally.sampling = True
    head, _, body = BATCH.partition(b" ")
    tally.feed(b'{"seq":0}\n' + head + b" ")
    tally.feed(body)
    assert tally.ages == [250.0]


def test_tally_ages_each_line_once() -> None:
    tally = Tally()
    tally.sampling = True
    tally.feed(b'x\n1795885562.100000000 {"ts":1795885562000}')
    tally.feed(b"}\n")  # the line sampled above is still in the kept tail
    assert tally.ages == [100.0]


def test_tally_ages_only_while_sampling() -> None:
    tally = Tally()
    tally.feed(b"\n" + LINES[0])
    assert tally.ages == []


def test_blocks_cover_the_registers_in_protocol_sized_requests() -> None:
    got = blocks(1000, 10_000)
    assert len(got) == 80
    assert all(count <= 125 for _, count in got)
    assert [r for at, count in got for r in range(at, at + count)] == list(range(1000, 11_000))
    assert blocks(1000, 130) == [(1000, 125), (1125, 5)]


def node_ids_in_values(flow: list[dict[str, object]]) -> list[tuple[str, str]]:
    """(node, key) where a plain property of a node names another node: Node-RED takes that as
    a config node reference (and refuses a flow whose config nodes seem to refer in a loop)."""
    ids = {str(n["id"]) for n in flow}
    references = {"z", "wires", "server", "broker", "endpoint", "id"}
    return [
        (str(n["id"]), key)
        for n in flow
        for key, value in n.items()
        if key not in references and isinstance(value, str) and value in ids
    ]


@pytest.mark.parametrize("per_block", [False, True])
def test_modbus_flow_reads_every_register_once_and_publishes_them(per_block: bool) -> None:
    flow = modbus_flow(
        broker_port=1883,
        modbus_port=5020,
        topic="bench/line/press1",
        start=1000,
        registers=1000,
        scan_ms=100,
        per_block=per_block,
    )
    by_type: dict[str, list[dict[str, object]]] = {}
    for node in flow:
        by_type.setdefault(str(node["type"]), []).append(node)
    reads = by_type["modbus-read"]
    covered = [r for n in reads for r in range(int(n["adr"]), int(n["adr"]) + int(n["quantity"]))]
    assert covered == list(range(1000, 2000))
    assert {(n["rate"], n["rateUnit"], n["dataType"]) for n in reads} == {
        ("100", "ms", "HoldingRegister")
    }
    assert all(n["wires"] == [["shape"], []] for n in reads)
    (publish,) = by_type["mqtt out"]
    assert (publish["qos"], publish["retain"]) == ("1", "false" if per_block else "true")
    assert len({n["id"] for n in flow}) == len(flow)
    assert node_ids_in_values(flow) == []
    json.dumps(flow)


def test_opcua_flow_subscribes_every_node_and_names_tags_by_index() -> None:
    ids = [f"ns=2;s=Bench.Group00.Var{i:04d}" for i in range(3)]
    flow = opcua_flow(
        broker_port=1883,
        endpoint="opc.tcp://127.0.0.1:4840",
        topic="t/oven",
        node_ids=ids,
        interval_ms=100,
    )
    (client,) = [n for n in flow if n["type"] == "OpcUa-Client"]
    assert (client["action"], client["time"], client["timeUnit"]) == ("subscribe", 100, "ms")
    (items,) = [n for n in flow if n["id"] == "items"]
    assert json.dumps(ids) in str(items["func"])
    assert node_ids_in_values(flow) == []


MAIN = "thread (1): MainThread;BaseEventLoop._run_once (asyncio/base_events.py:1922)"


def stack(*parts: str, thread: str = MAIN) -> str:
    return ";".join([thread, *parts])


@pytest.mark.parametrize(
    ("frames_", "expected"),
    [
        (
            [
                "Client.loop_read (paho/mqtt/client.py:2102)",
                "Client._sock_recv (paho/mqtt/client.py:1086)",
            ],
            "PUBACK handling",
        ),
        (
            [
                "Client.loop_read (paho/mqtt/client.py:2102)",
                "Publisher._acked (gateway/publisher.py:300)",
                "Buffer.release (buffer/store.py:262)",
            ],
            "PUBACK handling",
        ),
        (
            [
                "MqttLink._readable (gateway/mqtt.py:290)",
                "PacketReader.feed (gateway/mqtt_wire.py:140)",
            ],
            "PUBACK handling",
        ),
        (
            [
                "Publisher._send (gateway/publisher.py:287)",
                "MqttLink.publish (gateway/mqtt.py:107)",
            ],
            "MQTT publish",
        ),
        (
            [
                "Handle._run (asyncio/events.py:84)",
                "MqttLink._flush (gateway/mqtt.py:280)",
                "Client._sock_send (paho/mqtt/client.py:1101)",
            ],
            "MQTT publish",
        ),
        (
            ["Publisher._send (gateway/publisher.py:285)", "per_tag (gateway/encode.py:20)"],
            "encode",
        ),
        (
            ["Publisher._pump (gateway/publisher.py:218)", "Buffer.take (buffer/store.py:230)"],
            "read-back",
        ),
        (
            [
                "Buffer._write_loop (buffer/store.py:309)",
                "Buffer._commit (buffer/store.py:331)",
                "pack (buffer/codec.py:40)",
            ],
            "buffer commit",
        ),
        (
            [
                "SourceRunner._scan (gateway/runtime.py:208)",
                "ModbusConnector.read (connectors/modbus/connector.py:144)",
            ],
            "scan and decode",
        ),
        (["Publisher._send (gateway/publisher.py:290)"], "publisher"),
        (["BaseEventLoop._run_once (asyncio/base_events.py:1922)"], "event loop"),
    ],
)
def test_profile_puts_a_sample_in_its_area(frames_: list[str], expected: str) -> None:
    thread, parsed = frames(stack(*frames_))
    assert area(thread, parsed) == expected


def test_profile_puts_sqlite_threads_by_connection() -> None:
    run = "_connection_worker_thread (aiosqlite/core.py:63)"
    writer = stack(run, thread="thread (2): Thread-1 (_connection_worker_thread)")
    reader = stack(run, thread="thread (3): Thread-2 (_connection_worker_thread)")
    assert [area(*frames(s)) for s in (writer, reader)] == ["buffer commit", "read-back"]


def test_profile_leaves_waiting_threads_out() -> None:
    (function, file, line), *_ = sorted(WAITS)
    waiting = stack(f"{function} ({file}:{line})", thread="thread (2): Thread-1 (x)")
    working = stack(f"{function} ({file}:{line + 4})", thread="thread (2): Thread-1 (x)")
    selecting = stack("EpollSelector.select (selectors.py:468)")
    assert [idle(frames(s)[1]) for s in (waiting, working, selecting)] == [True, False, True]
    found = breakdown([f"{waiting} 5\n", f"{working} 2\n", f"{selecting} 3\n"])
    assert (found.waiting, sum(found.areas.values())) == (8, 2)
