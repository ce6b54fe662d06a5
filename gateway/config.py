"""Load config.yaml into typed models: env interpolation, then validation listing every problem."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

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
    max_bytes: Size = 2**30
    max_age: Duration = 7 * 86400.0
    durability: Literal["normal", "full"] = "normal"


class GatewayConfig(Strict):
    """The gateway itself."""

    name: Name
    writes: bool = False
    write_max_age: Duration = 30.0  # a write command older than this on arrival expires
    buffer: BufferConfig = BufferConfig()
    metrics_interval: Duration = 10.0


class TlsConfig(Strict):
    """TLS towards the broker; verification stays on unless ``insecure: true``."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False


class ReplayConfig(Strict):
    """How the backlog is sent after an outage."""

    order: Literal["live_first", "in_order"] = "live_first"
    max_rate: int = Field(default=5000, gt=0)  # readings/s


class SparkplugConfig(Strict):
    """Sparkplug B identities."""

    group_id: Name | None = None
    edge_node_id: Name | None = None
    primary_host_id: str | None = None


class MqttConfig(Credentials):
    """The one broker the gateway publishes to."""

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str | None = None  # default: the gateway name
    tls: TlsConfig = TlsConfig()
    format: Literal["json", "sparkplug"] = "json"
    topic_prefix: str = "plantgate"
    layout: Literal["per_tag", "per_batch"] = "per_tag"
    qos: Literal[0, 1] = 1
    retain: bool = True
    keepalive: Duration = 30.0
    connect_timeout: Duration = 10.0  # TCP, TLS and CONNACK, each
    max_inflight: int = Field(default=1000, ge=1, le=60000)  # paho's message ids end at 65,535
    replay: ReplayConfig = ReplayConfig()
    sparkplug: SparkplugConfig = SparkplugConfig()

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{url!r}: use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"{url!r}: {exc}") from exc
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

    @field_validator("format")
    @classmethod
    def _format(cls, fmt: str) -> str:
        if fmt == "sparkplug":
            raise ValueError("format 'sparkplug' is not available in this version yet; use json")
        return fmt

    @property
    def host(self) -> str:
        """Broker host name."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """Broker port (1883, or 8883 for mqtts, unless given)."""
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def use_tls(self) -> bool:
        """True for mqtts://."""
        return urlsplit(self.url).scheme == "mqtts"


class Config(Strict):
    """The whole tag map."""

    gateway: GatewayConfig
    mqtt: MqttConfig = MqttConfig()
    sources: list[SourceConfig] = Field(min_length=1)


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


def _load(text: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML once: the data, and each key path's 1-based line number."""
    lines: dict[Loc, int] = {}

    def walk(node: yaml.Node, path: Loc) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    loader = SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, lines
        walk(root, ())
        return loader.construct_document(root), lines
    finally:
        loader.dispose()


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
    if kind in ("literal_error", "union_tag_invalid") and loc and loc[-1] == "protocol":
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


def parse_config(text: str, file: str | None = None) -> Config:
    """Validate YAML text; raise ConfigError listing every problem with its line."""
    where = file or "<config>"
    try:
        raw, lines = _load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError([f"not valid YAML{at}: {getattr(exc, 'problem', exc)}"], file) from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            ["the file must be a YAML mapping with gateway:, mqtt: and sources:"], file
        )
    found: list[tuple[Loc, str]] = []
    data = interpolate(raw, (), found)
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
    if found:
        problems = []
        for loc, message in found:
            line = lines.get(loc) or lines.get(loc[:-1])
            at = f" ({where}:{line})" if line else ""
            problems.append(f"{_render_path(loc) or '(top level)'}: {message}{at}")
        raise ConfigError(problems, file)
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror or exc}"], str(p)) from exc
    return parse_config(text, str(p))
