"""Imported tags as ready-to-paste YAML, checked by the same validation as a real config."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from dataclasses import dataclass

import yaml

from gateway.config import parse_config
from gateway.importers.model import ImportedTag, ImportResult, Protocol
from gateway.schema import SourceBase, format_duration

DEFAULT_SCAN = SourceBase.model_fields["scan"].default

# Wrapped around the output to validate it: the keys a config needs besides its sources.
_CHECK_HEAD = (
    "gateway: {name: import-check}\n"
    "mqtt: {url: 'mqtt://127.0.0.1:1883', topic_prefix: import-check}\n"
)
_PLACEHOLDER = {  # a source to hold a bare tags: list while it is checked
    "modbus": "protocol: modbus\nhost: 127.0.0.1\n",
    "logix": "protocol: logix\nhost: 127.0.0.1\n",
    "opcua": "protocol: opcua\nurl: opc.tcp://127.0.0.1:4840\n",
}


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What a whole ``sources:`` entry needs beyond its tags."""

    name: str
    protocol: Protocol
    host: str
    port: int | None = None
    byte_order: str | None = None  # Modbus only


def render(result: ImportResult, origin: str, source: SourceSpec | None = None) -> str:
    """A ``tags:`` list, or with ``source`` a whole ``sources:`` entry, for ``result``."""
    head = f"# plantgate import: {len(result.tags)} tag(s) from {origin}\n"
    if source is None:
        return head + "tags:\n" + _tag_lines(result.tags, result.protocol, "  ", None)
    lines = [f"name: {_scalar(source.name)}", f"protocol: {source.protocol}"]
    if source.protocol == "opcua":
        lines.append(f"url: {_scalar(f'opc.tcp://{source.host}:{source.port or 4840}')}")
    else:
        lines.append(f"host: {_scalar(source.host)}")
        if source.port is not None:
            lines.append(f"port: {source.port}")
    byte_order = source.byte_order or result.byte_order
    if source.protocol == "modbus" and byte_order:
        lines.append(f"byte_order: {byte_order}")
    scan = common_scan(result.tags)
    if scan is not None:
        lines.append(f"scan: {format_duration(scan)}")
    lines.append("tags:")
    entry = "  - " + "\n    ".join(lines) + "\n"
    return head + "sources:\n" + entry + _tag_lines(result.tags, result.protocol, "      ", scan)


def common_scan(tags: list[ImportedTag]) -> float | None:
    """The scan most tags share: it goes on the source, and the tags keep only exceptions.
    Only when that changes nothing for tags without a scan of their own (they take the
    source's)."""
    scans = Counter(t.scan for t in tags if t.scan is not None)
    if not scans:
        return None
    scan, count = scans.most_common(1)[0]
    unscanned = any(t.scan is None for t in tags)
    if count * 2 <= len(tags) or (unscanned and scan != DEFAULT_SCAN):
        return None
    return scan


def validate(text: str, protocol: Protocol, whole_source: bool) -> None:
    """Check rendered YAML as plantgate would load it; ConfigError lists every problem."""
    if whole_source:
        parse_config(_CHECK_HEAD + text, "<imported>")
        return
    holder = "sources:\n  - name: imported\n" + textwrap.indent(_PLACEHOLDER[protocol], "    ")
    parse_config(_CHECK_HEAD + holder + textwrap.indent(text, "    "), "<imported>")


def _tag_lines(
    tags: list[ImportedTag], protocol: Protocol, indent: str, source_scan: float | None
) -> str:
    lines = []
    for tag in tags:
        line = f"{indent}- {_flow(tag.fields(protocol, scan=tag.scan != source_scan))}"
        if tag.description:
            line += "  # " + " ".join(tag.description.split())
        lines.append(line)
    return "\n".join(lines) + "\n"


# libyaml's emitter when PyYAML has it (as gateway.config takes its loader): a 16,000-tag
# import renders in ~1.3 s instead of ~4 s.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _flow(fields: dict[str, object]) -> str:
    """One tag as a one-line YAML mapping."""
    text = yaml.dump(
        fields,
        Dumper=_DUMPER,
        default_flow_style=True,
        sort_keys=False,
        width=2**31 - 1,
        allow_unicode=True,
    )
    return text.strip()


def _scalar(value: str) -> str:
    return yaml.safe_dump(value, default_style=None, width=math.inf).removesuffix("\n...\n").strip()
