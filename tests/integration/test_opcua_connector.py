"""The OPC UA connector: a real asyncua client against the plant simulator over TCP."""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.observer import Observer

from connectors.opcua.browse import browse
from connectors.opcua.config import OpcUaSource
from connectors.opcua.connector import OpcUaConnector
from connectors.opcua.trust import UntrustedServer
from gateway.config import parse_config
from gateway.errors import ConnectionLost
from gateway.models import Batch, Quality, Reading, Sample
from gateway.runtime import SourceRunner
from simulators.broker import free_port
from simulators.opcua import NAMESPACE_URI, OpcUaSimulator, nsu
from simulators.plant import RECIPES, STATES
from tests.helpers import async_wait_until

# One simulator for the tests that only read: asyncua's address space takes ~2 s to build.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

# Spelled out rather than derived from the simulator: the Python type each OPC UA type becomes.
PYTHON_TYPES: dict[str, type] = {
    "Oven.Zone1.Temp": float,  # Double
    "Oven.Zone1.Setpoint": float,  # Double
    "Oven.Zone2.Temp": float,  # Float
    "Oven.Profile": list,  # Double[10]
    "Filler.Counter": int,  # UInt32
    "Filler.TotalBottles": int,  # UInt64
    "Filler.Rejects": int,  # Int32
    "Filler.Speed": int,  # UInt16
    "Filler.State": int,  # Int16
    "Filler.StateText": str,  # LocalizedText
    "Filler.StateSince": str,  # DateTime, ISO 8601
    "Filler.Running": bool,  # Boolean
    "Filler.Recipe": str,  # String
    "Filler.BatchId": str,  # ByteString, base64
    "Filler.AlarmWord": int,  # UInt16
    "Filler.Heartbeat": int,  # Byte
    "Utilities.Pressure": float,  # Double
    "Utilities.Ramp": float,  # Double
    "Utilities.Sine": float,  # Double
    "Utilities.Trim": int,  # SByte
    "Utilities.EnergyWh": int,  # Int64
    "Utilities.Toggle": bool,  # Boolean
    "Utilities.Flaky": float,  # Double
}
PLANT_TAGS = [{"name": name, "node": nsu(name)} for name in PYTHON_TYPES]


def source(endpoint: str, tags: list[dict[str, Any]], **kw: Any) -> OpcUaSource:
    return OpcUaSource.model_validate(
        {"name": "oven", "protocol": "opcua", "url": endpoint, "tags": tags, **kw}
    )


