"""Broker trouble: each cause gives one clear log line, the gateway retries, the buffer absorbs."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.app import Gateway
from simulators.broker import Mosquitto, free_port
from simulators.modbus import ModbusSimulator
from tests.helpers import async_wait_until, gateway_config, running

pytestmark = pytest.mark.integration


async def offline_for_a_while(gateway: Gateway, retries: int = 3) -> str:
    """Wait for several failed attempts; return the error the publisher reports."""
    await async_wait_until(lambda: gateway.publisher.stats.last_error is not None, 15, "an error")
    first = gateway.buffer.stats.readings_added
    await async_wait_until(lambda: gateway.buffer.stats.readings_added > first + 10, 15, "scans")
    assert gateway.publisher.stats.state == "offline"
    assert gateway.publisher.stats.connects == 0
    return gateway.publisher.stats.last_error or ""


def offline_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("broker offline")]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plantgate-test-broker")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "broker.crt", directory / "broker.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_unresolvable_broker_host(
    tmp_path: Path, modbus_sim: ModbusSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    config = gateway_config(tmp_path, 1883, modbus_sim.port)
    config["mqtt"]["url"] = "mqtt://no-such-broker.invalid:1883"
    with caplog.at_level(logging.WARNING):
        async with running(config) as gateway:
            error = await offline_for_a_while(gateway)
    assert "cannot resolve host name" in error
    assert len(offline_lines(caplog)) == 1  # one line for the cause, not one per retry


async def test_refused_credentials_then_the_right_ones(
    tmp_path: Path,
    modbus_sim: ModbusSimulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = Mosquitto(tmp_path / "broker", users={"edge": "right-password"})
    broker.start()
    try:
        config = gateway_config(tmp_path, broker.port, modbus_sim.port)
        config["mqtt"].update(username="edge", password="wrong-password")
        with caplog.at_level(logging.WARNING):
            async with running(config) as gateway:
                error = await offline_for_a_while(gateway)
        assert "refused the connection" in error
        assert "authori" in error.lower()  # "Not authorized" from the broker
        assert len(offline_lines(caplog)) == 1
        config["mqtt"]["password"] = "right-password"
        async with running(config) as gateway:
            await async_wait_until(lambda: gateway.publisher.stats.readings_acked > 20, 15)
    finally:
        broker.stop()


async def test_tls_verification_failure_then_the_right_ca(
    tmp_path: Path, modbus_sim: ModbusSimulator
) -> None:
    cert, key = self_signed(tmp_path)
    broker = Mosquitto(tmp_path / "broker", tls=(cert, key))
    broker.start()
    try:
        config = gateway_config(tmp_path, broker.port, modbus_sim.port)
        config["mqtt"]["url"] = f"mqtts://127.0.0.1:{broker.port}"
        async with running(config) as gateway:  # the system CAs do not know this certificate
            error = await offline_for_a_while(gateway)
        assert "the broker's certificate is not trusted" in error
        assert "set mqtt.tls.ca_file to the CA that signed it" in error
        config["mqtt"]["tls"] = {"ca_file": str(cert)}
        async with running(config) as gateway:
            await async_wait_until(lambda: gateway.publisher.stats.readings_acked > 20, 15)
    finally:
        broker.stop()


async def test_a_broker_that_accepts_then_stalls(
    tmp_path: Path, modbus_sim: ModbusSimulator
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", free_port()))
    silent.listen(16)  # accepts TCP (the kernel does) and never says a word
    try:
        config = gateway_config(tmp_path, silent.getsockname()[1], modbus_sim.port)
        config["mqtt"]["connect_timeout"] = "500ms"
        async with running(config) as gateway:
            error = await offline_for_a_while(gateway)
        assert "sent no CONNACK" in error
    finally:
        silent.close()
