"""Message security and identity of an OPC UA session: certificates, trust, user tokens."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import cert_gen
from asyncua.crypto.security_policies import (
    SecurityPolicy,
    SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicyBasic256Sha256,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID

from connectors.opcua.config import OpcUaSecurity, OpcUaSource
from connectors.opcua.trust import (
    check_server_certificate,
    first_certificate,
    load_certificate,
    thumbprint,
)
from gateway.errors import ConnectionLost

log = logging.getLogger(__name__)

POLICIES: dict[str, type[SecurityPolicy]] = {
    "Basic256Sha256": SecurityPolicyBasic256Sha256,
    "Aes128Sha256RsaOaep": SecurityPolicyAes128Sha256RsaOaep,
}
MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}


def policy_name(uri: str) -> str:
    """The YAML name of a security policy URI (its URI fragment when the YAML has none)."""
    for name, policy in POLICIES.items():
        if uri == policy.URI:
            return name
    return uri.rsplit("#", 1)[-1]


def endpoint_name(endpoint: ua.EndpointDescription) -> str:
    """``Policy/Mode`` as the YAML spells them, e.g. ``Basic256Sha256/Sign`` or ``None/None``."""
    mode = endpoint.SecurityMode.name.rstrip("_")  # asyncua spells the None mode None_
    return f"{policy_name(endpoint.SecurityPolicyUri)}/{mode}"


TOKEN_NAMES = {
    ua.UserTokenType.Anonymous: "anonymous",
    ua.UserTokenType.UserName: "username",
    ua.UserTokenType.Certificate: "user certificate",
    ua.UserTokenType.IssuedToken: "issued token",
}


def default_application_uri(source: str) -> str:
    """The client's ApplicationURI when neither the config nor a certificate names one."""
    return f"urn:{socket.gethostname()}:plantgate:{source}"


