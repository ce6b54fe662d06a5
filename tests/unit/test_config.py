"""Config loading: the YAML contract, env interpolation, and every error path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from gateway.schema import parse_duration, parse_size

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
gateway:
  name: line1-edge
mqtt:
  url: mqtt://127.0.0.1:1883
sources:
  - name: press1
    protocol: modbus
    host: 127.0.0.1
    tags:
      - {name: oil_temp, address: holding:100, type: float32}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    return info.value.problems


def test_repository_config_is_valid() -> None:
    config = load_config(ROOT / "config.yaml")
    assert config.gateway.name == "line1-edge"
    assert config.sources[0].protocol == "modbus"


def test_defaults_follow_the_contract() -> None:
    config = parse_config(GOOD)
    assert config.mqtt.qos == 1
    assert config.mqtt.retain is True
    assert config.mqtt.layout == "per_tag"
    assert config.mqtt.replay.order == "live_first"
    assert config.gateway.buffer.max_bytes == 2**30
    assert config.gateway.buffer.max_age == 7 * 86400
    assert config.gateway.writes is False
    tag = config.sources[0].tags[0]
    assert tag.writable is False
    assert tag.report == "on_change"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1s", 1.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1.5s", 1.5),
        (2, 2.0),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "1x", "-1s", "0s", "fast", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - message checked via config tests
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MiB", 512 * 2**20), ("1GiB", 2**30), ("2GB", 2 * 10**9), ("10KiB", 10240), (4096, 4096)],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_USER", "edge")
    monkeypatch.setenv("BROKER_PW", "s3cret")
    text = GOOD.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        "  url: ${BROKER_URL:-mqtt://10.0.0.5:1883}\n"
        "  username: ${BROKER_USER}\n"
        "  password: ${BROKER_PW}\n",
    )
    config = parse_config(text)
    assert config.mqtt.username == "edge"
    assert config.mqtt.secret() == "s3cret"
    assert config.mqtt.host == "10.0.0.5"


def test_missing_env_var_is_named_with_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    text = GOOD.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        "  url: mqtt://127.0.0.1:1883\n  username: edge\n  password: ${NOT_SET_ANYWHERE}\n",
    )
    assert problems(text) == [
        "mqtt.password: environment variable NOT_SET_ANYWHERE is not set (c.yaml:6)"
    ]


def test_a_password_needs_a_username() -> None:
    text = GOOD.replace(
        "  url: mqtt://127.0.0.1:1883\n", "  url: mqtt://127.0.0.1:1883\n  password: x\n"
    )
    assert problems(text) == ["mqtt: a password needs a username (c.yaml:3)"]


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    text = GOOD.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        f"  url: mqtt://127.0.0.1:1883\n  username: edge\n  password_file: {secret}\n",
    )
    assert parse_config(text).mqtt.secret() == "from-file"


def test_unknown_key_suggests_the_right_one() -> None:
    text = GOOD.replace("  name: line1-edge\n", "  name: line1-edge\n  bufer: {}\n")
    assert problems(text) == ["gateway.bufer: unknown key (did you mean 'buffer'?) (c.yaml:3)"]


def test_unknown_tag_key_has_its_path() -> None:
    text = GOOD.replace("type: float32}", "type: float32, deadbnd: 2}")
    assert problems(text) == [
        "sources[0].tags[0].deadbnd: unknown key (did you mean 'deadband'?) (c.yaml:10)"
    ]


def test_every_problem_is_listed_at_once() -> None:
    text = """\
gateway:
  name: "line 1"
mqtt:
  url: http://broker
  qos: 2
sources:
  - name: press1
    protocol: modbus
    host: 127.0.0.1
    port: 70000
    scan: soon
    tags:
      - {name: a, address: holding:1, type: float32, byte_order: XYZW}
      - {name: b, address: coil:3, type: int16}
      - {name: c, address: 99999}
      - {name: d, address: holding:1, type: string}
  - name: oven
    protocol: profinet
"""
    found = problems(text)
    expected_prefixes = [
        "gateway.name: 'line 1' may only use letters",
        "mqtt.url: 'http://broker': use mqtt://",
        "mqtt.qos:",
        "sources[0].port:",
        "sources[0].scan: 'soon' is not a duration",
        "sources[0].tags[0].byte_order:",
        "sources[0].tags[1]: coil:3 holds one bit: type must be bool, not int16",
        "sources[0].tags[2].address: '99999' is not a Modbus address",
        "sources[0].tags[3]: type string needs length",
        "sources[1].protocol: unknown protocol 'profinet'; this version supports: ",
    ]
    assert len(found) == len(expected_prefixes), found
    for prefix in expected_prefixes:
        assert any(p.startswith(prefix) for p in found), (prefix, found)
    assert all("(c.yaml:" in p for p in found)


def test_duplicate_names_are_refused() -> None:
    text = GOOD + "      - {name: oil_temp, address: holding:200}\n"
    assert problems(text) == ["sources[0].tags[1].name: duplicate tag name 'oil_temp' (c.yaml:11)"]


def test_not_yaml() -> None:
    found = problems("gateway: [unclosed\n")
    assert found[0].startswith("not valid YAML (line 2)")


def test_sparkplug_needs_a_group_id() -> None:
    text = GOOD.replace(
        "  url: mqtt://127.0.0.1:1883\n", "  url: mqtt://127.0.0.1:1883\n  format: sparkplug\n"
    )
    assert problems(text) == [
        "mqtt: format sparkplug needs sparkplug.group_id (e.g. plant1) (c.yaml:3)"
    ]
    config = parse_config(
        text.replace("format: sparkplug", "format: sparkplug\n  sparkplug: {group_id: plant1}")
    )
    assert config.mqtt.sparkplug.group_id == "plant1"


def test_validate_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert main(["validate", "-c", str(good)]) == 0
    assert "ok (1 source(s), 1 tag(s))" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("holding:100", "register:100"))
    assert main(["validate", "-c", str(bad)]) == 2  # EXIT_CONFIG
    err = capsys.readouterr().err
    assert "sources[0].tags[0].address: 'register:100' is not a Modbus address" in err
    assert f"({bad}:10)" in err
    assert main(["validate", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_run_refuses_an_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("name: line1-edge", "name: line1-edge\n  colour: blue"))
    assert main(["run", "-c", str(bad)]) == 2  # EXIT_CONFIG: nothing started
    assert "gateway.colour: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("connections", [0, 17])
def test_modbus_connections_are_bounded(connections: int) -> None:
    setting = f"    host: 127.0.0.1\n    connections: {connections}\n"
    text = GOOD.replace("    host: 127.0.0.1\n", setting)
    (found,) = problems(text)
    assert found.startswith("sources[0].connections: "), found
    assert "(c.yaml:9)" in found
