"""Security for the OPC UA simulator: a self-signed certificate, password and certificate users."""

from __future__ import annotations

import hmac
import ipaddress
import socket
from typing import TYPE_CHECKING, Any

from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.opcua.variables import APPLICATION_URI

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from asyncua.server.internal_server import InternalServer


class PlantUserManager(UserManager):
    """Accept exactly the configured username/password pairs and user certificates."""

    def __init__(self, users: Mapping[str, str], certificates: Mapping[bytes, str]) -> None:
        self._users = dict(users)
        self._certificates = dict(certificates)  # DER -> user name

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        """Return a plain user for a known pair or certificate, None (access denied) otherwise."""
        if username is not None:
            expected = self._users.get(username)
            if expected is None or password is None:
                return None
            # Constant-time compare: cheap, and keeps the simulator from teaching bad habits.
            if not hmac.compare_digest(expected.encode(), password.encode()):
                return None
            return User(role=UserRole.User, name=username)
        # asyncua has checked the X509 token's signature by now. It passes the channel's client
        # certificate here for other tokens too; anonymous ones never get this far, because
        # a simulator with users offers no anonymous token.
        name = self._certificates.get(bytes(certificate)) if certificate else None
        return User(role=UserRole.User, name=name) if name is not None else None


def load_user_certificates(paths: Mapping[str, Path]) -> dict[bytes, str]:
    """User name per certificate (DER), from PEM or DER files."""
    found: dict[bytes, str] = {}
    for name, path in paths.items():
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
        found[cert.public_bytes(Encoding.DER)] = name
    return found


def make_certificate(cert_dir: Path, host: str) -> tuple[Path, Path]:
    """Create (or reuse) a self-signed server certificate and key in ``cert_dir``."""
    cert_path, key_path = cert_dir / "server_cert.der", cert_dir / "server_key.pem"
    # Reused across restarts so a client that pinned the certificate keeps connecting.
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    cert_dir.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    alt_names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(APPLICATION_URI),
        x509.DNSName(socket.gethostname()),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt_names.append(x509.DNSName(host))
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        "plantgate simulator",
        {"organizationName": "plantgate"},
        list(dict.fromkeys(alt_names)),
        extended=[ExtendedKeyUsageOID.SERVER_AUTH],
        days=365,
    )
    key_path.touch(mode=0o600)  # private key: owner-only before any byte lands in it
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    return cert_path, key_path
