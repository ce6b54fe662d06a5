"""OPC UA node ids as text (``ns=2;s=..``, ``nsu=<uri>;s=..``, ``i=``, ``g=``, ``b=``).

Pure parsing, no asyncua: a config is validated without loading the protocol stack.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Literal

IdKind = Literal["i", "s", "g", "b"]
Identifier = int | str | uuid.UUID | bytes

_NS_PREFIX = re.compile(r"^(ns|nsu)=([^;]*);(.*)$", re.DOTALL)
_FORMS = "i=N, s=TEXT, g=GUID or b=BASE64, optionally after ns=N; or nsu=URI;"
_KINDS: dict[str, IdKind] = {"i": "i", "s": "s", "g": "g", "b": "b"}
MAX_NAMESPACE = 65535
MAX_NUMERIC = 2**32 - 1


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A parsed node id; ``namespace`` is an index or, for ``nsu=``, the namespace URI."""

    namespace: int | str
    kind: IdKind
    identifier: Identifier

    @property
    def by_uri(self) -> bool:
        """True when the namespace is named by URI and must be resolved at every connect."""
        return isinstance(self.namespace, str)

    def __str__(self) -> str:
        return format_node_id(self.namespace, self.identifier)


def format_node_id(namespace: int | str, identifier: Identifier) -> str:
    """The standard text form: ``nsu=<uri>;s=..`` for a URI, ``ns=N;..`` or bare for ns 0."""
    if isinstance(identifier, bool):
        raise TypeError("a node identifier is not a bool")
    if isinstance(identifier, int):
        body = f"i={identifier}"
    elif isinstance(identifier, str):
        body = f"s={identifier}"
    elif isinstance(identifier, uuid.UUID):
        body = f"g={identifier}"
    else:
        body = f"b={base64.b64encode(identifier).decode('ascii')}"
    if isinstance(namespace, str):
        # A ';' inside the URI would end it early; Part 6 escapes it as %3B.
        return f"nsu={namespace.replace('%', '%25').replace(';', '%3B')};{body}"
    return body if namespace == 0 else f"ns={namespace};{body}"


def parse_node_id(text: str) -> NodeRef:
    """Parse a node id in any standard text form; ValueError says what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a node id: expected text such as ns=2;s=Tag")
    raw = text.strip()
    if not raw:
        raise ValueError("the node id is empty; use e.g. nsu=urn:vendor:plc;s=Line1.Speed")
    namespace: int | str = 0
    body = raw
    if m := _NS_PREFIX.match(raw):
        key, value, body = m.groups()
        namespace = _namespace(raw, key, value)
    elif raw.startswith(("ns=", "nsu=")):
        raise ValueError(f"{raw!r}: the namespace must be followed by ';' and {_FORMS}")
    key, sep, ident = body.partition("=")
    kind = _KINDS.get(key)
    if not sep or kind is None:
        raise ValueError(f"{raw!r} is not an OPC UA node id; use {_FORMS}")
    return NodeRef(namespace, kind, _identifier(raw, kind, ident))


def _namespace(raw: str, key: str, value: str) -> int | str:
    if key == "nsu":
        uri = value.replace("%3B", ";").replace("%3b", ";").replace("%25", "%")
        if not uri.strip():
            raise ValueError(f"{raw!r}: nsu= needs a namespace URI, e.g. nsu=urn:vendor:plc;s=Tag")
        return uri
    if not value.isdigit() or int(value) > MAX_NAMESPACE:
        raise ValueError(f"{raw!r}: ns= needs a namespace index 0..{MAX_NAMESPACE}, not {value!r}")
    return int(value)


def _identifier(raw: str, kind: IdKind, ident: str) -> Identifier:
    if kind == "i":
        if not ident.isdigit() or int(ident) > MAX_NUMERIC:
            raise ValueError(f"{raw!r}: i= needs a number 0..{MAX_NUMERIC}, not {ident!r}")
        return int(ident)
    if kind == "s":
        if not ident:
            raise ValueError(f"{raw!r}: s= needs the string identifier after it")
        return ident
    if kind == "g":
        try:
            return uuid.UUID(ident)
        except ValueError:
            raise ValueError(
                f"{raw!r}: g= needs a GUID such as 72962b91-fa75-4ae6-8d28-b404dc7daf63"
            ) from None
    try:
        value = base64.b64decode(ident, validate=True)
    except (binascii.Error, ValueError):
        value = b""
    if not value:
        raise ValueError(f"{raw!r}: b= needs a non-empty base64 byte string, not {ident!r}")
    return value