def application_uri_of(cert: x509.Certificate) -> str | None:
    """The URI in a certificate's subjectAltName: servers check it against the ApplicationURI."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def own_certificate(directory: Path, source: str, application_uri: str) -> tuple[Path, Path]:
    """Create once (reuse after) a self-signed client certificate and key for one source."""
    cert_path, key_path = directory / f"{source}_cert.der", directory / f"{source}_key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    host = socket.gethostname()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        f"plantgate {source}@{host}",
        {"organizationName": "plantgate"},
        [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
        days=5 * 365,
    )
    # The key is owner-only from its first byte on.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(cert_gen.dump_private_key_as_pem(key))
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    log.info("%s: generated client certificate %s", source, cert_path)
    return cert_path, key_path


def load_user_identity(
    cert_file: Path, key_file: Path
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A user certificate and its RSA key (PEM or DER each); ConnectionLost says what is wrong."""
    try:
        cert = load_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConnectionLost(f"cannot load user_cert_file {cert_file}: {exc}") from exc
    try:
        data = key_file.read_bytes()
        pem = data.lstrip().startswith(b"-----BEGIN")
        key = load_pem_private_key(data, None) if pem else load_der_private_key(data, None)
    except (OSError, ValueError, TypeError) as exc:
        # TypeError: the key is encrypted, and there is no key password to give.
        raise ConnectionLost(f"cannot load user_key_file {key_file}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConnectionLost(f"user_key_file {key_file}: OPC UA user certificates need an RSA key")
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ConnectionLost(
            f"user_key_file {key_file} is not the key of user_cert_file {cert_file}"
        )
    return cert, key


def describe_user_certificate(cert: x509.Certificate) -> str:
    """Subject and thumbprint: what a server administrator needs to find the certificate."""
    der = cert.public_bytes(Encoding.DER)
    return f"{cert.subject.rfc4514_string()}, SHA-1 {thumbprint(der)}"


def identity_token(source: OpcUaSource) -> ua.UserTokenType:
    """The kind of user identity token the source logs in with."""
    if source.user_cert_file is not None:
        return ua.UserTokenType.Certificate
    if source.username:
        return ua.UserTokenType.UserName
    return ua.UserTokenType.Anonymous


def check_identity_offered(endpoint: ua.EndpointDescription, source: OpcUaSource) -> None:
    """Refuse early, by name, an identity the chosen endpoint does not accept."""
    offered = [t.TokenType for t in endpoint.UserIdentityTokens or []]
    wanted = identity_token(source)
    if offered and wanted not in offered:
        sec = source.security
        accepted = ", ".join(dict.fromkeys(TOKEN_NAMES.get(t, str(t)) for t in offered))
        raise ConnectionLost(
            f"{source.url}: its {sec.policy}/{sec.mode} endpoint does not accept "
            f"{TOKEN_NAMES[wanted]} logins; it accepts: {accepted}"
        )


async def apply_security(client: Client, source: OpcUaSource) -> None:
    """Set identity and message security on a client before it connects.

    Raises ConnectionLost (UntrustedServer for an untrusted server certificate) with what to fix;
    asyncua and socket errors from fetching the server's endpoints are left to the caller.
    """
    secret = await asyncio.to_thread(source.secret)
    if source.username:
        client.set_user(source.username)
        if secret is not None:
            client.set_password(secret)
    if source.user_cert_file is not None and source.user_key_file is not None:
        # Set directly rather than through load_client_certificate/load_private_key: those
        # tell PEM from DER by the file name's extension only.
        client.user_certificate, client.user_private_key = await asyncio.to_thread(
            load_user_identity, source.user_cert_file, source.user_key_file
        )
    sec = source.security
    client.application_uri = await client_application_uri(source.name, sec)
    if not sec.secure:
        return
    cert_path, key_path = await _client_certificate(source.name, sec)
    endpoints = await client.connect_and_get_server_endpoints()
    policy, mode = POLICIES[sec.policy], MODES[sec.mode]
    chosen = next(
        (e for e in endpoints if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode), None
    )
    if chosen is None:
        offered = sorted({endpoint_name(e) for e in endpoints})
        raise ConnectionLost(
            f"{source.url} offers no {sec.policy}/{sec.mode} endpoint; it offers: "
            + ", ".join(offered)
        )
    check_identity_offered(chosen, source)
    server_der = first_certificate(chosen.ServerCertificate or b"")
    if sec.insecure:
        log.warning(
            "%s: security.insecure is set: the server certificate is not verified", source.name
        )
    else:
        await asyncio.to_thread(
            check_server_certificate, server_der, source.url, sec.trusted_dir, sec.rejected_dir
        )
    try:
        await client.set_security(
            policy,
            certificate=str(cert_path),
            private_key=str(key_path),
            server_certificate=server_der,
            mode=mode,
        )
    except (OSError, ValueError, TypeError) as exc:
        raise ConnectionLost(
            f"cannot load client certificate {cert_path} or key {key_path}: {exc}"
        ) from exc


async def _client_certificate(source: str, sec: OpcUaSecurity) -> tuple[Path, Path]:
    """The configured certificate, or one generated under pki_dir; sets nothing on the client."""
    if sec.cert_file is not None and sec.key_file is not None:
        return sec.cert_file, sec.key_file
    uri = sec.application_uri or default_application_uri(source)
    return await asyncio.to_thread(own_certificate, sec.pki_dir / "own", source, uri)


async def client_application_uri(source: str, sec: OpcUaSecurity) -> str:
    """The ApplicationURI to present: configured, else the one in the client certificate."""
    if sec.application_uri:
        return sec.application_uri
    if sec.secure:
        cert_path, _ = await _client_certificate(source, sec)
        try:
            data = await asyncio.to_thread(cert_path.read_bytes)
            uri = application_uri_of(load_certificate(data))
        except (OSError, ValueError) as exc:
            raise ConnectionLost(f"cannot read client certificate {cert_path}: {exc}") from exc
        if uri:
            return uri
    return default_application_uri(source)
