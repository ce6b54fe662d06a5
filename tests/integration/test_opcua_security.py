"""Secured OPC UA sessions: policies and modes, user identities, refusals that say why."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from connectors.opcua.config import OpcUaSource
from connectors.opcua.connector import OpcUaConnector
from connectors.opcua.security import POLICIES
from gateway.errors import ConnectionLost
from gateway.models import Quality
from simulators.broker import Mosquitto, free_port
from simulators.opcua import OpcUaSimulator, nsu
from tests.helpers import Recorder, async_wait_until, running

# One secured simulator for the module: building asyncua's address space takes ~2 s.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TEMP = nsu("Oven.Zone1.Temp")
COUNTER = nsu("Filler.Counter")


@dataclass(frozen=True)
class Pki:
    """Files of the secured simulator and of its clients."""

    operator: tuple[Path, Path]  # a user certificate the server knows, and its key
    stranger: tuple[Path, Path]  # a user certificate the server has never seen
    trusted: Path  # the client's trusted directory (holds the simulator's certificate)
    pki_dir: Path  # the client's own certificate is generated here once


def user_certificate(directory: Path, name: str, pem: bool) -> tuple[Path, Path]:
    """A self-signed user certificate (PEM or DER) and its PEM key."""
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        name,
        {"organizationName": "plantgate tests"},
        [x509.UniformResourceIdentifier(f"urn:plantgate:tests:user:{name}")],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
        days=30,
    )
    cert_path = directory / (f"{name}.crt" if pem else f"{name}.der")
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM if pem else Encoding.DER))
    key_path = directory / f"{name}.key"
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("opcua-security")
    return Pki(
        # PEM under a .crt name and DER: neither may depend on the file name's extension.
        operator=user_certificate(root, "operator", pem=True),
        stranger=user_certificate(root, "stranger", pem=False),
        trusted=root / "trusted",
        pki_dir=root / "pki",
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim(files: Pki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    simulator = OpcUaSimulator(
        port=free_port(),
        interval=0.05,
        cert_dir=tmp_path_factory.mktemp("opcua-server"),
        users={"op": "s3cret"},
        user_certificates={"operator": files.operator[0]},
        policies=("Basic256Sha256", "Aes128Sha256RsaOaep"),
    )
    await simulator.start()
    assert simulator.certificate_path is not None
    files.trusted.mkdir(exist_ok=True)
    shutil.copy(simulator.certificate_path, files.trusted)
    yield simulator
    await simulator.stop()


def secured(
    sim: OpcUaSimulator,
    files: Pki,
    policy: str = "Basic256Sha256",
    mode: str = "SignAndEncrypt",
    name: str = "oven",
    **identity: Any,
) -> dict[str, Any]:
    """An OPC UA source as YAML gives it, trusting the simulator."""
    return {
        "name": name,
        "protocol": "opcua",
        "url": sim.endpoint,
        "security": {
            "policy": policy,
            "mode": mode,
            "trust_dir": str(files.trusted),
            "pki_dir": str(files.pki_dir),
        },
        "subscribe": False,
        "connect_timeout": "5s",
        "tags": [{"name": "temp", "node": TEMP}, {"name": "counter", "node": COUNTER}],
        **identity,
    }


def as_user(cert_and_key: tuple[Path, Path]) -> dict[str, str]:
    return {"user_cert_file": str(cert_and_key[0]), "user_key_file": str(cert_and_key[1])}


@pytest.mark.parametrize(
    ("policy", "mode", "identity"),
    [
        ("Basic256Sha256", "SignAndEncrypt", "certificate"),
        ("Basic256Sha256", "Sign", "certificate"),
        ("Aes128Sha256RsaOaep", "Sign", "certificate"),
        ("Aes128Sha256RsaOaep", "SignAndEncrypt", "certificate"),
        # Signed only, the password travels encrypted with the policy's own RSA-OAEP padding.
        ("Aes128Sha256RsaOaep", "Sign", "password"),
        ("Aes128Sha256RsaOaep", "SignAndEncrypt", "password"),
    ],
)
async def test_a_secured_session_reads_values(
    sim: OpcUaSimulator, files: Pki, policy: str, mode: str, identity: str
) -> None:
    login = (
        as_user(files.operator)
        if identity == "certificate"
        else {"username": "op", "password": "s3cret"}
    )
    src = OpcUaSource.model_validate(secured(sim, files, policy, mode, **login))
    connector = OpcUaConnector(src)
    await connector.connect()
    try:
        assert connector.client is not None
        negotiated = connector.client.security_policy
        assert negotiated.URI == POLICIES[policy].URI
        assert negotiated.Mode == getattr(ua.MessageSecurityMode, mode)
        temp, counter = await connector.read(connector.plan(src.tags))
    finally:
        await connector.close()
    assert temp.quality is Quality.GOOD
    assert isinstance(temp.value, float)
    assert counter.quality is Quality.GOOD
    assert isinstance(counter.value, int)


async def test_an_unknown_user_certificate_is_refused_naming_it(
    sim: OpcUaSimulator, files: Pki
) -> None:
    src = OpcUaSource.model_validate(secured(sim, files, **as_user(files.stranger)))
    connector = OpcUaConnector(src)
    with pytest.raises(ConnectionLost) as info:
        await connector.connect()
    await connector.close()
    message = str(info.value)
    assert "BadUserAccessDenied" in message
    assert f"the server refused user certificate {files.stranger[0]}" in message
    assert "CN=stranger" in message
    assert "registered as a user on the server" in message


async def test_a_login_the_endpoint_does_not_offer_is_refused_before_trying(
    sim: OpcUaSimulator, files: Pki
) -> None:
    src = OpcUaSource.model_validate(secured(sim, files, "Aes128Sha256RsaOaep", "Sign"))
    connector = OpcUaConnector(src)  # anonymous: this simulator only knows its users
    with pytest.raises(ConnectionLost) as info:
        await connector.connect()
    await connector.close()
    assert str(info.value) == (
        f"{sim.endpoint}: its Aes128Sha256RsaOaep/Sign endpoint does not accept anonymous "
        "logins; it accepts: user certificate, username"
    )


async def test_a_refused_user_certificate_marks_only_its_source_bad(
    sim: OpcUaSimulator, files: Pki, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = {
        "gateway": {"name": "test-edge", "buffer": {"path": str(tmp_path / "buffer.db")}},
        "mqtt": {"url": mosquitto.url, "topic_prefix": "t/line"},
        "sources": [
            {**secured(sim, files, name="vault", **as_user(files.operator)), "scan": "100ms"},
            {
                **secured(sim, files, name="stranger", **as_user(files.stranger)),
                "scan": "100ms",
                "backoff_max": "500ms",
            },
        ],
    }
    rec = Recorder(mosquitto.port, "t/line/#").start()
    try:
        async with running(config) as gateway:
            vault, stranger = gateway.runners

            def settled() -> bool:
                readings = rec.readings()
                good = [r for r in readings if r["source"] == "vault" and r["quality"] == "good"]
                bad = {r["tag"] for r in readings if r["source"] == "stranger"}
                counters = {r["value"] for r in good if r["tag"] == "counter"}
                return len(counters) >= 3 and bad == {"temp", "counter"}

            await async_wait_until(settled, timeout=15, what="vault good, stranger bad")
            assert vault.stats.state == "connected"
            assert stranger.stats.state == "lost"
            assert stranger.stats.last_error is not None
            assert "BadUserAccessDenied" in stranger.stats.last_error
            assert f"user certificate {files.stranger[0]}" in stranger.stats.last_error
    finally:
        rec.stop()
    assert all(r["quality"] == "bad" for r in rec.readings("stranger"))