def check_plant_value(name: str, value: Any, now: float) -> None:
    """A value has the right Python type and a plausible value for its simulator variable."""
    kind = type(value)  # not isinstance: a bool must not pass for an int
    assert kind is PYTHON_TYPES[name], (name, value)
    if name.endswith(".Temp"):
        assert 165.0 <= value <= 190.0, (name, value)
    elif name == "Oven.Profile":
        assert len(value) == 10
        assert all(type(v) is float for v in value)
    elif name == "Filler.TotalBottles":
        assert abs(value - now * 10) < 100, value  # the plant's clock, through the wire
    elif name == "Filler.StateText":
        assert value in STATES
    elif name == "Filler.StateSince":
        since = datetime.fromisoformat(value)
        assert value.endswith(".000Z")
        assert 0 <= now - since.timestamp() < 30
    elif name == "Filler.Recipe":
        assert value in RECIPES
    elif name == "Filler.BatchId":
        recipe, _, number = base64.b64decode(value).decode().partition("/")
        assert recipe in RECIPES
        assert number.isdigit()
    elif name == "Filler.Heartbeat":
        assert 0 <= value <= 255
    elif name == "Utilities.Trim":
        assert -26 <= value <= 26


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim() -> AsyncIterator[OpcUaSimulator]:
    simulator = OpcUaSimulator(port=free_port(), interval=0.05, bulk_variables=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def poller(sim: OpcUaSimulator) -> AsyncIterator[tuple[OpcUaConnector, OpcUaSource]]:
    src = source(sim.endpoint, PLANT_TAGS, subscribe=False, watchdog="60s")
    connector = OpcUaConnector(src)
    await connector.connect()
    yield connector, src
    await connector.close()


class RequestCounter(Observer):
    """Counts the service requests the client really sends, by request type."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def on_request(self, request_type: str, duration: float, error: BaseException | None) -> None:
        self.counts[request_type] = self.counts.get(request_type, 0) + 1


class Deliveries:
    """A deliver() sink that keeps every call, as the runtime's would receive them."""

    def __init__(self, tags: Sequence[Any]) -> None:
        self.tags = tags
        self.calls: list[list[tuple[int, Sample]]] = []

    def __call__(self, changes: Sequence[tuple[int, Sample]]) -> None:
        self.calls.append(list(changes))

    def latest(self) -> dict[str, Sample]:
        return {self.tags[i].name: s for call in self.calls for i, s in call}

    def values(self, name: str) -> list[Any]:
        return [s.value for call in self.calls for i, s in call if self.tags[i].name == name]


async def test_poll_reads_every_type_with_the_right_python_type(
    poller: tuple[OpcUaConnector, OpcUaSource],
) -> None:
    connector, src = poller
    samples = await connector.read(connector.plan(src.tags))
    now = time.time()
    for tag, sample in zip(src.tags, samples, strict=True):
        assert sample.quality is Quality.GOOD, (tag.name, sample)
        check_plant_value(tag.name, sample.value, now)
        assert sample.ts is not None
        assert abs(sample.ts / 1000 - now) < 60, tag.name  # the server's source timestamp


async def test_a_bulk_read_is_one_read_call_per_chunk(sim: OpcUaSimulator) -> None:
    tags = PLANT_TAGS + [{"name": f"bulk{i}", "node": n} for i, n in enumerate(sim.bulk_node_ids)]
    src = source(sim.endpoint, tags, subscribe=False, max_nodes_per_read=5, watchdog="60s")
    connector = OpcUaConnector(src)
    await connector.connect()
    try:
        counter = RequestCounter()
        assert connector.client is not None
        connector.client.uaclient.observer = counter
        samples = await connector.read(connector.plan(src.tags))
    finally:
        await connector.close()
    assert len(tags) == 43
    assert counter.counts.get("ReadRequest") == 9 == connector.read_requests  # ceil(43 / 5)
    assert all(s.quality is Quality.GOOD for s in samples)
    bulk = [int(str(s.value)) for s in samples[23:]]
    assert bulk == sorted(bulk)  # each sample is its own tag's: the simulator numbers them


async def test_subscribe_delivers_batched_changes_until_cancelled(sim: OpcUaSimulator) -> None:
    src = source(sim.endpoint, PLANT_TAGS, scan="100ms", watchdog="500ms")
    connector = OpcUaConnector(src)
    await connector.connect()
    deliveries = Deliveries(src.tags)
    task = asyncio.create_task(connector.subscribe(src.tags, deliveries))
    try:
        await async_wait_until(
            lambda: (
                len(set(deliveries.values("Filler.Counter"))) >= 4
                and len(deliveries.latest()) == len(src.tags)
            ),
            what="initial values of every tag and counter changes",
        )
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # cancellation goes through, it is not swallowed
        await connector.close()
    now = time.time()
    for name, sample in deliveries.latest().items():
        assert sample.quality is Quality.GOOD
        check_plant_value(name, sample.value, now)
    counts = deliveries.values("Filler.Counter")
    assert counts == sorted(counts)
    # One publish notification is one deliver() call carrying several changes.
    changes = sum(len(c) for c in deliveries.calls)
    assert max(len(c) for c in deliveries.calls) >= len(src.tags) - 2
    assert len(deliveries.calls) < changes


@pytest.mark.parametrize("subscribe", [False, True], ids=["poll", "subscribe"])
async def test_an_unknown_node_marks_only_its_tag_bad(
    sim: OpcUaSimulator, subscribe: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "connectors.opcua")
    tags = [
        {"name": "temp", "node": nsu("Oven.Zone1.Temp")},
        {"name": "zone9", "node": nsu("Oven.Zone9.Temp")},
        {"name": "elsewhere", "node": "nsu=urn:nowhere;s=Oven.Zone1.Temp"},
        {"name": "counter", "node": nsu("Filler.Counter")},
    ]
    src = source(sim.endpoint, tags, subscribe=subscribe, watchdog="500ms")
    connector = OpcUaConnector(src)
    await connector.connect()
    try:
        if subscribe:
            deliveries = Deliveries(src.tags)
            task = asyncio.create_task(connector.subscribe(src.tags, deliveries))
            await async_wait_until(lambda: len(deliveries.latest()) == 4, what="all four tags")
            latest = deliveries.latest()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            samples = await connector.read(connector.plan(src.tags))
            latest = {t.name: s for t, s in zip(src.tags, samples, strict=True)}
    finally:
        await connector.close()
    assert {name: s.quality for name, s in latest.items()} == {
        "temp": Quality.GOOD,
        "zone9": Quality.BAD,
        "elsewhere": Quality.BAD,
        "counter": Quality.GOOD,
    }
    # Why, with the sample: the runtime logs a tag's quality change, the connector never.
    assert {name: s.reason for name, s in latest.items()} == {
        "temp": None,
        "zone9": "BadNodeIdUnknown",
        "elsewhere": "BadNamespaceUnknown",
        "counter": None,
    }
    assert not [r for r in caplog.records if r.name.startswith("connectors.opcua")]


@pytest.mark.parametrize("subscribe", [False, True], ids=["poll", "subscribe"])
async def test_set_bad_gives_bad_quality_and_clearing_it_recovers(
    sim: OpcUaSimulator, subscribe: bool
) -> None:
    tags = [
        {"name": "flaky", "node": nsu("Utilities.Flaky")},
        {"name": "temp", "node": nsu("Oven.Zone1.Temp")},
    ]
    src = source(sim.endpoint, tags, subscribe=subscribe, scan="100ms", watchdog="500ms")
    connector = OpcUaConnector(src)
    await connector.connect()
    deliveries = Deliveries(src.tags)
    task = asyncio.create_task(connector.subscribe(src.tags, deliveries)) if subscribe else None

    async def flaky() -> Sample:
        if task is None:
            return (await connector.read(connector.plan(src.tags)))[0]
        await async_wait_until(lambda: "flaky" in deliveries.latest(), what="flaky delivered")
        return deliveries.latest()["flaky"]

    async def until_flaky(quality: Quality) -> Sample:
        deadline = time.monotonic() + 5
        while (sample := await flaky()).quality is not quality:
            assert time.monotonic() < deadline, f"flaky never became {quality}"
            await asyncio.sleep(0.02)
        return sample

    try:
        await until_flaky(Quality.GOOD)
        await sim.set_bad("Utilities.Flaky")
        try:
            bad = await until_flaky(Quality.BAD)
            assert (bad.value, bad.reason) == (None, "BadNoCommunication")
            if task is None:
                assert (await connector.read(connector.plan(src.tags)))[1].quality is Quality.GOOD
            else:
                assert deliveries.latest()["temp"].quality is Quality.GOOD
        finally:
            await sim.set_bad("Utilities.Flaky", False)
        good = await until_flaky(Quality.GOOD)
        assert isinstance(good.value, float)
        assert good.reason is None
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await connector.close()


async def test_a_subscription_that_stops_publishing_is_lost(sim: OpcUaSimulator) -> None:
    src = source(sim.endpoint, PLANT_TAGS[:2], scan="100ms", watchdog="200ms")
    connector = OpcUaConnector(src)
    await connector.connect()
    try:
        deliveries = Deliveries(src.tags)
        task = asyncio.create_task(connector.subscribe(src.tags, deliveries))
        await async_wait_until(lambda: len(deliveries.calls) >= 2, what="first changes")
        # The server drops the subscription behind the client's back (as after a server-side
        # timeout): no more data, no more keep-alives, while the session itself looks fine.
        assert connector.client is not None
        assert connector.subscription_id is not None
        await connector.client.uaclient.session.delete_subscriptions([connector.subscription_id])
        with pytest.raises(ConnectionLost, match="stopped publishing"):
            await asyncio.wait_for(task, 5)
    finally:
        await connector.close()


async def test_connect_to_nothing_is_connection_lost() -> None:
    connector = OpcUaConnector(
        source(f"opc.tcp://127.0.0.1:{free_port()}", PLANT_TAGS[:1], connect_timeout="1s")
    )
    with pytest.raises(ConnectionLost, match=r"cannot connect to opc\.tcp://127\.0\.0\.1"):
        await connector.connect()
    with pytest.raises(ConnectionLost, match="not connected"):
        await connector.read(connector.plan(connector.source.tags))
    await connector.close()
    await connector.close()  # idempotent, never raises


def readings_after(batches: list[Batch], mark: int) -> list[Reading]:
    return [r for b in batches[mark:] for r in b.readings]


@pytest.mark.slow
@pytest.mark.parametrize("subscribe", [False, True], ids=["poll", "subscribe"])
async def test_server_restart_with_shifted_namespace_recovers_through_the_runtime(
    subscribe: bool,
) -> None:
    port = free_port()
    first = OpcUaSimulator(port=port, interval=0.05)
    await first.start()
    src = source(
        first.endpoint,
        PLANT_TAGS,
        subscribe=subscribe,
        scan="100ms",
        watchdog="500ms",
        backoff_max="300ms",
        connect_timeout="2s",
    )
    connector = OpcUaConnector(src)
    batches: list[Batch] = []
    runner = SourceRunner(src, src.tags, connector, batches.append)
    task = asyncio.create_task(runner.run())
    names = set(PYTHON_TYPES)
    second: OpcUaSimulator | None = None
    try:

        def every_tag(quality: Quality, mark: int) -> bool:
            return {r.tag for r in readings_after(batches, mark) if r.quality is quality} == names

        await async_wait_until(lambda: every_tag(Quality.GOOD, 0), what="every tag good")
        old_index = connector.namespaces.index(NAMESPACE_URI)
        stopped_at = len(batches)
        await first.stop()
        await async_wait_until(lambda: every_tag(Quality.BAD, stopped_at), what="tags bad")
        assert runner.stats.state == "lost"

        # A new server on the same port whose plant namespace moved two places up.
        second = OpcUaSimulator(port=port, interval=0.05, extra_namespaces=["urn:a", "urn:b"])
        await second.start()
        restarted_at = len(batches)
        await async_wait_until(
            lambda: every_tag(Quality.GOOD, restarted_at), timeout=15, what="every tag good again"
        )
        assert connector.namespaces.index(NAMESPACE_URI) == old_index + 2
        assert runner.stats.connects == 2
        now = time.time()
        for reading in readings_after(batches, restarted_at):
            if reading.quality is Quality.GOOD:
                check_plant_value(reading.tag, reading.value, now)
        seqs = [r.seq for b in batches for r in b.readings]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await first.stop()
        if second is not None:
            await second.stop()


async def test_secured_session_user_password_and_untrusted_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = OpcUaSimulator(port=free_port(), cert_dir=tmp_path / "server", users={"op": "s3cret"})
    await sim.start()
    try:
        assert sim.certificate_path is not None
        monkeypatch.setenv("OVEN_PASSWORD", "s3cret")
        pki, trusted = tmp_path / "pki", tmp_path / "trusted"
        text = f"""\
gateway: {{name: edge}}
sources:
  - name: oven
    protocol: opcua
    url: {sim.endpoint}
    security: {{policy: Basic256Sha256, mode: SignAndEncrypt, trust_dir: {trusted}, pki_dir: {pki}}}
    username: op
    password: ${{OVEN_PASSWORD}}
    subscribe: false
    connect_timeout: 5s
    tags:
      - {{name: temp, node: "{nsu("Oven.Zone1.Temp")}"}}
"""
        src = parse_config(text).sources[0]
        assert isinstance(src, OpcUaSource)
        connector = OpcUaConnector(src)

        # Nothing trusted yet: the error names the file to copy and where.
        with pytest.raises(UntrustedServer) as info:
            await connector.connect()
        rejected = list((pki / "rejected").iterdir())
        assert len(rejected) == 1
        assert rejected[0].read_bytes() == sim.certificate_path.read_bytes()
        assert f"copy {rejected[0]} into {trusted}" in str(info.value)

        trusted.mkdir()
        shutil.copy(rejected[0], trusted)
        await connector.connect()
        try:
            assert connector.client is not None
            policy = connector.client.security_policy
            assert policy.URI.endswith("#Basic256Sha256")
            assert policy.Mode == ua.MessageSecurityMode.SignAndEncrypt
            [sample] = await connector.read(connector.plan(src.tags))
            assert sample.quality is Quality.GOOD
            assert isinstance(sample.value, float)
        finally:
            await connector.close()
        assert (pki / "own" / "oven_cert.der").is_file()  # generated once, reused

        wrong = OpcUaConnector(src.model_copy(update={"password": "wrong"}))
        with pytest.raises(ConnectionLost, match="the server refused user 'op'"):
            await wrong.connect()
        await wrong.close()
    finally:
        await sim.stop()


async def test_browse_lists_every_variable_with_type_access_and_value(sim: OpcUaSimulator) -> None:
    text = await browse(sim.endpoint, None, 5, as_yaml=False)
    rows = {line.split()[0]: line.split(maxsplit=3)[1:] for line in text.splitlines()}
    assert set(rows) == set(sim.node_ids) | set(sim.bulk_node_ids)
    assert rows[nsu("Oven.Zone1.Temp")][:2] == ["Double", "r"]
    assert rows[nsu("Oven.Zone1.Setpoint")][:2] == ["Double", "rw"]
    assert rows[nsu("Filler.StateText")][0] == "LocalizedText"
    assert rows[nsu("Filler.Recipe")][2].strip('"') in RECIPES
    zone = await browse(sim.endpoint, nsu("Oven.Zone1"), 1, as_yaml=False)
    assert [line.split()[0] for line in zone.splitlines()] == [
        nsu("Oven.Zone1.Setpoint"),
        nsu("Oven.Zone1.Temp"),
    ]


async def test_browse_yaml_validates_and_reads_back(sim: OpcUaSimulator) -> None:
    emitted = await browse(sim.endpoint, nsu("Oven"), 3, as_yaml=True)
    config = parse_config("gateway: {name: edge}\n" + emitted)
    [src] = config.sources
    assert isinstance(src, OpcUaSource)
    assert [t.name for t in src.tags] == [
        "Profile",
        "Zone1.Setpoint",
        "Zone1.Temp",
        "Zone2.Temp",
    ]
    connector = OpcUaConnector(src)
    await connector.connect()
    try:
        samples = await connector.read(connector.plan(src.tags))
    finally:
        await connector.close()
    assert all(s.quality is Quality.GOOD for s in samples)
    assert isinstance(samples[0].value, list)
