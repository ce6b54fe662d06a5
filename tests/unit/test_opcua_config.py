"""The OPC UA source in the YAML contract: keys, defaults, secrets from the environment, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.opcua.config import OpcUaSource
from connectors.opcua.nodeid import NodeRef
from gateway.config import parse_config
from gateway.errors import ConfigError

# The DESIGN.md example, verbatim apart from the certificate paths.
DESIGN = """\
gateway:
  name: line1-edge
sources:
  - name: oven
    protocol: opcua
    url: opc.tcp://127.0.0.1:4840
    security: {policy: Basic256Sha256, mode: SignAndEncrypt, cert_file: c.der, key_file: k.pem}
    subscribe: true                # monitored items; false = poll with bulk reads
    tags:
      - {name: zone1_temp, node: "nsu=urn:plantgate:sim;s=Oven.Zone1.Temp"}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    return info.value.problems


def oven(config_text: str) -> OpcUaSource:
    source = parse_config(config_text).sources[0]
    assert isinstance(source, OpcUaSource)
    return source


def test_the_design_example_is_valid_with_its_defaults() -> None:
    src = oven(DESIGN)
    assert src.protocol == "opcua"
    assert (src.host, src.port) == ("127.0.0.1", 4840)
    assert src.security.policy == "Basic256Sha256"
    assert src.security.mode == "SignAndEncrypt"
    assert src.security.cert_file == Path("c.der")
    assert src.security.trusted_dir == Path("data/pki/trusted")
    assert src.security.rejected_dir == Path("data/pki/rejected")
    assert src.subscribe is True
    assert src.max_nodes_per_read == 500
    assert src.queue_size == 1
    assert src.tags[0].node == NodeRef("urn:plantgate:sim", "s", "Oven.Zone1.Temp")
    assert src.tags[0].deadband_type is None


def test_sampling_follows_the_tag_scan_and_publishing_the_fastest() -> None:
    text = DESIGN.replace(
        '      - {name: zone1_temp, node: "nsu=urn:plantgate:sim;s=Oven.Zone1.Temp"}\n',
        "      - {name: a, node: ns=2;i=1, scan: 250ms}\n      - {name: b, node: ns=2;i=2}\n",
    )
    src = oven(text)
    assert [src.sampling_for(t) for t in src.tags] == [0.25, 1.0]
    # At most 100 ms by default: a sampled change leaves the server soon, whatever the scan.
    assert src.publishing() == 0.1
    fast = oven(text.replace("scan: 250ms", "scan: 50ms"))
    assert fast.publishing() == 0.05
    fixed = oven(text.replace("subscribe: true", "subscribe: true\n    sampling_interval: 2s"))
    assert [fixed.sampling_for(t) for t in fixed.tags] == [2.0, 2.0]
    slow = oven(text.replace("subscribe: true", "subscribe: true\n    publishing_interval: 1s"))
    assert slow.publishing() == 1.0


def test_a_user_certificate_identity() -> None:
    text = DESIGN.replace(
        "    subscribe: true",
        "    user_cert_file: /etc/pki/user.der\n    user_key_file: /etc/pki/user.pem\n"
        "    subscribe: true",
    )
    src = oven(text)
    assert (src.user_cert_file, src.user_key_file) == (
        Path("/etc/pki/user.der"),
        Path("/etc/pki/user.pem"),
    )
    assert src.identity == "user certificate /etc/pki/user.der"
    assert oven(DESIGN).identity == "anonymous login"


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVEN_USER", "operator")
    monkeypatch.setenv("OVEN_PASSWORD", "s3cret")
    text = DESIGN.replace(
        "    subscribe: true",
        "    username: ${OVEN_USER}\n    password: ${OVEN_PASSWORD}\n    subscribe: true",
    )
    src = oven(text)
    assert (src.username, src.secret()) == ("operator", "s3cret")


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    text = DESIGN.replace(
        "    subscribe: true", f"    username: op\n    password_file: {secret}\n    subscribe: true"
    )
    assert oven(text).secret() == "from-file"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '"nsu=urn:plantgate:sim;s=Oven.Zone1.Temp"',
            '"ns=two;s=Temp"',
            "sources[0].tags[0].node: 'ns=two;s=Temp': ns= needs a namespace index 0..65535, "
            "not 'two' (c.yaml:10)",
        ),
        (
            '"nsu=urn:plantgate:sim;s=Oven.Zone1.Temp"',
            "Oven.Zone1.Temp",
            "sources[0].tags[0].node: 'Oven.Zone1.Temp' is not an OPC UA node id; use i=N, "
            "s=TEXT, g=GUID or b=BASE64, optionally after ns=N; or nsu=URI; (c.yaml:10)",
        ),
        (
            "url: opc.tcp://127.0.0.1:4840",
            "url: http://127.0.0.1:4840",
            "sources[0].url: 'http://127.0.0.1:4840': use opc.tcp://HOST[:PORT] (c.yaml:6)",
        ),
        (
            "url: opc.tcp://127.0.0.1:4840",
            "url: opc.tcp://op:pw@127.0.0.1:4840",
            "sources[0].url: no credentials in the url: use username and password (or ${VAR}) "
            "(c.yaml:6)",
        ),
        (
            "policy: Basic256Sha256",
            "policy: Basic128Rsa15",
            "sources[0].security.policy: Input should be 'None', 'Basic256Sha256' or "
            "'Aes128Sha256RsaOaep' (c.yaml:7)",
        ),
        (
            ", key_file: k.pem}",
            "}",
            "sources[0].security: set both cert_file and key_file, or neither (one is generated)"
            " (c.yaml:7)",
        ),
        (
            "subscribe: true ",
            "subscribe: true\n    password: x ",
            "sources[0]: a password needs a username (c.yaml:4)",
        ),
        (
            "subscribe: true ",
            "subscribe: true\n    user_cert_file: u.der ",
            "sources[0]: set both user_cert_file and user_key_file, or neither (c.yaml:4)",
        ),
        (
            "subscribe: true ",
            "subscribe: true\n    user_cert_file: u.der\n    user_key_file: u.pem\n"
            "    username: op ",
            "sources[0]: user_cert_file and username are two user identities: set one of them "
            "(c.yaml:4)",
        ),
        (
            "    security: {policy: Basic256Sha256, mode: SignAndEncrypt, cert_file: c.der, "
            "key_file: k.pem}\n",
            "    user_cert_file: u.der\n    user_key_file: u.pem\n",
            "sources[0]: user_cert_file needs a secured session: set security.policy "
            "(Basic256Sha256 or Aes128Sha256RsaOaep) (c.yaml:4)",
        ),
        (
            "{name: zone1_temp,",
            "{name: zone1_temp, deadband_type: percent,",
            "sources[0].tags[0]: deadband_type percent needs deadband between 0 and 100 "
            "(% of EURange) (c.yaml:10)",
        ),
    ],
)
def test_mistakes_are_refused_with_their_path(old: str, new: str, expected: str) -> None:
    assert old in DESIGN
    assert problems(DESIGN.replace(old, new)) == [expected]


def test_unknown_keys_are_refused() -> None:
    found = problems(DESIGN.replace("subscribe: true", "subscribe: true\n    subscription: 1"))
    assert len(found) == 1
    assert found[0].startswith("sources[0].subscription: unknown key")
