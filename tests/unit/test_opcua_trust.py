"""Server certificate trust: pinned or CA-issued certificates pass, others name the file."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from connectors.opcua.security import application_uri_of, own_certificate
from connectors.opcua.trust import (
    UntrustedServer,
    check_server_certificate,
    first_certificate,
    thumbprint,
)
from gateway.errors import ConnectionLost

URL = "opc.tcp://plc:4840"
SERVER_URI = "urn:acme:plc"


def self_signed(name: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        name,
        {},
        [x509.UniformResourceIdentifier(SERVER_URI)],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    return cert, key


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def test_untrusted_certificate_is_saved_and_named_in_the_error(tmp_path: Path) -> None:
    cert, _ = self_signed("plc one")
    trusted, rejected = tmp_path / "trusted", tmp_path / "rejected"
    with pytest.raises(UntrustedServer) as info:
        check_server_certificate(der(cert), URL, trusted, rejected)
    saved = rejected / f"plc_one_{thumbprint(der(cert))}.der"
    assert saved.read_bytes() == der(cert)
    message = str(info.value)
    assert f"copy {saved} into {trusted}" in message
    assert URL in message
    assert "CN=plc one" in message
    assert isinstance(info.value, ConnectionLost)  # retried: trusting it later recovers live

    # Copying the saved file as the message says is all it takes.
    trusted.mkdir()
    shutil.copy(saved, trusted)
    check_server_certificate(der(cert), URL, trusted, rejected)


def test_pem_files_are_trusted_too(tmp_path: Path) -> None:
    cert, _ = self_signed("plc pem")
    (tmp_path / "plc.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp_path / "notes.txt").write_text("not a certificate")
    (tmp_path / "broken.der").write_bytes(b"\x30\x82garbage")
    check_server_certificate(der(cert), URL, tmp_path, tmp_path / "rejected")


def test_another_certificate_is_not_enough(tmp_path: Path) -> None:
    cert, _ = self_signed("plc")
    other, _ = self_signed("plc")  # same name, different key: an impostor
    (tmp_path / "trusted").mkdir()
    (tmp_path / "trusted" / "plc.der").write_bytes(der(other))
    with pytest.raises(UntrustedServer):
        check_server_certificate(der(cert), URL, tmp_path / "trusted", tmp_path / "rejected")


def test_a_certificate_issued_by_a_trusted_ca_is_trusted(tmp_path: Path) -> None:
    ca_key = cert_gen.generate_private_key()
    ca = cert_gen.generate_self_signed_app_certificate(ca_key, "plant CA", {}, [], extended=[])
    key = cert_gen.generate_private_key()
    csr = cert_gen.generate_app_certificate_signing_request(
        key,
        "plc",
        {},
        [x509.UniformResourceIdentifier(SERVER_URI)],
        [ExtendedKeyUsageOID.SERVER_AUTH],
    )
    issued = cert_gen.sign_certificate_request(csr, ca, ca_key)
    (tmp_path / "ca.der").write_bytes(der(ca))
    # Sent with its chain, as some servers do: only the leading certificate is checked.
    check_server_certificate(der(issued) + der(ca), URL, tmp_path, tmp_path / "rejected")
    assert first_certificate(der(issued) + der(ca)) == der(issued)


def test_garbage_from_the_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectionLost, match=re.escape(f"{URL}: the server sent an unreadable")):
        check_server_certificate(b"\x30\x82\x00\x02ab", URL, tmp_path, tmp_path)


def test_own_certificate_is_generated_once_with_a_private_key(tmp_path: Path) -> None:
    cert_path, key_path = own_certificate(tmp_path / "own", "oven", "urn:edge:plantgate:oven")
    assert key_path.stat().st_mode & 0o077 == 0
    first = cert_path.read_bytes()
    cert = x509.load_der_x509_certificate(first)
    assert application_uri_of(cert) == "urn:edge:plantgate:oven"
    again = own_certificate(tmp_path / "own", "oven", "urn:edge:plantgate:oven")
    assert again == (cert_path, key_path)
    assert cert_path.read_bytes() == first
