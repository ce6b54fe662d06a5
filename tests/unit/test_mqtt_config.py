"""The MQTT 5 keys of the tag map: ``mqtt.protocol`` and ``mqtt.session_expiry``."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError

CONFIG = """\
gateway:
  name: line1-edge
mqtt:
  url: mqtt://127.0.0.1:1883
{mqtt}
sources:
  - name: press1
    protocol: modbus
    host: 127.0.0.1
    tags:
      - {{name: oil_temp, address: holding:100, type: float32}}
"""


def mqtt(lines: str) -> str:
    return CONFIG.format(mqtt="\n".join(f"  {line}" for line in lines.splitlines()))


def problems(lines: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(mqtt(lines), "c.yaml")
    return info.value.problems


def test_mqtt_311_stays_the_default_without_a_session() -> None:
    cfg = parse_config(mqtt("qos: 1")).mqtt
    assert cfg.protocol == "3.1.1"
    assert not cfg.mqtt5
    assert cfg.session_expiry is None


def test_protocol_5_with_a_session_expiry() -> None:
    cfg = parse_config(mqtt("protocol: 5\nsession_expiry: 1h")).mqtt
    assert cfg.mqtt5
    assert cfg.session_expiry == 3600


def test_an_unknown_protocol_is_refused_naming_the_two() -> None:
    [problem] = problems("protocol: 4")
    assert problem.startswith("mqtt.protocol:")
    assert "'3.1.1'" in problem
    assert "5" in problem


def test_a_session_expiry_without_mqtt5_is_refused() -> None:
    [problem] = problems("session_expiry: 10m")
    assert "session_expiry needs protocol: 5" in problem
