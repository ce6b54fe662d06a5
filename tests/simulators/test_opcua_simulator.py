"""Integration tests: a real asyncua Client against the OPC UA plant simulator."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import (
    BadNodeIdUnknown,
    BadUserAccessDenied,
    UaError,
    UaStatusCodeError,
)
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.opcua import NAMESPACE_URI, PLANT_VARIABLES, OpcUaSimulator, serve_opcua

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from asyncua.common.node import Node

# One shared simulator for the read-only tests: starting asyncua's address space costs ~2 s.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

T = TypeVar("T")
VT = ua.VariantType
TEMP = f"nsu={NAMESPACE_URI};s=Oven.Zone1.Temp"
FLAKY = f"nsu={NAMESPACE_URI};s=Utilities.Flaky"
COUNTER = f"nsu={NAMESPACE_URI};s=Filler.Counter"
SETPOINT = f"nsu={NAMESPACE_URI};s=Oven.Zone1.Setpoint"
CLIENT_URI = "urn:plantgate:test-client"

# Spelled out here rather than read from PLANT_VARIABLES, so a type change in the simulator
# is a test failure and not silently "expected".
EXPECTED_TYPES: dict[str, ua.VariantType] = {
    "Oven.Zone1.Temp": VT.Double,
    "Oven.Zone1.Setpoint": VT.Double,
    "Oven.Zone2.Temp": VT.Float,
    "Oven.Profile": VT.Double,
    "Filler.Counter": VT.UInt32,
    "Filler.TotalBottles": VT.UInt64,
    "Filler.Rejects": VT.Int32,
    "Filler.Speed": VT.UInt16,
    "Filler.State": VT.Int16,
    "Filler.StateText": VT.LocalizedText,
    "Filler.StateSince": VT.DateTime,
    "Filler.Running": VT.Boolean,
    "Filler.Recipe": VT.String,
    "Filler.BatchId": VT.ByteString,
    "Filler.AlarmWord": VT.UInt16,
    "Filler.Heartbeat": VT.Byte,
    "Utilities.Pressure": VT.Double,
    "Utilities.Ramp": VT.Double,
    "Utilities.Sine": VT.Double,
    "Utilities.Trim": VT.SByte,
    "Utilities.EnergyWh": VT.Int64,
    "Utilities.Toggle": VT.Boolean,
    "Utilities.Flaky": VT.Double,
    "Recipe.Enabled": VT.Boolean,
    "Recipe.Trim": VT.SByte,
    "Recipe.Station": VT.Byte,
    "Recipe.FillOffset": VT.Int16,
    "Recipe.TargetSpeed": VT.UInt16,
    "Recipe.LotNumber": VT.Int32,
    "Recipe.BatchSize": VT.UInt32,
    "Recipe.EnergyBudget": VT.Int64,
    "Recipe.TotalTarget": VT.UInt64,
    "Recipe.FillWeight": VT.Float,
    "Recipe.Pressure": VT.Double,
    "Recipe.Name": VT.String,
    "Recipe.ZoneTemps": VT.Double,
}
PLANT_BUILTINS = {
    VT.Boolean,
    VT.SByte,
    VT.Byte,
    VT.Int16,
    VT.UInt16,
    VT.Int32,
    VT.UInt32,
    VT.Int64,
    VT.UInt64,
    VT.Float,
    VT.Double,
    VT.String,
    VT.DateTime,
    VT.ByteString,
    VT.LocalizedText,
}


def free_port() -> int:
    """A port nobody listens on right now (bind to 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def poll(check: Callable[[], Awaitable[T | None]], what: str, within: float = 5.0) -> T:
    """Await ``check()`` until it returns something other than None, or fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


async def resolve(client: Client, node_id: str) -> Node:
    """Turn an ``nsu=`` node id into a node via the server's namespace array, as a gateway must."""
    uri, _, identifier = node_id.removeprefix("nsu=").partition(";s=")
    assert uri, node_id
    assert identifier, node_id
    index = await client.get_namespace_index(uri)
    return client.get_node(f"ns={index};s={identifier}")


async def read(client: Client, node_id: str) -> ua.DataValue:
    """Read a DataValue without raising on a Bad status."""
    node = await resolve(client, node_id)
    return await node.read_data_value(raise_on_bad_status=False)


def is_good(value: ua.DataValue) -> bool:
    """True if the DataValue's StatusCode is Good."""
    return value.StatusCode is not None and value.StatusCode.is_good()


async def wait_for_next_tick(client: Client) -> None:
    """Return once the simulator has run at least one more update (the counter moves each tick)."""
    first = (await read(client, COUNTER)).Value

    async def moved() -> bool | None:
        return True if (await read(client, COUNTER)).Value != first else None

    await poll(moved, "the simulator's next tick")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim() -> AsyncIterator[OpcUaSimulator]:
    simulator = OpcUaSimulator(port=free_port(), interval=0.05, bulk_variables=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def client(sim: OpcUaSimulator) -> AsyncIterator[Client]:
    async with Client(sim.endpoint, timeout=5) as connected:
        yield connected


async def test_namespace_uri_resolves(sim: OpcUaSimulator, client: Client) -> None:
    namespaces = await client.get_namespace_array()
    assert namespaces.index(NAMESPACE_URI) == sim.namespace_index
    assert set(sim.node_ids) == {f"nsu={NAMESPACE_URI};s={name}" for name in EXPECTED_TYPES}
    for node_id in sim.node_ids:
        assert is_good(await read(client, node_id)), node_id


async def test_browse_folders_per_area(client: Client) -> None:
    idx = await client.get_namespace_index(NAMESPACE_URI)
    zone = await client.nodes.objects.get_child([f"{idx}:Oven", f"{idx}:Zone1"])
    temp = await zone.get_child(f"{idx}:Temp")
    assert temp.nodeid.to_string() == f"ns={idx};s=Oven.Zone1.Temp"
    for area in ("Oven", "Filler", "Utilities", "Bench"):
        folder = await client.nodes.objects.get_child(f"{idx}:{area}")
        assert await folder.read_node_class() == ua.NodeClass.Object


async def test_oven_temperature_moves_with_source_timestamp(client: Client) -> None:
    first = await read(client, TEMP)
    assert first.Value is not None
    assert first.Value.VariantType == VT.Double
    assert 170.0 <= first.Value.Value <= 190.0
    assert first.SourceTimestamp is not None
    assert abs(datetime.now(UTC) - first.SourceTimestamp) < timedelta(seconds=10)

    async def changed() -> ua.DataValue | None:
        latest = await read(client, TEMP)
        return latest if latest.Value != first.Value else None

    later = await poll(changed, "Oven.Zone1.Temp to move")
    assert later.SourceTimestamp is not None
    assert later.SourceTimestamp > first.SourceTimestamp


async def test_every_typed_node_reads_with_expected_variant_type(client: Client) -> None:
    assert {v.name for v in PLANT_VARIABLES} == set(EXPECTED_TYPES)
    assert set(EXPECTED_TYPES.values()) >= PLANT_BUILTINS
    for name, vtype in EXPECTED_TYPES.items():
        node_id = f"nsu={NAMESPACE_URI};s={name}"
        value = await read(client, node_id)
        assert value.Value is not None
        assert value.Value.VariantType == vtype, name
        # The DataType attribute agrees with the value, so a client can map types up front.
        node = await resolve(client, node_id)
        assert (await node.read_data_type()).Identifier == vtype.value, name


async def test_profile_is_a_double_array_of_ten(client: Client) -> None:
    node = await resolve(client, f"nsu={NAMESPACE_URI};s=Oven.Profile")
    value = await node.read_data_value()
    assert value.Value is not None
    assert value.Value.is_array
    assert len(value.Value.Value) == 10
    assert all(isinstance(x, float) for x in value.Value.Value)
    assert await node.read_value_rank() == 1
    assert await node.read_array_dimensions() == [10]


async def test_subscription_receives_data_changes(client: Client) -> None:
    changes: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    class Handler:
        def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
            changes.put_nowait((node.nodeid.to_string(), val))

    subscription = await client.create_subscription(50, Handler())
    try:
        temp, counter = await resolve(client, TEMP), await resolve(client, COUNTER)
        await subscription.subscribe_data_change([temp, counter])
        seen: dict[str, list[Any]] = {}
        # Initial values plus at least two real changes of each node.
        while min((len(v) for v in seen.values()), default=0) < 3 or len(seen) < 2:
            node_id, val = await asyncio.wait_for(changes.get(), timeout=5)
            seen.setdefault(node_id, []).append(val)
        counts = seen[counter.nodeid.to_string()]
        assert counts == sorted(counts)
        assert len(set(counts)) == len(counts)
    finally:
        await subscription.delete()


async def test_set_bad_makes_reads_bad_until_cleared(sim: OpcUaSimulator, client: Client) -> None:
    assert is_good(await read(client, FLAKY))
    await sim.set_bad("Utilities.Flaky", True)
    try:
        bad = await read(client, FLAKY)
        assert bad.StatusCode is not None
        assert bad.StatusCode.is_bad()
        assert bad.StatusCode.name == "BadNoCommunication"
        # Still Bad after further ticks: the update loop does not paper over the fault.
        await wait_for_next_tick(client)
        assert not is_good(await read(client, FLAKY))
        assert is_good(await read(client, TEMP))
    finally:
        await sim.set_bad(FLAKY, False)  # nsu= form is accepted too
    good = await read(client, FLAKY)
    assert is_good(good)
    assert good.Value is not None
    assert good.Value.VariantType == VT.Double


async def test_set_bad_unknown_node_raises(sim: OpcUaSimulator) -> None:
    with pytest.raises(KeyError):
        await sim.set_bad("Oven.Zone9.Temp", True)


async def test_setpoint_is_writable_and_kept(client: Client) -> None:
    node = await resolve(client, SETPOINT)
    await node.write_value(ua.DataValue(ua.Variant(192.5, VT.Double)))
    try:
        await wait_for_next_tick(client)
        assert await node.read_value() == 192.5
    finally:
        await node.write_value(ua.DataValue(ua.Variant(180.0, VT.Double)))
    temp = await resolve(client, TEMP)
    with pytest.raises(UaStatusCodeError, match=r"BadUserAccessDenied|BadNotWritable"):
        await temp.write_value(ua.DataValue(ua.Variant(1.0, VT.Double)))


async def test_bulk_variables_change_every_interval(sim: OpcUaSimulator, client: Client) -> None:
    assert len(sim.bulk_node_ids) == 20
    assert sim.bulk_node_ids[0] == f"nsu={NAMESPACE_URI};s=Bench.Group00.Var0000"
    nodes = [await resolve(client, node_id) for node_id in sim.bulk_node_ids]
    first = await client.read_values(nodes)
    assert len(set(first)) == len(first)

    async def all_changed() -> bool | None:
        latest = await client.read_values(nodes)
        return True if all(a != b for a, b in zip(first, latest, strict=True)) else None

    await poll(all_changed, "every bulk variable to change")


async def test_restart_with_extra_namespace_shifts_index() -> None:
    port = free_port()
    first = OpcUaSimulator(port=port)
    await first.start()
    try:
        async with Client(first.endpoint, timeout=5) as old_client:
            old_index = await old_client.get_namespace_index(NAMESPACE_URI)
            assert is_good(await read(old_client, TEMP))
    finally:
        await first.stop()

    extra = ["urn:example:vendor-a", "urn:example:vendor-b"]
    second = OpcUaSimulator(port=port, extra_namespaces=extra)
    await second.start()  # same port: must not fail with "address in use"
    try:
        async with Client(second.endpoint, timeout=5) as new_client:
            namespaces = await new_client.get_namespace_array()
            assert namespaces[old_index : old_index + 2] == extra
            new_index = await new_client.get_namespace_index(NAMESPACE_URI)
            assert new_index == old_index + len(extra) == second.namespace_index
            # The nsu= id still resolves to the moved namespace...
            value = await read(new_client, TEMP)
            assert value.Value is not None
            assert 170.0 <= value.Value.Value <= 190.0
            # ...while the cached numeric index now points into a foreign namespace.
            stale = new_client.get_node(f"ns={old_index};s=Oven.Zone1.Temp")
            with pytest.raises(BadNodeIdUnknown):
                await stale.read_value()
    finally:
        await second.stop()


async def test_stop_drops_clients_and_the_same_instance_restarts() -> None:
    sim = OpcUaSimulator(port=free_port())
    await sim.start()
    client = Client(sim.endpoint, timeout=2)
    await client.connect()
    try:
        await sim.set_bad(FLAKY, True)
        await sim.stop()
        assert not sim.running

        async def refused() -> bool | None:
            try:
                await read(client, TEMP)
            except (UaError, OSError, TimeoutError):
                return True
            return None

        await poll(refused, "reads to fail after stop")
    finally:
        with contextlib.suppress(UaError, OSError, TimeoutError):
            await client.disconnect()

    await sim.start()
    try:
        async with Client(sim.endpoint, timeout=5) as again:
            assert is_good(await read(again, TEMP))
            assert is_good(await read(again, FLAKY)), "a restart clears injected faults"
    finally:
        await sim.stop()


async def test_serve_opcua_runs_until_cancelled() -> None:
    port = free_port()
    task = asyncio.create_task(serve_opcua("127.0.0.1", port))

    async def reads_temp() -> float | None:
        if task.done():
            pytest.fail(f"serve_opcua exited early: {task!r}")
        try:
            async with Client(f"opc.tcp://127.0.0.1:{port}", timeout=2) as client:
                value = await read(client, TEMP)
        except (OSError, TimeoutError, UaError):
            return None
        return value.Value.Value if value.Value is not None else None

    assert 170.0 <= await poll(reads_temp, "serve_opcua to accept clients", within=15) <= 190.0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # The port is free again once the task is gone.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


async def _client_certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "client_cert.der", tmp_path / "client_key.pem"
    await setup_self_signed_certificate(
        key,
        cert,
        CLIENT_URI,
        socket.gethostname(),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"organizationName": "plantgate tests"},
    )
    return cert, key


async def test_secured_endpoint_accepts_sign_and_encrypt(tmp_path: Path) -> None:
    sim = OpcUaSimulator(port=free_port(), cert_dir=tmp_path / "pki", users={"operator": "s3cret"})
    await sim.start()
    try:
        assert sim.certificate_path is not None
        assert sim.certificate_path.is_file()
        endpoints = await Client(sim.endpoint, timeout=5).connect_and_get_server_endpoints()
        offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
        assert offered == {
            ("Basic256Sha256", ua.MessageSecurityMode.Sign),
            ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
        }
        cert, key = await _client_certificate(tmp_path)

        async def secured_client(mode: ua.MessageSecurityMode, password: str) -> Client:
            client = Client(sim.endpoint, timeout=5)
            client.application_uri = CLIENT_URI  # must match the certificate's URI
            client.set_user("operator")
            client.set_password(password)
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=str(cert),
                private_key=str(key),
                server_certificate=str(sim.certificate_path),
                mode=mode,
            )
            return client

        for mode in (ua.MessageSecurityMode.SignAndEncrypt, ua.MessageSecurityMode.Sign):
            async with await secured_client(mode, "s3cret") as client:
                value = await read(client, TEMP)
                assert value.Value is not None
                assert 170.0 <= value.Value.Value <= 190.0

        rejected = await secured_client(ua.MessageSecurityMode.SignAndEncrypt, "wrong")
        with pytest.raises(BadUserAccessDenied):
            await rejected.connect()
        with contextlib.suppress(Exception):
            await rejected.disconnect()
    finally:
        await sim.stop()
