"""Is the server's certificate trusted? Pinned in the trusted directory, or issued by a CA there."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import ConnectionLost

CERT_SUFFIXES = (".der", ".cer", ".crt", ".pem")


class UntrustedServer(ConnectionLost):
    """The server's certificate is not in the trusted directory (retried: it may be added live)."""


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes; ValueError when it is neither."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER chain (servers may send theirs with its issuers)."""
    if len(der) < 4 or der[0] != 0x30 or der[1] != 0x82:
        return der  # not a long-form SEQUENCE: leave it to the parser to complain
    return der[: int.from_bytes(der[2:4], "big") + 4]


def thumbprint(der: bytes) -> str:
    """The SHA-1 thumbprint OPC UA tools show for a certificate."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


def trusted_certificates(directory: Path) -> list[x509.Certificate]:
    """Every readable certificate file in a directory (unreadable ones are skipped)."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in CERT_SUFFIXES or not path.is_file():
            continue
        try:
            found.append(load_certificate(path.read_bytes()))
        except (OSError, ValueError):
            continue
    return found


def is_trusted(cert: x509.Certificate, trusted: list[x509.Certificate]) -> bool:
    """True if the certificate itself is trusted, or was signed by a trusted issuer."""
    der = cert.public_bytes(Encoding.DER)
    for candidate in trusted:
        if candidate.public_bytes(Encoding.DER) == der:
            return True
        if candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def check_server_certificate(der: bytes, url: str, trusted_dir: Path, rejected_dir: Path) -> None:
    """Return if the certificate is trusted, else raise UntrustedServer naming the file to copy."""
    der = first_certificate(der)
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ConnectionLost(f"{url}: the server sent an unreadable certificate: {exc}") from exc
    if is_trusted(cert, trusted_certificates(trusted_dir)):
        return
    rejected = save_rejected(cert, der, rejected_dir)
    raise UntrustedServer(
        f"{url}: the server certificate ({cert.subject.rfc4514_string()}, SHA-1 {thumbprint(der)}) "
        f"is not trusted; if it is the right server, copy {rejected} into {trusted_dir}"
    )


def save_rejected(cert: x509.Certificate, der: bytes, rejected_dir: Path) -> Path:
    """Keep an untrusted certificate where the user can review and trust it."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    common = str(names[0].value) if names else "server"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", common).strip("_") or "server"
    path = rejected_dir / f"{stem}_{thumbprint(der)}.der"
    try:
        rejected_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(der)
    except OSError:
        pass  # the message still names where it would be; trusting is a manual step anyway
    return path
