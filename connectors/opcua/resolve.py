"""Node ids against a live server: ``nsu=`` URIs to the namespace index it uses right now."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

from asyncua import ua

from connectors.opcua.nodeid import NodeRef, format_node_id


class UnknownNamespace(LookupError):
    """The server does not publish the namespace URI a node id names."""


def resolve(ref: NodeRef, namespaces: Sequence[str]) -> ua.NodeId:
    """The asyncua NodeId for a parsed node id, given the server's NamespaceArray."""
    index = ref.namespace
    if isinstance(index, str):
        try:
            index = namespaces.index(index)
        except ValueError:
            raise UnknownNamespace(f"the server has no namespace {ref.namespace!r}") from None
    return node_id(ref.identifier, index)


def node_id(identifier: int | str | uuid.UUID | bytes, namespace: int = 0) -> ua.NodeId:
    """An asyncua NodeId (its annotations name wrapper types; it takes plain values)."""
    return ua.NodeId(
        cast("ua.Int32 | ua.String | ua.Guid | ua.ByteString", identifier),
        cast("ua.Int16", namespace),
    )


def nsu_text(node: ua.NodeId, namespaces: Sequence[str]) -> str:
    """A node id in the stable ``nsu=<uri>;..`` form (namespace 0 stays bare: ``i=2253``)."""
    index = int(node.NamespaceIndex)
    identifier: int | str | uuid.UUID | bytes = node.Identifier
    namespace: int | str = index
    if 0 < index < len(namespaces):
        namespace = namespaces[index]
    if isinstance(identifier, str) and node.NodeIdType == ua.NodeIdType.ByteString:
        identifier = identifier.encode()
    return format_node_id(namespace, identifier)
