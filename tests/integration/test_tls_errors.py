"""TLS failures that name their cause, through a real mosquitto: a client certificate the broker
requires, a certificate for another host; and `plantgate tail` with the same TLS set-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from simulators.broker import Mosquitto
from simulators.modbus import ModbusSimulator
from tests.helpers import async_wait_until, gateway_config, running, write_config
from tests.integration.test_broker_trouble import offline_for_a_while
from tests.pki import Authority

pytestmark = pytest.mark.integration


def tls_config(tmp_path: Path, broker: Mosquitto, modbus: int, **tls: Any) -> dict[str, Any]:
    config = gateway_config(tmp_path, broker.port, modbus)
    config["mqtt"]["url"] = f"mqtts://127.0.0.1:{broker.port}"
    config["mqtt"]["tls"] = {k: str(v) for k, v in tls.items()}
    return config


async def test_a_broker_that_requires_a_client_certificate_says_so(
    tmp_path: Path, modbus_sim: ModbusSimulator
) -> None:
    ca = Authority(tmp_path)
    broker = Mosquitto(
        tmp_path / "broker", tls=ca.issue("broker", ("127.0.0.1",)), client_ca=ca.cert_file
    )
    broker.start()
    try:
        config = tls_config(tmp_path, broker, modbus_sim.port, ca_file=ca.cert_file)
        async with running(config) as gateway:
            error = await offline_for_a_while(gateway)
        # The broker sends its alert, or only closes the socket: either way the error says it.
        assert "client certificate" in error, error
        assert "tls.cert_file and key_file" in error
        cert, key = ca.issue("line1-edge")
        config["mqtt"]["tls"] |= {"cert_file": str(cert), "key_file": str(key)}
        async with running(config) as gateway:
            await async_wait_until(lambda: gateway.publisher.stats.readings_acked > 10, 15)
    finally:
        broker.stop()


async def test_a_certificate_for_another_host_is_named_a_host_name_mismatch(
    tmp_path: Path, modbus_sim: ModbusSimulator
) -> None:
    ca = Authority(tmp_path)
    broker = Mosquitto(tmp_path / "broker", tls=ca.issue("broker", ("broker.plant.example",)))
    broker.start()
    try:
        config = tls_config(tmp_path, broker, modbus_sim.port, ca_file=ca.cert_file)
        async with running(config) as gateway:
            error = await offline_for_a_while(gateway)
        assert "is not for host '127.0.0.1' (host name mismatch" in error, error
    finally:
        broker.stop()


def test_tail_uses_the_client_certificate_and_says_why_it_cannot_connect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = Authority(tmp_path)
    broker = Mosquitto(
        tmp_path / "broker", tls=ca.issue("broker", ("127.0.0.1",)), client_ca=ca.cert_file
    )
    broker.start()
    try:
        config = tls_config(tmp_path, broker, 1, ca_file=ca.cert_file)
        without = write_config(tmp_path / "without.yaml", config)
        assert main(["tail", "-c", str(without), "--count", "1"]) == 1  # not a silent hang
        assert "client certificate" in capsys.readouterr().err
        cert, key = ca.issue("operator")
        config["mqtt"]["tls"] |= {"cert_file": str(cert), "key_file": str(key)}
        config["mqtt"]["topic_prefix"] = "$SYS/broker"  # something the broker itself publishes
        with_cert = write_config(tmp_path / "with.yaml", config)
        assert main(["tail", "-c", str(with_cert), "--count", "1"]) == 0
        assert "subscribed to $SYS/broker/#" in capsys.readouterr().out
    finally:
        broker.stop()
