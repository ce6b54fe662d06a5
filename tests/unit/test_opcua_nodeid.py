"""OPC UA node ids as text: every standard form parses, malformed ones are refused clearly."""

from __future__ import annotations

import re
import uuid

import pytest

from connectors.opcua.nodeid import NodeRef, format_node_id, parse_node_id

GUID = "72962b91-fa75-4ae6-8d28-b404dc7daf63"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i=2253", NodeRef(0, "i", 2253)),
        ("ns=0;i=85", NodeRef(0, "i", 85)),
        ("ns=2;i=4294967295", NodeRef(2, "i", 2**32 - 1)),
        ("ns=2;s=Oven.Zone1.Temp", NodeRef(2, "s", "Oven.Zone1.Temp")),
        ("s=Plain", NodeRef(0, "s", "Plain")),
        ("ns=3;s=Line 1;Speed=5", NodeRef(3, "s", "Line 1;Speed=5")),  # ';' and '=' belong to it
        (
            "nsu=urn:plantgate:sim;s=Oven.Zone1.Temp",
            NodeRef("urn:plantgate:sim", "s", "Oven.Zone1.Temp"),
        ),
        ("nsu=http://acme.com/UA/;i=17", NodeRef("http://acme.com/UA/", "i", 17)),
        ("nsu=urn:a%3Bb;s=X", NodeRef("urn:a;b", "s", "X")),  # Part 6 escapes ';' in the URI
        (f"ns=4;g={GUID}", NodeRef(4, "g", uuid.UUID(GUID))),
        (f"g={GUID.upper()}", NodeRef(0, "g", uuid.UUID(GUID))),
        (
            "ns=5;b=M/RbKBsRVkePCePcx24oRA==",
            NodeRef(5, "b", bytes.fromhex("33f45b281b1156478f09e3dcc76e2844")),
        ),
        ("  ns=2;s=Padded  ", NodeRef(2, "s", "Padded")),
    ],
)
def test_every_standard_form_parses(text: str, expected: NodeRef) -> None:
    assert parse_node_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ns=2;s=Oven.Zone1.Temp",
        "i=85",
        "nsu=urn:plantgate:sim;s=Filler.Counter",
        f"ns=4;g={GUID}",
        "ns=5;b=M/RbKBsRVkePCePcx24oRA==",
        "nsu=urn:a%3Bb;s=X",
    ],
)
def test_text_form_round_trips(text: str) -> None:
    ref = parse_node_id(text)
    assert str(ref) == text
    assert parse_node_id(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the node id is empty"),
        ("Oven.Zone1.Temp", "is not an OPC UA node id; use i=N, s=TEXT, g=GUID or b=BASE64"),
        ("ns=2;x=5", "is not an OPC UA node id"),
        ("ns=2;Temp", "is not an OPC UA node id"),
        ("ns=2", "the namespace must be followed by ';'"),
        ("nsu=urn:plantgate:sim", "the namespace must be followed by ';'"),
        ("ns=two;s=Temp", "ns= needs a namespace index 0..65535, not 'two'"),
        ("ns=70000;s=Temp", "ns= needs a namespace index 0..65535"),
        ("ns=-1;i=5", "ns= needs a namespace index"),
        ("nsu=;s=Temp", "nsu= needs a namespace URI"),
        ("ns=2;i=abc", "i= needs a number 0..4294967295, not 'abc'"),
        ("i=4294967296", "i= needs a number"),
        ("i=", "i= needs a number"),
        ("ns=2;s=", "s= needs the string identifier"),
        ("g=not-a-guid", "g= needs a GUID"),
        ("b=***", "b= needs a non-empty base64 byte string"),
        ("b=", "b= needs a non-empty base64 byte string"),
    ],
)
def test_malformed_node_ids_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_node_id(text)
    if text.strip():
        assert repr(text.strip()) in str(info.value)  # the message quotes what was given


def test_non_text_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a node id"):
        parse_node_id(42)  # type: ignore[arg-type]


def test_by_uri_marks_ids_resolved_per_connect() -> None:
    assert parse_node_id("nsu=urn:x;i=1").by_uri
    assert not parse_node_id("ns=2;i=1").by_uri


def test_format_node_id_keeps_namespace_zero_bare() -> None:
    assert format_node_id(0, 2253) == "i=2253"
    assert format_node_id(3, "A") == "ns=3;s=A"
    assert format_node_id("urn:x", b"\x01\x02") == "nsu=urn:x;b=AQI="
