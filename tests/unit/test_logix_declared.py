"""Declared Logix types: parsed once at config time, checked against the address and against
each other; the tag list built from them resolves like an uploaded one."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from connectors.logix.address import parse_address
from connectors.logix.config import LogixSource
from connectors.logix.declared import LogixType, declare, parse_type, reply_type
from connectors.logix.resolve import TagTable
from connectors.logix.status import CipStatus, reply_status
from gateway.config import parse_config
from gateway.errors import ConfigError


def source(tags: list[dict[str, Any]], **kw: Any) -> LogixSource:
    return LogixSource.model_validate(
        {"name": "filler", "protocol": "logix", "host": "10.0.0.1", "tags": tags} | kw
    )


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("DINT", LogixType("DINT")),
        ("real[100]", LogixType("REAL", (100,))),
        (" INT[4, 5] ", LogixType("INT", (4, 5))),
        ("LREAL[2,3,4]", LogixType("LREAL", (2, 3, 4))),
        ("String", LogixType("STRING")),
        ("STRING[3]", LogixType("STRING", (3,))),
    ],
)
def test_types_parse_and_print_back(text: str, parsed: LogixType) -> None:
    assert parse_type(text) == parsed
    assert parse_type(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("DOUBLE", "declared types are the atomic types"),
        ("Recipe", "a UDT is declared member by member"),
        ("DINT[0]", "dimensions start at 1"),
        ("DINT[1,2,3,4]", "is not a Logix type"),
        ("BOOL[32]", "BOOL arrays travel as DWORDs"),
        ("DINT[", "is not a Logix type"),
        (7, "is not a Logix type"),
    ],
)
def test_bad_types_are_refused_with_a_reason(text: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_type(text)


def resolve(address: str, declared: str) -> Any:
    table = declare([(parse_address(address), parse_type(declared))])
    return TagTable(table.tags).resolve(parse_address(address))


def test_the_declared_list_resolves_like_an_uploaded_one() -> None:
    assert resolve("Trend", "REAL[1000]").request == "Trend{1000}"
    assert resolve("Trend[10]{5}", "REAL[1000]").size == 20
    assert resolve("IntMatrix", "INT[4,5]").shape == (4, 5)
    assert resolve("StatusBits.5", "DINT").request == "StatusBits.5"
    assert resolve("Program:Main.Count", "DINT").request == "Program:Main.Count"
    member = resolve("Recipes[2].Limits.High", "REAL")
    assert (member.request, member.data_type) == ("Recipes[2].Limits.High", "REAL")
    steps = resolve("CurrentRecipe.Steps", "INT[4]")
    assert (steps.request, steps.elements) == ("CurrentRecipe.Steps{4}", 4)
    name = resolve("LineName", "STRING")
    assert (name.size, name.data_type["string"]) == (88, 82)


def test_members_of_one_udt_share_one_stub() -> None:
    table = declare(
        (parse_address(a), parse_type(t))
        for a, t in [
            ("Recipes[0].Name", "STRING"),
            ("Recipes[2].BatchSize", "DINT"),
            ("recipes[1].limits.low", "REAL"),
            ("Recipes[1].Limits.High", "REAL"),
        ]
    )
    [(key, entry)] = table.tags.items()
    assert key == "Recipes"
    assert entry["dimensions"][:1] == [3]  # as many elements as the declarations index
    members = entry["data_type"]["internal_tags"]
    assert list(members) == ["Name", "BatchSize", "limits"]
    assert list(members["limits"]["data_type"]["internal_tags"]) == ["low", "High"]


@pytest.mark.parametrize(
    ("declarations", "why"),
    [
        ([("Trend", "REAL[1000]"), ("Trend[3]", "REAL[100]")], "declared both REAL"),
        ([("Recipe.Speed", "REAL"), ("Recipe", "DINT")], "declared with members"),
        ([("Recipe", "DINT"), ("Recipe.Speed", "REAL")], "is declared DINT: no members"),
        ([("Recipe.Steps", "INT[2,2]")], "a UDT member array has one dimension"),
    ],
)
def test_contradicting_declarations_are_refused(
    declarations: list[tuple[str, str]], why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        declare((parse_address(a), parse_type(t)) for a, t in declarations)


@pytest.mark.parametrize(
    ("address", "declared", "why"),
    [
        ("Trend[5]", "REAL", "is not an array"),
        ("IntMatrix[1]", "INT[4,5]", r"has 2 dimension\(s\), not 1"),
        ("DintArray[20]", "DINT[20]", r"outside \[20\]"),
        ("Temp.3", "REAL", "only integers have bits"),
        ("Counter{4}", "DINT", r"\{4\} needs one"),
    ],
)
def test_a_type_that_does_not_fit_the_address_is_a_config_error(
    address: str, declared: str, why: str
) -> None:
    with pytest.raises(ValidationError, match=why):
        source([{"name": "x", "address": address, "type": declared}])


def test_tag_list_false_needs_every_type_and_names_the_tags_without() -> None:
    tags = [
        {"name": "a", "address": "A", "type": "DINT"},
        {"name": "b", "address": "B"},
        {"name": "c", "address": "C.D"},
    ]
    with pytest.raises(ValidationError, match="no type on: b, c"):
        source(tags, tag_list=False)
    assert source(tags).uploads_tag_list  # by default: upload, since b and c need it
    assert not source(tags[:1]).uploads_tag_list
    assert source(tags[:1], tag_list=True).uploads_tag_list


def test_a_config_with_declared_types_validates_and_reports_bad_ones_by_key() -> None:
    text = """
