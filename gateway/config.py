"""Load config.yaml into typed models: env interpolation, then validation listing every problem."""

from __future__ import annotations

import difflib
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from buffer.space import MAX_BYTES, MIN_BYTES
from connectors import PROTOCOLS, SourceConfig
from gateway.errors import ConfigError
from gateway.schema import Credentials, Duration, Name, Size, Strict

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
Loc = tuple[str | int, ...]
# libyaml's loader when PyYAML has it: a 10,000-tag map loads in a fraction of a second.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class BufferConfig(Strict):
    """Where and how much the store-and-forward buffer keeps."""

    path: Path = Path("./data/buffer.db")
    """The SQLite database; health.json and the seq marks are written beside it."""
    max_bytes: Size = 2**30
    """Everything the buffer puts on disk (database, WAL, shared memory, disk-full reserve),
    1MiB..1TiB; beyond it the oldest batches are dropped and counted."""
    max_age: Duration = 7 * 86400.0
    """Batches stored longer ago than this are dropped and counted (at least 1m)."""
    durability: Literal["normal", "full"] = "normal"
    """normal: survives a killed process; full: also survives power loss (slower commits)."""

    @field_validator("max_bytes")
    @classmethod
    def _max_bytes(cls, size: int) -> int:
        if not MIN_BYTES <= size <= MAX_BYTES:
            raise ValueError(
                f"{size} bytes is outside 1MiB..1TiB (the WAL and the disk-full reserve alone "
                "take 512KiB)"
            )
        return size

    @field_validator("max_age")
    @classmethod
    def _max_age(cls, seconds: float) -> float:
        if seconds < 60:
            raise ValueError("max_age below 1m would drop readings before an outage is noticed")
        return seconds


class GatewayConfig(Strict):
    """The gateway itself."""

    name: Name
    """This gateway's name: letters, digits, '_' and '-'; the MQTT client id by default."""
    writes: bool = False
    """Allow writes to PLCs at all; each tag must also say writable: true."""
    write_max_age: Duration = 30.0
    """A write command older than this on arrival expires."""
    buffer: BufferConfig = BufferConfig()
    """The store-and-forward buffer."""
    metrics_interval: Annotated[Duration, Field(ge=0.1, le=3600)] = 10.0
    """How often the metrics are published and health.json is stamped (0.1s..1h)."""
    watch_config: bool = False
    """Reload the tag map when its file changes (as SIGHUP and `plantgate reload` do)."""


class TlsConfig(Strict):
    """TLS towards the broker; verification stays on unless ``insecure: true``."""

    ca_file: Path | None = None
    """CA certificate(s) that issued the broker's certificate (default: the system's)."""
    cert_file: Path | None = None
    """Client certificate, for brokers that ask for one (with key_file)."""
    key_file: Path | None = None
    """The client certificate's private key (with cert_file)."""
    insecure: bool = False
    """true: do not verify the broker's certificate or host name (for tests only)."""


class ReconnectConfig(Strict):
    """Waits between attempts to reach the broker: doubling from ``min`` up to ``max``, jittered."""

    min: Duration = 0.25
    """First wait after a failed attempt."""
    max: Duration = 5.0
    """Longest wait between attempts."""

    @model_validator(mode="after")
    def _order(self) -> ReconnectConfig:
        if self.min > self.max:
            raise ValueError("reconnect.min is longer than reconnect.max")
        return self


class ReplayConfig(Strict):
    """How the backlog is sent after an outage."""

    order: Literal["live_first", "in_order"] = "live_first"
    """live_first: new readings at once, the backlog behind them; in_order: oldest first."""
    max_rate: int = Field(default=5000, gt=0)
    """Backlog readings per second, at most."""


class SparkplugConfig(Strict):
    """Sparkplug B identities."""

    group_id: Name | None = None
    """Sparkplug group id (required with format: sparkplug)."""
    edge_node_id: Name | None = None
    """Sparkplug edge node id (default: gateway.name)."""
    primary_host_id: str | None = None
    """Primary host application id: birth only while its STATE says online."""


