"""The YAML model of an OPC UA source, its security and its tags."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, PlainSerializer, field_validator, model_validator

from connectors.opcua.nodeid import NodeRef, parse_node_id
from gateway.schema import Credentials, Duration, SourceBase, Strict, TagBase

NodeId = Annotated[
    NodeRef,
    BeforeValidator(
        lambda v: v if isinstance(v, NodeRef) else parse_node_id(v),
        json_schema_input_type=str,  # the JSON Schema's view; parse_node_id decides
    ),
    PlainSerializer(str),
]

Policy = Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep"]
DEFAULT_PORT = 4840
# Longest default publishing interval: a sampled change leaves the server within this, whatever
# the scan. Costs nothing when values are still (no change, no publish response).
MAX_DEFAULT_PUBLISHING = 0.1


class OpcUaSecurity(Strict):
    """Message security of the session and how the server's certificate is trusted.

    Files default to an OPC UA style PKI under ``pki_dir``: ``own/`` (a client certificate
    generated once when cert_file/key_file are not given), ``trusted/`` (server certificates
    to trust, unless ``trust_dir`` says otherwise) and ``rejected/`` (where an untrusted server
    certificate is saved so it can be reviewed and copied into the trusted directory).
    """

    policy: Policy = "None"
    """Security policy: None, Basic256Sha256 or Aes128Sha256RsaOaep."""
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    """Message security mode (ignored with policy None)."""
    cert_file: Path | None = None
    """Client certificate (DER or PEM; with key_file); default: one generated under pki_dir/own."""
    key_file: Path | None = None
    """The client certificate's private key (with cert_file)."""
    trust_dir: Path | None = None
    """Server certificates to trust (default: pki_dir/trusted)."""
    pki_dir: Path = Path("./data/pki")
    """The PKI directory: own/, trusted/ and rejected/."""
    insecure: bool = False
    """true: accept any server certificate (verification off, logged at every connect)."""
    application_uri: str | None = None
    """The client's application URI (default: the URI in the client certificate)."""

    @model_validator(mode="after")
    def _check(self) -> OpcUaSecurity:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file, or neither (one is generated)")
        if self.policy == "None" and self.cert_file is not None:
            raise ValueError("cert_file/key_file need a security policy, e.g. Basic256Sha256")
        return self

    @property
    def secure(self) -> bool:
        """True when messages are signed (and maybe encrypted)."""
        return self.policy != "None"

    @property
    def trusted_dir(self) -> Path:
        """Where trusted server certificates are."""
        return self.trust_dir if self.trust_dir is not None else self.pki_dir / "trusted"

    @property
    def rejected_dir(self) -> Path:
        """Where an untrusted server certificate is saved for review."""
        return self.pki_dir / "rejected"


class OpcUaTag(TagBase):
    """One variable on an OPC UA server."""

    node: NodeId
    """The node id: ns=2;s=Tag, i=2258, g=GUID, b=base64, or (preferred) nsu=URI;s=Tag."""
    # Default: absolute when ``deadband`` is set, the same rule the runtime applies to polled
    # values.
    deadband_type: Literal["absolute", "percent"] | None = None
    """Server-side deadband while subscribed (a DataChangeFilter); percent is of the EURange."""

    @model_validator(mode="after")
    def _check(self) -> OpcUaTag:
        if self.deadband_type == "percent" and not 0 < self.deadband <= 100:
            raise ValueError(
                "deadband_type percent needs deadband between 0 and 100 (% of EURange)"
            )
        return self


class OpcUaSource(SourceBase, Credentials):
    """One OPC UA server session.

    The user identity is anonymous, ``username`` with a password, or a user certificate
    (``user_cert_file`` and ``user_key_file``: an X509 identity token, signed with that key).
    """

    protocol: Literal["opcua"]
    """OPC UA (binary, opc.tcp)."""
    url: str
    """The server: opc.tcp://HOST[:PORT] (4840), without credentials."""
    security: OpcUaSecurity = OpcUaSecurity()
    """Message security and how the server's certificate is trusted."""
    user_cert_file: Path | None = None
    """Log in with a user certificate (X509, DER or PEM; with user_key_file)."""
    user_key_file: Path | None = None
    """The user certificate's private key (PEM or DER, not encrypted)."""
    subscribe: bool = True
    """true: monitored items; false: poll with bulk Read requests every scan."""
    sampling_interval: Duration | None = None
    """How often the server samples each monitored item (default: each tag's scan)."""
    # Default: the fastest sampling interval, at most MAX_DEFAULT_PUBLISHING.
    publishing_interval: Duration | None = None
    """How often the server may send changes (default: the fastest sampling, at most 100ms)."""
    queue_size: int = Field(default=1, ge=1, le=10_000)
    """Samples the server keeps per monitored item between two publishes."""
    max_nodes_per_read: int = Field(default=500, ge=1, le=100_000)
    """Nodes per Read request when polling."""
    watchdog: Duration = 5.0
    """How often a subscribed session proves it is alive."""
    timeout: Duration = 5.0
    """Longest wait for one request's answer."""
    session_timeout: Duration = 60.0
    """Requested session lifetime without traffic."""
    tags: list[OpcUaTag] = Field(min_length=1)
    """The variables to read from this server."""

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "opc.tcp" or not parts.hostname:
            raise ValueError(f"{url!r}: use opc.tcp://HOST[:PORT]")
        if parts.username or parts.password:
            raise ValueError("no credentials in the url: use username and password (or ${VAR})")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"{url!r}: {exc}") from exc
        return url

    @model_validator(mode="after")
    def _identity(self) -> OpcUaSource:
        if (self.user_cert_file is None) != (self.user_key_file is None):
            raise ValueError("set both user_cert_file and user_key_file, or neither")
        if self.user_cert_file is None:
            return self
        if self.username:
            raise ValueError("user_cert_file and username are two user identities: set one of them")
        if not self.security.secure:
            # asyncua signs the user token with the channel's policy over the server's
            # certificate, which a session without security does not have.
            raise ValueError(
                "user_cert_file needs a secured session: set security.policy "
                "(Basic256Sha256 or Aes128Sha256RsaOaep)"
            )
        return self

    @property
    def identity(self) -> str:
        """Who the session logs in as, for messages: anonymous, a user name or a certificate."""
        if self.user_cert_file is not None:
            return f"user certificate {self.user_cert_file}"
        if self.username:
            return f"user {self.username!r}"
        return "anonymous login"

    @property
    def host(self) -> str:
        """Server host name."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """Server port (4840 unless given)."""
        return urlsplit(self.url).port or DEFAULT_PORT

    def sampling_for(self, tag: TagBase) -> float:
        """Seconds between the server's samples of a tag in subscription mode."""
        return self.sampling_interval or tag.scan or self.scan

    def publishing(self, tags: Sequence[OpcUaTag] | None = None) -> float:
        """Seconds between the server's publish responses in subscription mode."""
        if self.publishing_interval is not None:
            return self.publishing_interval
        fastest = min(self.sampling_for(t) for t in (tags or self.tags))
        return min(fastest, MAX_DEFAULT_PUBLISHING)