gateway: {name: edge}
mqtt: {url: "mqtt://127.0.0.1:1883", topic_prefix: plant}
sources:
  - name: filler
    protocol: logix
    host: 10.0.0.1
    tag_list: false
    tags:
      - {name: trend, address: Trend, type: "REAL[1000]"}
      - {name: speed, address: Line.Speed, type: DOUBLE}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    [problem] = caught.value.problems
    assert problem.startswith("sources[0].tags[1].type: ")
    assert "declared types are the atomic types" in problem
    ok = parse_config(text.replace("DOUBLE", "REAL"))
    tag = ok.sources[0].tags[0]
    assert str(tag.type) == "REAL[1000]"  # type: ignore[union-attr]


def test_reply_types_name_what_a_read_reply_must_carry() -> None:
    assert reply_type({"tag_type": "atomic", "data_type_name": "DINT"}) == b"\xc4\x00"
    string = declare([(parse_address("S"), parse_type("STRING"))]).tags["S"]
    assert reply_type(string) == b"\xa0\x02\xce\x0f"
    stub = declare([(parse_address("U.X"), parse_type("DINT"))]).tags["U"]
    assert reply_type(stub) is None  # a stub is never read whole


def test_cip_statuses_read_as_the_controller_said_them() -> None:
    assert str(CipStatus(0x05, (0,))) == "CIP status 0x05 (path destination unknown)"
    assert str(CipStatus(0xFF, (0x2107,))) == (
        "CIP status 0xFF (general error), extended 0x2107 "
        "(the request's data type does not match the tag's)"
    )
    assert str(CipStatus(0xFF, (0x1234,))) == "CIP status 0xFF (general error), extended 0x1234"
    assert str(CipStatus(0x99)) == "CIP status 0x99 (unknown status)"
    # A connected reply: encapsulation header (24), CPF (20), sequence (2), then the reply.
    connected = bytes([0x70, 0]) + bytes(44) + bytes([0xCD, 0, 0x0F, 0])
    assert reply_status(connected) == CipStatus(0x0F)
    unconnected = bytes([0x6F, 0]) + bytes(38) + bytes([0xD2, 0, 0xFF, 1, 0x05, 0x21])
    assert reply_status(unconnected) == CipStatus(0xFF, (0x2105,))
    assert reply_status(bytes([0x65, 0]) + bytes(60)) is None  # RegisterSession: no CIP status
