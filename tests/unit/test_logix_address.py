"""Studio 5000 address parsing, and the Logix source's YAML model."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from connectors.logix.address import Address, Part, parse_address
from connectors.logix.config import LogixSource
from gateway.config import parse_config
from gateway.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tag", Address((Part("Tag"),))),
        ("_under_score9", Address((Part("_under_score9"),))),
        (
            "Program:MainProgram.BottleCount",
            Address((Part("BottleCount"),), program="MainProgram"),
        ),
        ("Arr[3]", Address((Part("Arr", (3,)),))),
        ("Arr[2,1]", Address((Part("Arr", (2, 1)),))),
        ("Cube[1,2,3]", Address((Part("Cube", (1, 2, 3)),))),
        ("Udt.Member.Sub", Address((Part("Udt"), Part("Member"), Part("Sub")))),
        ("Dint.5", Address((Part("Dint"),), bit=5)),
        ("Lint.63", Address((Part("Lint"),), bit=63)),
        ("Arr[0]{10}", Address((Part("Arr", (0,)),), count=10)),
        ("Trend{1000}", Address((Part("Trend"),), count=1000)),
        ("Recipes[1].Steps[2]", Address((Part("Recipes", (1,)), Part("Steps", (2,))))),
        ("DintArray[3].7", Address((Part("DintArray", (3,)),), bit=7)),
        ("Local:1:I.Data[3].7", Address((Part("Local:1:I"), Part("Data", (3,))), bit=7)),
        ("Adapter:I.Ch0", Address((Part("Adapter:I"), Part("Ch0")))),
        (
            "Program:Packaging.Cases[2].Count{1}",
            Address((Part("Cases", (2,)), Part("Count")), program="Packaging", count=1),
        ),
        ("program:Main.X", Address((Part("X"),), program="Main")),
    ],
)
def test_every_address_form(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("  Tag  ", "Tag"),
        ("Arr[ 2 , 1 ]", "Arr[2,1]"),
        ("Arr[0] { 10 }", "Arr[0]{10}"),
        ("program:Main.Udt.M[1].3", "Program:Main.Udt.M[1].3"),
        ("Local:1:I.Data", "Local:1:I.Data"),
    ],
)
def test_canonical_text_round_trips(text: str, canonical: str) -> None:
    address = parse_address(text)
    assert str(address) == canonical
    assert parse_address(str(address)) == address


def test_base_and_members() -> None:
    address = parse_address("Program:Main.Recipe.Limits.High")
    assert address.base == "Program:Main.Recipe"
    assert address.members == (Part("Limits"), Part("High"))
    assert parse_address("Recipes[2].Name").base == "Recipes"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1Tag", "is not a tag or member name"),
        ("5", "cannot start with a digit"),
        ("Tag[", "'[' without ']'"),
        ("Tag]", "']' without '['"),
        ("Tag[1", "'[' without ']'"),
        ("Tag[a]", "unexpected '[a]'"),
        ("Tag[]", "unexpected '[]'"),
        ("Tag[1][2]", "unexpected '[1][2]'"),
        ("Tag[-1]", "unexpected '[-1]'"),
        ("Tag[1,2,3,4]", "at most 3 dimensions"),
        ("Udt.M[1,2]", "has one dimension"),
        ("Tag.5.6", "must come last"),
        ("Tag.5.Member", "must come last"),
        ("Tag.64", "bit 64 is out of range"),
        ("Tag.5{2}", "a bit cannot take an element count"),
        ("Tag{0}", "element count must be 1 to 65535"),
        ("Tag{70000}", "element count must be 1 to 65535"),
        ("Tag{2}x", "written at the end"),
        ("Tag{", "written at the end"),
        ("{3}", "written at the end"),
        ("Program:.Tag", "Program:NAME.Tag"),
        ("Program:Main", "Program:NAME.Tag"),
        ("Program:Main.", "Program:NAME.Tag"),
        ("Program:Ma in.Tag", "Program:NAME.Tag"),
        ("Tag..M", "empty name between dots"),
        ("Tag.", "empty name between dots"),
        (".Tag", "empty name between dots"),
        ("Tag Name", "unexpected ' Name'"),
        ("Tag-Name", "unexpected '-Name'"),
        ("Udt.Local:1", "unexpected ':1'"),
        ("A" * 41, "longer than 40 characters"),
    ],
)
def test_malformed_addresses_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_address(text)


def test_only_text_is_an_address() -> None:
    with pytest.raises(ValueError, match="not 5"):
        parse_address(5)  # type: ignore[arg-type]


# -- the source model ----------------------------------------------------------------------


def logix(**kw: object) -> LogixSource:
    base: dict[str, object] = {
        "name": "filler",
        "protocol": "logix",
        "host": "10.0.0.5",
        "tags": [{"name": "bottles", "address": "Program:MainProgram.BottleCount"}],
    }
    return LogixSource.model_validate(base | kw)


def test_defaults_and_connection_path() -> None:
    source = logix()
    assert (source.port, source.slot, source.route, source.timeout) == (44818, 0, None, 5.0)
    assert source.path == "10.0.0.5:44818/0"
    assert logix(slot=3, port=2222).path == "10.0.0.5:2222/3"
    assert logix(slot=None).path == "10.0.0.5:44818"
    routed = logix(route="/backplane/2/enet/10.1.1.5/backplane/0/")
    assert routed.path == "10.0.0.5:44818/backplane/2/enet/10.1.1.5/backplane/0"
    assert str(source.tags[0].address) == "Program:MainProgram.BottleCount"
    assert source.model_dump()["tags"][0]["address"] == "Program:MainProgram.BottleCount"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"route": "backplane/2/enet"}, "port/link pairs"),
        ({"route": "backplane 2"}, "port/link pairs"),
        ({"route": "bp/1", "slot": 1}, "slot or route, not both"),
        ({"slot": 256}, "less than or equal to 255"),
        ({"port": 0}, "greater than or equal to 1"),
        ({"timeout": "0s"}, "greater than zero"),
        ({"tags": []}, "at least 1 item"),
        ({"unit_id": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_source_keys(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        logix(**kw)


CONFIG = """\
gateway:
  name: line1-edge
sources:
  - name: filler
    protocol: logix
    host: 127.0.0.1
    slot: 0
    tags:
      - {name: bottles, address: "Program:MainProgram.BottleCount"}
      - {name: recipe, address: CurrentRecipe}
"""


def test_the_design_example_is_a_valid_config() -> None:
    config = parse_config(CONFIG)
    source = config.sources[0]
    assert isinstance(source, LogixSource)
    assert [t.name for t in source.tags] == ["bottles", "recipe"]
    assert str(source.tags[1].address) == "CurrentRecipe"


def test_a_malformed_address_is_refused_with_its_path_and_line() -> None:
    text = CONFIG.replace("address: CurrentRecipe}", 'address: "Recipe[1"}')
    text = text.replace("slot: 0", "slot: 0\n    unit_id: 1")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    assert sorted(info.value.problems) == [
        "sources[0].tags[1].address: 'Recipe[1': '[' without ']' (c.yaml:11)",
        "sources[0].unit_id: unknown key (c.yaml:8)",
    ]
