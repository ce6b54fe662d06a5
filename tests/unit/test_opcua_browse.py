"""Browse output as config: tag names from browse paths, and a sources entry that validates."""

from __future__ import annotations

import re

from connectors.opcua.browse import Variable, source_name, tag_names, to_text, to_yaml
from connectors.opcua.resolve import node_id
from gateway.config import parse_config

TAG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def test_tag_names_follow_browse_paths() -> None:
    assert tag_names([["Oven", "Zone1", "Temp"], ["Filler", "Counter"]]) == [
        "Oven.Zone1.Temp",
        "Filler.Counter",
    ]


def test_tag_names_are_valid_and_unique_whatever_the_browse_names() -> None:
    paths = [
        ["Line 1", "Speed (m/min)"],
        ["Line_1", "Speed_m_min"],
        ["Line 1", "Speed [m/min]"],
        ["-dash", "x"],
        ["Ölpumpe", "Druck"],
        ["a.b", "c"],
        ["", "?"],
        ["x" * 200],
        ["x" * 200],
    ]
    names = tag_names(paths)
    assert len(set(names)) == len(names)
    for name in names:
        assert TAG_NAME.match(name), name
        assert len(name) <= 128
    assert names[:3] == ["Line_1.Speed_m_min", "Line_1.Speed_m_min_2", "Line_1.Speed_m_min_3"]
    assert names[5] == "a_b.c"  # a dot inside a browse name is not a level


def test_source_name_is_a_valid_name() -> None:
    assert source_name("opc.tcp://10.0.0.5:4840") == "opcua-10-0-0-5-4840"
    assert source_name("opc.tcp://plc.local") == "opcua-plc-local-4840"


def variables() -> list[Variable]:
    return [
        Variable(
            ["Oven", "Zone1", "Temp"],
            node_id("Oven.Zone1.Temp", 2),
            "nsu=urn:plantgate:sim;s=Oven.Zone1.Temp",
            "Double",
            "r",
            "180.5",
            True,
        ),
        Variable(
            ["Oven", "Secret"],
            node_id("Oven.Secret", 2),
            "nsu=urn:plantgate:sim;s=Oven.Secret",
            "String",
            "-",
            "BadNotReadable",
            False,
        ),
        Variable(["true"], node_id(5, 2), "nsu=urn:x;i=5", "Boolean", "rw", "true # yes", True),
    ]


def test_yaml_entry_validates_as_a_config() -> None:
    text = to_yaml("opc.tcp://127.0.0.1:4840", variables())
    config = parse_config("gateway: {name: edge}\n" + text)
    source = config.sources[0]
    assert source.protocol == "opcua"
    assert [t.name for t in source.tags] == ["Oven.Zone1.Temp", "true"]  # readable ones only
    assert [str(t.node) for t in source.tags] == [
        "nsu=urn:plantgate:sim;s=Oven.Zone1.Temp",
        "nsu=urn:x;i=5",
    ]


def test_text_lists_every_variable() -> None:
    lines = to_text(variables()).splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["nsu=urn:plantgate:sim;s=Oven.Zone1.Temp", "Double", "r", "180.5"]
    assert to_text([]) == "no variables found\n"
