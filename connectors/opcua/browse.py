"""``plantgate browse``: walk a server's address space and list its variables, or emit YAML tags."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds
from asyncua.ua.uaerrors import UaStatusCodeError

from connectors.opcua.connector import boundary, chunks
from connectors.opcua.nodeid import parse_node_id
from connectors.opcua.resolve import node_id, nsu_text, resolve
from connectors.opcua.values import to_value

MAX_VALUE_TEXT = 60
MAX_TAG_NAME = 128
_READS_PER_REQUEST = 500
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(slots=True)
class Variable:
    """One variable found while browsing."""

    path: list[str]  # browse names from the root down
    node: ua.NodeId
    node_text: str = ""
    data_type: str = "?"
    access: str = "?"
    value: str = ""
    readable: bool = False


async def browse(url: str, root: str | None, depth: int, as_yaml: bool) -> str:
    """Walk the address space below ``root`` (default: Objects) and describe its variables.

    Raises ValueError for a malformed ``root`` and ConnectionLost when the server cannot be
    browsed (anonymous login, no message security).
    """
    start = parse_node_id(root) if root else None
    with boundary(f"cannot browse {url}", refusals=False):
        client = Client(url, timeout=10)
        client.session_timeout = 60_000  # a short-lived look, not a long session
        async with client:
            namespaces = [str(uri) for uri in await client.get_namespace_array()]
            top = node_id(ObjectIds.ObjectsFolder) if start is None else resolve(start, namespaces)
            found = await _walk(client, top, depth, skip_ns0=start is None)
            await _describe(client, found, namespaces)
    if as_yaml:
        return to_yaml(url, found)
    return to_text(found)


async def _walk(client: Client, top: ua.NodeId, depth: int, skip_ns0: bool) -> list[Variable]:
    """Breadth-first over hierarchical references (properties left out), at most ``depth`` deep."""
    found: list[Variable] = []
    seen = {top.to_string()}
    level: list[tuple[list[str], ua.NodeId]] = [([], top)]
    for _ in range(max(depth, 0)):
        next_level: list[tuple[list[str], ua.NodeId]] = []
        for path, parent in level:
            refs = await Node(client.uaclient.session, parent).get_children_descriptions()
            for ref in refs:
                child = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex)
                key = child.to_string()
                if ref.ReferenceTypeId == node_id(ObjectIds.HasProperty) or key in seen:
                    continue
                if skip_ns0 and child.NamespaceIndex == 0:  # the Server object, not plant data
                    continue
                seen.add(key)
                child_path = [*path, str(ref.BrowseName.Name)]
                if ref.NodeClass == ua.NodeClass.Variable:
                    found.append(Variable(child_path, child))
                if ref.NodeClass in (ua.NodeClass.Object, ua.NodeClass.Variable):
                    next_level.append((child_path, child))
        level = next_level
    found.sort(key=lambda var: var.path)  # the order of the address space, not of the walk
    return found


async def _describe(client: Client, found: list[Variable], namespaces: list[str]) -> None:
    """Fill in data type, access level and value with bulk reads."""
    session = client.uaclient.session
    type_names: dict[str, str] = {}
    attrs = (AttributeIds.DataType, AttributeIds.AccessLevel, AttributeIds.Value)
    pairs = [(i, var.node) for i, var in enumerate(found)]
    for chunk in chunks(pairs, _READS_PER_REQUEST // len(attrs)):
        params = ua.ReadParameters()
        params.NodesToRead = [
            ua.ReadValueId(NodeId=node, AttributeId=attr) for _, node in chunk for attr in attrs
        ]
        results = await session.read(params)
        for k, (i, _) in enumerate(chunk):
            dtype, access, value = results[3 * k : 3 * k + 3]
            var = found[i]
            var.node_text = nsu_text(var.node, namespaces)
            var.data_type = await _type_name(client, dtype, type_names)
            level = (
                int(access.Value.Value) if access.Value and access.Value.Value is not None else 0
            )
            var.readable = bool(level & ua.AccessLevel.CurrentRead.mask)
            writable = bool(level & ua.AccessLevel.CurrentWrite.mask)
            var.access = ("r" if var.readable else "") + ("w" if writable else "") or "-"
            if value.StatusCode is not None and not value.StatusCode.is_good():
                var.value = value.StatusCode.name
            elif value.Value is not None:
                var.value = _short(json.dumps(to_value(value.Value.Value), ensure_ascii=False))


async def _type_name(client: Client, data: ua.DataValue, cache: dict[str, str]) -> str:
    """A data type's name: built-in names directly, others from the server (once each)."""
    dtype = data.Value.Value if data.Value is not None else None
    if not isinstance(dtype, ua.NodeId):
        return "?"
    if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int):
        return ObjectIdNames.get(dtype.Identifier, dtype.to_string())
    key = dtype.to_string()
    if key not in cache:
        try:
            name = await Node(client.uaclient.session, dtype).read_browse_name()
            cache[key] = str(name.Name)
        except UaStatusCodeError:
            cache[key] = key
    return cache[key]


def _short(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_VALUE_TEXT else text[: MAX_VALUE_TEXT - 3] + "..."


def to_text(found: Sequence[Variable]) -> str:
    """One line per variable: node id, data type, access, value."""
    if not found:
        return "no variables found\n"
    rows = [(v.node_text, v.data_type, v.access, v.value) for v in found]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    lines = [
        f"{n:<{widths[0]}}  {t:<{widths[1]}}  {a:<{widths[2]}}  {val}".rstrip()
        for n, t, a, val in rows
    ]
    return "\n".join(lines) + "\n"


def tag_names(paths: Sequence[Sequence[str]]) -> list[str]:
    """Tag names from browse paths (``Oven.Zone1.Temp``): valid, at most 128 long, unique."""
    names: list[str] = []
    taken: set[str] = set()
    for path in paths:
        parts = [_UNSAFE.sub("_", p).strip("_") or "_" for p in path] or ["tag"]
        base = ".".join(parts)
        if not re.match(r"[A-Za-z0-9_]", base):
            base = "_" + base
        base = base[:MAX_TAG_NAME]
        name, n = base, 1
        while name in taken:
            n += 1
            suffix = f"_{n}"
            name = base[: MAX_TAG_NAME - len(suffix)] + suffix
        taken.add(name)
        names.append(name)
    return names


def source_name(url: str) -> str:
    """A valid source name from the server address, e.g. ``opcua-127-0-0-1-4840``."""
    parts = urlsplit(url)
    raw = f"opcua-{parts.hostname or 'server'}-{parts.port or 4840}"
    return _UNSAFE.sub("-", raw)[:64]


def to_yaml(url: str, found: Sequence[Variable]) -> str:
    """A ``sources:`` entry ready to paste into config.yaml (readable variables only)."""
    readable = [v for v in found if v.readable]
    lines = [
        "sources:",
        f"  - name: {source_name(url)}",
        "    protocol: opcua",
        f"    url: {json.dumps(url)}",
        "    subscribe: true",
        "    tags:",
    ]
    names = tag_names([v.path for v in readable])
    for name, var in zip(names, readable, strict=True):
        note = f"  # {var.data_type}, {var.access}" + (f", {var.value}" if var.value else "")
        entry = (
            f"{{name: {json.dumps(name)}, node: {json.dumps(var.node_text, ensure_ascii=False)}}}"
        )
        lines.append(f"      - {entry}{note}")
    if not readable:
        lines.append("      []  # no readable variables found below the root")
    return "\n".join(lines) + "\n"
