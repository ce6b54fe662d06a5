"""User identities of an OPC UA session: certificate files, and what an endpoint accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.crypto import cert_gen
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from connectors.opcua.config import OpcUaSource
from connectors.opcua.security import (
    check_identity_offered,
    describe_user_certificate,
    endpoint_name,
    load_user_identity,
    policy_name,
)
from gateway.errors import ConnectionLost


def write_user(directory: Path, name: str, cert_der: bool, key_der: bool) -> tuple[Path, Path]:
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {"organizationName": "plantgate tests"}, [], extended=[], days=30
    )
    # The same suffix for both encodings: the content decides, never the file name.
    cert_path = directory / f"{name}.cert"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER if cert_der else Encoding.PEM))
    key_path = directory / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            Encoding.DER if key_der else Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("users")
    return {
        "pem": write_user(root, "pem", cert_der=False, key_der=False),
        "der": write_user(root, "der", cert_der=True, key_der=True),
    }


@pytest.mark.parametrize("kind", ["pem", "der"])
def test_a_user_certificate_and_key_load_whatever_their_encoding(
    users: dict[str, tuple[Path, Path]], kind: str
) -> None:
    cert, key = load_user_identity(*users[kind])
    assert cert.subject.rfc4514_string() == f"O=plantgate tests,CN={kind}"
    assert key.key_size >= 2048
    assert describe_user_certificate(cert).startswith(f"O=plantgate tests,CN={kind}, SHA-1 ")


def test_a_key_of_another_certificate_is_refused(users: dict[str, tuple[Path, Path]]) -> None:
    cert, _ = users["pem"]
    _, other_key = users["der"]
    with pytest.raises(ConnectionLost, match=f"{other_key} is not the key of .*{cert}"):
        load_user_identity(cert, other_key)


def test_missing_and_unusable_files_are_named(
    users: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    cert, key = users["pem"]
    with pytest.raises(ConnectionLost, match=f"cannot load user_cert_file {tmp_path}/nope"):
        load_user_identity(tmp_path / "nope", key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConnectionLost, match=f"cannot load user_key_file {garbage}"):
        load_user_identity(cert, garbage)
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    with pytest.raises(ConnectionLost, match="need an RSA key"):
        load_user_identity(cert, ec_key)


def source(**identity: Any) -> OpcUaSource:
    return OpcUaSource.model_validate(
        {
            "name": "oven",
            "protocol": "opcua",
            "url": "opc.tcp://plc:4840",
            "security": {"policy": "Aes128Sha256RsaOaep", "mode": "Sign"},
            "tags": [{"name": "t", "node": "ns=2;i=1"}],
            **identity,
        }
    )


def endpoint(*tokens: ua.UserTokenType) -> ua.EndpointDescription:
    return ua.EndpointDescription(
        UserIdentityTokens=[ua.UserTokenPolicy(PolicyId=str(t), TokenType=t) for t in tokens]
    )


def test_an_identity_the_endpoint_does_not_list_is_refused_by_name() -> None:
    user_cert = source(user_cert_file="u.der", user_key_file="u.pem")
    anonymous = source()
    with pytest.raises(ConnectionLost) as info:
        check_identity_offered(
            endpoint(ua.UserTokenType.Anonymous, ua.UserTokenType.UserName), user_cert
        )
    assert str(info.value) == (
        "opc.tcp://plc:4840: its Aes128Sha256RsaOaep/Sign endpoint does not accept user "
        "certificate logins; it accepts: anonymous, username"
    )
    check_identity_offered(endpoint(ua.UserTokenType.Certificate), user_cert)
    check_identity_offered(endpoint(ua.UserTokenType.Anonymous), anonymous)
    with pytest.raises(ConnectionLost, match="does not accept anonymous logins"):
        check_identity_offered(endpoint(ua.UserTokenType.UserName), anonymous)
    # An endpoint that lists no token policies at all is left for the server to judge.
    check_identity_offered(endpoint(), anonymous)


def test_policy_uris_are_shown_with_their_yaml_names() -> None:
    assert (
        policy_name("http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep")
        == "Aes128Sha256RsaOaep"
    )
    assert policy_name("http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256") == (
        "Basic256Sha256"
    )
    assert policy_name("http://opcfoundation.org/UA/SecurityPolicy#None") == "None"
    unsecured = ua.EndpointDescription(
        SecurityPolicyUri="http://opcfoundation.org/UA/SecurityPolicy#None",
        SecurityMode=ua.MessageSecurityMode.None_,
    )
    assert endpoint_name(unsecured) == "None/None"
