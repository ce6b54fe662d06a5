"""Browse a Logix controller: tags with types, dimensions and UDT members, or a YAML source."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from connectors.logix.config import DEFAULT_PORT
from connectors.logix.driver import Driver
from connectors.logix.resolve import DataType, dimensions, type_name
from gateway.errors import ConnectionLost

MAX_DEPTH = 8  # UDTs nest; a loop in a broken template must not recurse forever
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def browse(host: str, port: int, slot: int | None, as_yaml: bool) -> str:
    """Connect, upload the tag list and describe it (as text, or as a YAML source entry)."""
    path = f"{host}:{port}" if slot is None else f"{host}:{port}/{slot}"
    plc = Driver(path, init_tags=False)
    try:
        if not plc.open():  # type: ignore[no-untyped-call]
            raise ConnectionLost(f"{path}: the controller refused the session")
        plc.upload_tag_list(path, ())
        tags: dict[str, dict[str, Any]] = dict(plc.tags)
        info: dict[str, Any] = dict(plc.info)
    except ConnectionLost:
        raise
    except Exception as exc:  # pycomm3 raises assorted errors; the CLI reports one message
        raise ConnectionLost(f"cannot browse {path}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            plc.close()  # type: ignore[no-untyped-call]
    if as_yaml:
        return source_yaml(tags, info, host, port, slot)
    return describe(tags, info, path)


def describe(tags: Mapping[str, Mapping[str, Any]], info: Mapping[str, Any], path: str) -> str:
    """Controller tags, then each program's, one per line, with UDT members indented below."""
    name = info.get("name") or "?"
    product = info.get("product_name") or "Logix controller"
    rev = info.get("revision") or {}
    lines = [f"{name} ({product}, revision {rev.get('major', '?')}.{rev.get('minor', '?')})"]
    lines.append(f"at {path}: {len(tags)} tag(s)")
    for scope, members in _scopes(tags):
        rows: list[tuple[str, str]] = []
        for full in members:
            entry = tags[full]
            rows.append((_short(full), _declared(entry)))
            rows.extend(_members(entry.get("data_type"), "  ", 0))
        width = max(len(label) for label, _ in rows)
        lines += ["", f"{scope} tags:"]
        lines += [f"  {label:<{width}}  {declared}" for label, declared in rows]
    return "\n".join(lines) + "\n"


def source_yaml(
    tags: Mapping[str, Mapping[str, Any]],
    info: Mapping[str, Any],
    host: str,
    port: int,
    slot: int | None,
) -> str:
    """A ``sources:`` entry with every readable tag, named for topics, ready to paste."""
    source = _NOT_NAME.sub("_", str(info.get("name") or "logix")).replace(".", "_")[:64]
    lines = ["sources:", f"  - name: {_scalar(source.strip('_-') or 'logix')}"]
    lines += ["    protocol: logix", f"    host: {_scalar(host)}"]
    if port != DEFAULT_PORT:
        lines.append(f"    port: {port}")
    lines.append(f"    slot: {'null' if slot is None else slot}")
    lines.append("    tags:")
    taken: set[str] = set()
    for _scope, members in _scopes(tags):
        for full in members:
            entry = tags[full]
            if entry.get("external_access") == "None":
                continue  # not readable over CIP: listing it would only make a bad tag
            tag_name = _unique(_tag_name(full), taken)
            lines.append(
                f"      - {{name: {_scalar(tag_name)}, address: {json.dumps(full)}}}"
                f"  # {_declared(entry)}"
            )
    return "\n".join(lines) + "\n"


def _scopes(tags: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[str, list[str]]]:
    controller = [n for n in tags if not n.startswith("Program:")]
    if controller:
        yield "Controller", sorted(controller, key=str.lower)
    programs: dict[str, list[str]] = {}
    for name in tags:
        if name.startswith("Program:"):
            programs.setdefault(name.split(".", 1)[0], []).append(name)
    for program in sorted(programs, key=str.lower):
        yield program, sorted(programs[program], key=str.lower)


def _short(full: str) -> str:
    return full.split(".", 1)[1] if full.startswith("Program:") else full


def _declared(entry: Mapping[str, Any]) -> str:
    dims = dimensions(entry)
    text = type_name(entry.get("data_type"))
    if dims:
        text += f"[{','.join(map(str, dims))}]"
    if entry.get("alias"):
        text += " (alias)"
    if entry.get("external_access") not in (None, "Read/Write"):
        text += f" (external access: {entry['external_access']})"
    return text


def _members(data_type: DataType | None, indent: str, depth: int) -> Iterator[tuple[str, str]]:
    if not isinstance(data_type, dict) or depth >= MAX_DEPTH or "string" in data_type:
        return  # a STRING is a value, not a structure to expand
    internal = data_type.get("internal_tags", {})
    for name in data_type.get("attributes", list(internal)):
        member = internal.get(name)
        if member is None:
            continue
        declared = type_name(member.get("data_type"))
        if member.get("array"):
            declared += f"[{member['array']}]"
        yield f"{indent}.{name}", declared
        yield from _members(member.get("data_type"), indent + "  ", depth + 1)


def _tag_name(full: str) -> str:
    """A topic-safe name: ``Program:Main.Count`` is ``Main.Count``, ``Local:1:I`` ``Local_1_I``."""
    name = full[len("Program:") :] if full.startswith("Program:") else full
    name = _NOT_NAME.sub("_", name)[:120]
    return name if name[:1].isalnum() or name[:1] == "_" else f"_{name}"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate.lower() in taken:
        candidate = f"{name}_{n}"
        n += 1
    taken.add(candidate.lower())
    return candidate


def _scalar(text: str) -> str:
    """The text as a YAML scalar, quoted when it would otherwise read as something else."""
    try:
        plain = yaml.safe_load(f"k: {text}")["k"] == text
    except yaml.YAMLError:
        plain = False
    return text if plain and "#" not in text and "," not in text else json.dumps(text)