@dataclass(frozen=True, slots=True)
class BrokerNode:
    """One broker (or one node of a cluster) to connect to."""

    url: str
    host: str
    port: int
    tls: bool

    @classmethod
    def of(cls, url: str) -> BrokerNode:
        """A node from its (validated) url."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(url, parts.hostname or "", parts.port or (8883 if tls else 1883), tls)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class MqttConfig(Credentials):
    """The one broker the gateway publishes to."""

    url: str | list[str] = "mqtt://127.0.0.1:1883"
    """The broker: mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (8883, TLS); or a list of
    a cluster's nodes, tried in order: when the node in use dies, the next one is taken."""
    prefer_first: bool = False
    """With a list: go back to the first node once it accepts connections again."""
    client_id: str | None = None
    """MQTT client id (default: the gateway name)."""
    tls: TlsConfig = TlsConfig()
    """Certificates for mqtts://."""
    format: Literal["json", "sparkplug"] = "json"
    """Payload format: json (per_tag or per_batch) or sparkplug (Sparkplug B 3.0)."""
    topic_prefix: str = "plantgate"
    """Every topic starts with it: {topic_prefix}/{source}/{tag}; no wildcards, no '/' at
    either end."""
    layout: Literal["per_tag", "per_batch"] = "per_tag"
    """per_tag: one message per reading on {topic_prefix}/{source}/{tag}; per_batch: one per
    scan on {topic_prefix}/{source}."""
    qos: Literal[0, 1] = 1
    """QoS of the readings; either way a batch leaves the buffer only once acknowledged."""
    retain: bool = True
    """Retain live per_tag values (replayed history is never retained)."""
    keepalive: Annotated[Duration, Field(ge=1, le=65535)] = 30.0  # MQTT's limit
    """MQTT keepalive (1s..65535s)."""
    connect_timeout: Duration = 10.0
    """Longest wait for each of TCP, TLS and the broker's CONNACK."""
    reconnect: ReconnectConfig = ReconnectConfig()
    """Waits between attempts to reach the broker."""
    max_inflight: int = Field(default=1000, ge=1, le=60000)  # paho's message ids end at 65,535
    """Messages sent and not yet acknowledged, at most."""
    protocol: Literal["3.1.1", 5] = "3.1.1"
    """MQTT 3.1.1 or 5. With 5: reason codes in errors, refused publishes counted, per_tag
    topic aliases (as many as the broker allows), and session_expiry."""
    session_expiry: Duration | None = None
    """MQTT 5: how long the broker keeps the gateway's session after a disconnect (None: it
    ends with the connection). Readings never depend on it: they are re-sent from the buffer."""
    replay: ReplayConfig = ReplayConfig()
    """How the backlog is sent after an outage."""
    sparkplug: SparkplugConfig = SparkplugConfig()
    """Sparkplug B identities (format sparkplug)."""

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | list[str]) -> str | list[str]:
        urls = [url] if isinstance(url, str) else url
        if not urls:
            raise ValueError("give at least one broker url")
        for one in urls:
            parts = urlsplit(one)
            if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
                raise ValueError(f"{one!r}: use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
            try:
                parts.port  # noqa: B018 - raises on a bad port
            except ValueError as exc:
                raise ValueError(f"{one!r}: {exc}") from exc
        if len(set(urls)) != len(urls):
            raise ValueError("a broker url is listed twice")
        return url

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if (
            not prefix
            or any(c in prefix for c in "#+\x00")
            or prefix.startswith("/")
            or prefix.endswith("/")
        ):
            raise ValueError(
                "topic_prefix must be non-empty, without wildcards or leading/trailing '/'"
            )
        return prefix

    @model_validator(mode="after")
    def _sparkplug(self) -> MqttConfig:
        if self.format == "sparkplug" and self.sparkplug.group_id is None:
            raise ValueError("format sparkplug needs sparkplug.group_id (e.g. plant1)")
        return self

    @property
    def nodes(self) -> list[BrokerNode]:
        """The broker nodes, in the order they are tried."""
        return [BrokerNode.of(u) for u in ([self.url] if isinstance(self.url, str) else self.url)]

    @model_validator(mode="after")
    def _session(self) -> MqttConfig:
        if self.session_expiry is not None:
            if self.protocol != 5:
                raise ValueError(
                    "session_expiry needs protocol: 5 (an MQTT 3.1.1 session ends with its "
                    "connection)"
                )
            if self.format == "sparkplug":
                # Sparkplug 3.0: an edge node connects with Clean Start and Session Expiry 0.
                raise ValueError("session_expiry: Sparkplug requires sessions that end (remove it)")
        return self

    @property
    def mqtt5(self) -> bool:
        """True when speaking MQTT 5."""
        return self.protocol == 5

    @property
    def host(self) -> str:
        """The first broker node's host name."""
        return self.nodes[0].host

    @property
    def port(self) -> int:
        """The first broker node's port (1883, or 8883 for mqtts, unless given)."""
        return self.nodes[0].port

    @property
    def use_tls(self) -> bool:
        """True when the first broker node is mqtts://."""
        return self.nodes[0].tls


class Config(Strict):
    """The whole tag map."""

    gateway: GatewayConfig
    """The gateway itself: its name, writes switch, buffer and metrics."""
    mqtt: MqttConfig = MqttConfig()
    """The one broker the gateway publishes to."""
    sources: list[SourceConfig] = Field(min_length=1)
    """One entry per PLC connection; protocol: modbus, opcua or logix picks its keys."""


def duplicate_names(config: Config) -> list[tuple[Loc, str]]:
    """Source names must be unique, and tag names within a source (they become topics)."""
    found: list[tuple[Loc, str]] = []
    sources: set[str] = set()
    for i, source in enumerate(config.sources):
        if source.name in sources:
            found.append((("sources", i, "name"), f"duplicate source name {source.name!r}"))
        sources.add(source.name)
        tags: set[str] = set()
        for j, tag in enumerate(source.tags):
            if tag.name in tags:
                found.append(
                    (("sources", i, "tags", j, "name"), f"duplicate tag name {tag.name!r}")
                )
            tags.add(tag.name)
    return found


def interpolate(node: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string from the environment."""
    if isinstance(node, dict):
        return {k: interpolate(v, (*loc, str(k)), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, (*loc, i), problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = os.environ.get(name)
        if value is None:
            if default is not None:
                return default
            problems.append((loc, f"environment variable {name} is not set"))
            return ""
        return value

    return _VAR.sub(sub, node)


def _load(text: str) -> tuple[Any, dict[Loc, int], list[tuple[Loc, str]]]:
    """Parse YAML once: the data, each key path's 1-based line number, and duplicate keys
    (YAML would silently keep the last one; a tag map with two ``scan:`` keys is a mistake)."""
    lines: dict[Loc, int] = {}
    duplicates: list[tuple[Loc, str]] = []

    def walk(node: yaml.Node, path: Loc) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                name, line = str(key.value), key.start_mark.line + 1
                sub = (*path, name)
                if name in seen and name != "<<":
                    duplicates.append((sub, f"duplicate key (lines {seen[name]} and {line})"))
                seen.setdefault(name, line)
                lines[sub] = line
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    loader = SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, lines, duplicates
        walk(root, ())
        return loader.construct_document(root), lines, duplicates
    finally:
        loader.dispose()


def literal_secrets(node: Any, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """``password:`` keys written out in the file instead of taken from the environment."""
    found: list[tuple[Loc, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            sub = (*loc, str(key))
            if key == "password" and isinstance(value, str) and value and "${" not in value:
                found.append((sub, "a literal secret; use ${VAR} or password_file"))
            else:
                found += literal_secrets(value, sub)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += literal_secrets(item, (*loc, i))
    return found


def _files(model: Any, loc: Loc = ()) -> list[tuple[Loc, Path]]:
    """Every file a config names (fields called ``*_file``), with where it is named."""
    found: list[tuple[Loc, Path]] = []
    if isinstance(model, list | tuple):
        for i, item in enumerate(model):
            found += _files(item, (*loc, i))
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            value = getattr(model, name)
            if name.endswith("_file") and isinstance(value, Path):
                found.append(((*loc, name), value))
            elif isinstance(value, BaseModel | list):
                found += _files(value, (*loc, name))
    return found


def check_files(config: Config) -> list[tuple[Loc, str]]:
    """What ``run`` would die on later: named files that are missing or unreadable, and TLS
    certificates and keys that do not load (or do not belong together)."""
    problems: list[tuple[Loc, str]] = []
    for loc, path in _files(config):
        if not path.is_file():
            problems.append((loc, f"{path}: no such file"))
        elif not os.access(path, os.R_OK):
            problems.append((loc, f"{path}: not readable by this user"))
    if problems:
        return problems
    tls = config.mqtt.tls
    context = ssl.create_default_context()
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(tls.ca_file))
        except (ssl.SSLError, ValueError) as exc:
            problems.append(
                (("mqtt", "tls", "ca_file"), f"{tls.ca_file}: not a CA certificate ({exc})")
            )
    if (tls.cert_file is None) != (tls.key_file is None):
        which = "key_file" if tls.key_file is None else "cert_file"
        problems.append((("mqtt", "tls", which), "set both cert_file and key_file, or neither"))
    elif tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except ssl.SSLError as exc:
            problems.append(
                (
                    ("mqtt", "tls", "cert_file"),
                    f"{tls.cert_file} with {tls.key_file}: not a certificate and its key ({exc})",
                )
            )
    return problems


def _render_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _source_loc(err: ErrorDetails) -> Loc:
    """Where an error is, as the user wrote it: the union's protocol tag is not a YAML key."""
    loc = tuple(err["loc"])
    if len(loc) >= 3 and loc[0] == "sources" and isinstance(loc[1], int) and loc[2] in PROTOCOLS:
        loc = loc[:2] + loc[3:]
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "protocol")
    return loc


def _message(err: ErrorDetails, loc: Loc, model_keys: list[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        hint = difflib.get_close_matches(str(loc[-1]), model_keys, n=1)
        return "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if kind == "missing" or kind == "union_tag_not_found":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        dots = " and '.'" if "tags" in loc else ""
        return f"{err.get('input')!r} may only use letters, digits, '_', '-'{dots}"
    if (
        kind in ("literal_error", "union_tag_invalid")
        and loc[:1] == ("sources",)  # mqtt.protocol is MQTT's version, not a source's
        and loc[-1] == "protocol"
    ):
        given = err.get("ctx", {}).get("tag", err.get("input"))
        return f"unknown protocol {given!r}; this version supports: {', '.join(PROTOCOLS)}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models an annotation can hold (through list, Optional, unions, Annotated)."""
    if hasattr(annotation, "model_fields"):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _pick(candidates: list[Any], node: Any) -> list[Any]:
    """Of a union's models, the one the YAML's ``protocol:`` names."""
    if len(candidates) > 1 and isinstance(node, dict):
        protocol = node.get("protocol")
        return [
            m for m in candidates if protocol in get_args(m.model_fields["protocol"].annotation)
        ]
    return candidates


def _siblings(loc: Loc, data: Any) -> list[str]:
    """Known keys at the place of an unknown one, for did-you-mean hints."""
    candidates: list[Any] = [Config]
    node = data
    for part in loc[:-1]:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        candidates = _pick(candidates, node)
        if not candidates or part not in candidates[0].model_fields:
            return []
        candidates = _models_in(candidates[0].model_fields[part].annotation)
        node = node.get(part) if isinstance(node, dict) else None
    candidates = _pick(candidates, node)
    return list(candidates[0].model_fields) if candidates else []


def parse_config(
    text: str,
    file: str | None = None,
    *,
    lenient: bool = False,
    files: bool = False,
    warnings: list[str] | None = None,
) -> Config:
    """Validate YAML text; raise ConfigError listing every problem with its line.

    ``files``: also check the files the config names (they exist, are readable, and TLS
    certificates and keys load). ``lenient``: for commands that only read the gateway's own
    files (health, buffer stats): unset environment variables are not problems.
    ``warnings`` collects what is allowed but unwise (a literal secret), with its line.
    """
    where = file or "<config>"
    try:
        raw, lines, found = _load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError([f"not valid YAML{at}: {getattr(exc, 'problem', exc)}"], file) from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            ["the file must be a YAML mapping with gateway:, mqtt: and sources:"], file
        )

    def render(loc: Loc, message: str) -> str:
        line = lines.get(loc) or lines.get(loc[:-1])
        at = f" ({where}:{line})" if line else ""
        return f"{_render_path(loc) or '(top level)'}: {message}{at}"

    if warnings is not None:
        warnings += [render(loc, message) for loc, message in literal_secrets(raw)]
    unset: list[tuple[Loc, str]] = []
    data = interpolate(raw, (), unset)
    if not lenient:
        found += unset
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A source whose protocol is unknown gets that one error, not a list of keys it lacks.
        locs = [_source_loc(e) for e in errors]
        unknown = {loc[:-1] for loc in locs if loc[-1:] == ("protocol",)}
        for err, loc in zip(errors, locs, strict=True):
            if loc[:2] in unknown and loc[-1:] != ("protocol",):
                continue
            found.append((loc, _message(err, loc, _siblings(loc, data))))
    else:
        found += duplicate_names(config)
        if not found and files:
            found += check_files(config)
    if found:
        raise ConfigError([render(loc, message) for loc, message in found], file)
    return config


def load_config(
    path: str | Path, *, lenient: bool = False, warnings: list[str] | None = None
) -> Config:
    """Read and validate a config file and the files it names (see :func:`parse_config`)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror or exc}"], str(p)) from exc
    return parse_config(text, str(p), lenient=lenient, files=not lenient, warnings=warnings)
