"""`validate` catches what `run` would die on: duplicate keys, absurd numbers, missing or
unreadable files, certificates that do not load; a literal secret is warned about."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.pki import Authority
from tests.unit.test_config import GOOD, problems


def test_a_duplicate_key_is_refused_with_both_lines() -> None:
    text = GOOD.replace("  name: line1-edge\n", "  name: line1-edge\n  writes: false\n  name: x\n")
    assert problems(text) == ["gateway.name: duplicate key (lines 2 and 4) (c.yaml:4)"]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (("type: float32}", "type: float32, deadband: 1e400}"), "sources[0].tags[0].deadband"),
        (("type: float32}", "type: float32, scan: 0.0001ms}"), "sources[0].tags[0].scan"),
        (("    host: 127.0.0.1\n", "    host: 127.0.0.1\n    scan: 0ms\n"), "sources[0].scan"),
        (
            ("  name: line1-edge\n", "  name: line1-edge\n  buffer: {max_bytes: 1}\n"),
            "gateway.buffer.max_bytes",
        ),
        (
            ("  name: line1-edge\n", "  name: line1-edge\n  buffer: {max_age: 200000000000d}\n"),
            "gateway.buffer.max_age",
        ),
        (
            ("  name: line1-edge\n", "  name: line1-edge\n  buffer: {max_age: 10s}\n"),
            "gateway.buffer.max_age",
        ),
        (
            (
                "  url: mqtt://127.0.0.1:1883\n",
                "  url: mqtt://127.0.0.1:1883\n  reconnect: {min: 10s, max: 1s}\n",
            ),
            "mqtt.reconnect",
        ),
        (
            ("  url: mqtt://127.0.0.1:1883\n", "  url: mqtt://127.0.0.1:1883\n  keepalive: 0.1s\n"),
            "mqtt.keepalive",
        ),
    ],
)
def test_absurd_numbers_are_refused(change: tuple[str, str], where: str) -> None:
    (found,) = problems(GOOD.replace(*change))
    assert found.startswith(f"{where}: "), found


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_validate_names_a_missing_password_file_and_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        "  url: mqtts://127.0.0.1:8883\n  username: edge\n"
        f"  password_file: {tmp_path}/nope\n"
        f"  tls: {{ca_file: {tmp_path}/ca.pem}}\n",
    )
    assert main(["validate", "-c", write(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert f"mqtt.password_file: {tmp_path}/nope: no such file" in err
    assert f"mqtt.tls.ca_file: {tmp_path}/ca.pem: no such file" in err


def test_validate_loads_the_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = Authority(tmp_path)
    cert, key = ca.issue("edge")
    _, other_key = ca.issue("someone-else")
    tls = f"  tls: {{ca_file: {ca.cert_file}, cert_file: {cert}, key_file: KEY}}\n"
    base = GOOD.replace("  url: mqtt://127.0.0.1:1883\n", "  url: mqtts://127.0.0.1:8883\n")
    good = base.replace("mqtt:\n", "mqtt:\n" + tls.replace("KEY", str(key)))
    assert main(["validate", "-c", write(tmp_path, good)]) == 0
    mismatched = base.replace("mqtt:\n", "mqtt:\n" + tls.replace("KEY", str(other_key)))
    assert main(["validate", "-c", write(tmp_path, mismatched)]) == 2
    assert "not a certificate and its key" in capsys.readouterr().err
    not_a_ca = base.replace("mqtt:\n", f"mqtt:\n  tls: {{ca_file: {key}}}\n")
    assert main(["validate", "-c", write(tmp_path, not_a_ca)]) == 2
    assert "not a CA certificate" in capsys.readouterr().err


def test_a_literal_secret_is_warned_about_not_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        "  url: mqtt://127.0.0.1:1883\n  username: edge\n  password: hunter2\n",
    )
    assert main(["validate", "-c", write(tmp_path, text)]) == 0
    err = capsys.readouterr().err
    assert "warning: mqtt.password: a literal secret; use ${VAR} or password_file" in err
    assert "hunter2" not in err
    warnings: list[str] = []
    parse_config(text.replace("hunter2", "${EDGE_PASSWORD:-x}"), "c.yaml", warnings=warnings)
    assert warnings == []


def test_parse_alone_does_not_touch_the_files(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        f"  url: mqtt://127.0.0.1:1883\n  username: edge\n  password_file: {tmp_path}/nope\n",
    )
    parse_config(text)  # the structure is fine: files are checked by validate and run
    with pytest.raises(ConfigError, match="no such file"):
        parse_config(text, files=True)
