"""Addresses resolved against a tag list shaped like pycomm3's, values made plain, browse output."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from connectors.logix.address import parse_address
from connectors.logix.browse import describe, source_yaml
from connectors.logix.config import LogixSource
from connectors.logix.resolve import (
    Resolved,
    TagTable,
    bad_sample,
    plain_value,
    reshape,
    shortest_real,
)
from gateway.models import Quality, Sample


def member(data_type: Any, array: int = 0) -> dict[str, Any]:
    return {"data_type": data_type, "array": array}


def struct(name: str, size: int, members: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "template": {"structure_size": size},
        "attributes": list(members),
        "internal_tags": members,
    }


STRING = struct("STRING", 88, {"LEN": member("DINT"), "DATA": member("SINT", 82)}) | {"string": 82}
LIMITS = struct("Limits", 8, {"Low": member("REAL"), "High": member("REAL")})
RECIPE = struct(
    "Recipe",
    116,
    {
        "Name": member(STRING),
        "BatchSize": member("DINT"),
        "OvenTemp": member("REAL"),
        "Limits": member(LIMITS),
        "Steps": member("INT", 4),
    },
)


def tag(data_type: Any, *dims: int, access: str = "Read/Write") -> dict[str, Any]:
    return {
        "data_type": data_type,
        "dim": len(dims),
        "dimensions": [*dims, 0, 0, 0][:3],
        "external_access": access,
        "alias": False,
    }


TAGS = {
    "TestDint": tag("DINT"),
    "TestReal": tag("REAL"),
    "Trend": tag("REAL", 1000),
    "IntMatrix": tag("INT", 4, 5),
    "RealCube": tag("REAL", 2, 3, 4),
    "CurrentRecipe": tag(RECIPE),
    "Recipes": tag(RECIPE, 3),
    "LineName": tag(STRING),
    "Hidden": tag("DINT", access="None"),
    "Program:MainProgram.BottleCount": tag("DINT"),
}
TABLE = TagTable(TAGS)


def resolve(text: str) -> Resolved:
    return TABLE.resolve(parse_address(text))


@pytest.mark.parametrize(
    ("address", "request_text", "elements", "size"),
    [
        ("TestDint", "TestDint", 1, 4),
        ("testdint", "TestDint", 1, 4),  # Logix names are case-insensitive
        ("Trend", "Trend{1000}", 1000, 4000),  # a whole array, every element
        ("Trend[10]", "Trend[10]", 1, 4),
        ("Trend[10]{990}", "Trend[10]{990}", 990, 3960),
        ("Trend{5}", "Trend{5}", 5, 20),
        ("IntMatrix", "IntMatrix{20}", 20, 40),
        ("IntMatrix[1,2]", "IntMatrix[1,2]", 1, 2),
        ("IntMatrix[3,0]{5}", "IntMatrix[3,0]{5}", 5, 10),
        ("RealCube[1,2,3]", "RealCube[1,2,3]", 1, 4),
        ("CurrentRecipe", "CurrentRecipe", 1, 116),
        ("currentrecipe.limits.HIGH", "CurrentRecipe.Limits.High", 1, 4),
        ("CurrentRecipe.Steps", "CurrentRecipe.Steps{4}", 4, 8),
        ("CurrentRecipe.Steps[2]", "CurrentRecipe.Steps[2]", 1, 2),
        ("CurrentRecipe.Steps[1]{3}", "CurrentRecipe.Steps[1]{3}", 3, 6),
        ("Recipes", "Recipes{3}", 3, 348),
        ("Recipes[1].Name", "Recipes[1].Name", 1, 88),
        ("TestDint.31", "TestDint.31", 1, 4),
        ("CurrentRecipe.BatchSize.0", "CurrentRecipe.BatchSize.0", 1, 4),
        ("Program:mainprogram.BOTTLECOUNT", "Program:MainProgram.BottleCount", 1, 4),
    ],
)
def test_resolves_to_the_request_pycomm3_takes(
    address: str, request_text: str, elements: int, size: int
) -> None:
    resolved = resolve(address)
    assert (resolved.request, resolved.elements, resolved.size) == (request_text, elements, size)


def test_types_and_shapes() -> None:
    assert resolve("TestDint.3").data_type == "BOOL"
    assert resolve("CurrentRecipe.Limits").data_type is LIMITS
    assert resolve("IntMatrix").shape == (4, 5)
    assert resolve("RealCube").shape == (2, 3, 4)
    assert resolve("Trend").shape == ()  # one dimension: already a flat list
    assert resolve("IntMatrix{20}").shape == ()  # an explicit count reads a flat run
    assert resolve("Trend").type_name == "REAL[1000]"
    assert resolve("Recipes[0]").type_name == "Recipe"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("NoSuchTag", "NoSuchTag is not in the controller's tag list"),
        ("Program:Nope.X", "the controller has no program 'Nope'"),
        ("Program:MainProgram.X", "Program:MainProgram.X is not in the controller's tag list"),
        ("Hidden", "Hidden is not readable (External Access: None)"),
        ("TestDint[0]", "TestDint is not an array"),
        ("IntMatrix[1]", "IntMatrix has 2 dimension(s), not 1"),
        ("Trend[1000]", "Trend[1000] is outside [1000]"),
        ("IntMatrix[4,0]", "IntMatrix[4,0] is outside [4,5]"),
        ("Recipes.Name", "Recipes is an array: index it before .Name"),
        ("CurrentRecipe.Nope", "CurrentRecipe (Recipe) has no member 'Nope'"),
        ("TestDint.Member", "TestDint (DINT) has no member 'Member'"),
        ("CurrentRecipe.Steps[4]", "CurrentRecipe.Steps[4] is outside [4]"),
        ("Trend.3", "Trend is an array: index it before the bit number"),
        ("CurrentRecipe.5", "CurrentRecipe is a Recipe: only integers have bits"),
        ("TestReal.1", "TestReal is a REAL: only integers have bits"),
        ("TestDint.32", "TestDint is a DINT: its bits are 0 to 31"),
        ("TestDint{2}", "TestDint is not an array: {2} needs one"),
        ("Trend{1001}", "only 1000 element(s) from there to the end"),
        ("IntMatrix[3,1]{5}", "only 4 element(s) from there to the end"),
    ],
)
def test_what_cannot_be_read_says_why(address: str, message: str) -> None:
    with pytest.raises(LookupError, match=re.escape(message)):
        resolve(address)


def test_plain_values() -> None:
    recipe = {
        "Name": "COLA",
        "BatchSize": 5,
        "OvenTemp": 175.11390686035156,
        "Limits": {"Low": 172.0, "High": 192.10000610351562},
        "Steps": [1, 2, 3, 4],
    }
    assert plain_value(recipe, resolve("CurrentRecipe")) == {
        "Name": "COLA",
        "BatchSize": 5,
        "OvenTemp": 175.1139,
        "Limits": {"Low": 172.0, "High": 192.1},
        "Steps": [1, 2, 3, 4],
    }
    assert plain_value(list(range(20)), resolve("IntMatrix")) == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        [10, 11, 12, 13, 14],
        [15, 16, 17, 18, 19],
    ]
    assert plain_value([0.10000000149011612, 0.25], resolve("Trend{2}")) == [0.1, 0.25]
    assert plain_value(True, resolve("TestDint.4")) is True
    assert plain_value(b"\x01\xff", resolve("TestDint")) == "01ff"


def test_lreal_keeps_its_precision_and_odd_floats_pass() -> None:
    lreal = TagTable({"X": tag("LREAL")}).resolve(parse_address("X"))
    assert plain_value(2.718281828459045, lreal) == 2.718281828459045
    assert shortest_real(float("inf")) == float("inf")
    nan = shortest_real(float("nan"))
    assert nan != nan


def test_a_bad_udt_keeps_its_member_names() -> None:
    sample = bad_sample(resolve("CurrentRecipe"), "refused")
    assert (sample.quality, sample.reason) == (Quality.BAD, "refused")
    assert sample.value == {
        "Name": None,  # a STRING is a value
        "BatchSize": None,
        "OvenTemp": None,
        "Limits": {"Low": None, "High": None},
        "Steps": None,  # an array member is one value
    }
    bad = Sample(None, Quality.BAD, reason="refused")
    assert bad_sample(resolve("Recipes"), "refused") == bad  # an array of UDTs is one value
    assert bad_sample(resolve("TestDint"), "refused") == bad
    assert bad_sample(resolve("LineName"), "refused") == bad


def test_reshape_is_row_major() -> None:
    cube: Any = reshape(list(range(24)), (2, 3, 4))
    assert cube[1][2] == [20, 21, 22, 23]
    assert reshape([1, 2], (2,)) == [1, 2]


# -- browse output from a tag list ---------------------------------------------------------

INFO = {"name": "Line 1/Filler", "product_name": "1756-L83E/B", "revision": {"major": 33}}


def test_describe_lists_scopes_types_dimensions_and_members() -> None:
    text = describe(TAGS, INFO, "10.0.0.5:44818/0")
    lines = text.splitlines()
    assert lines[0] == "Line 1/Filler (1756-L83E/B, revision 33.?)"
    assert "Controller tags:" in lines
    assert "Program:MainProgram tags:" in lines
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:] if line.startswith("  ")}
    assert rows["IntMatrix"] == ["INT[4,5]"]
    assert rows["RealCube"] == ["REAL[2,3,4]"]
    assert rows["Recipes"] == ["Recipe[3]"]
    assert rows[".Steps"] == ["INT[4]"]
    assert rows[".High"] == ["REAL"]
    assert rows["BottleCount"] == ["DINT"]
    assert rows["Hidden"] == ["DINT", "(external", "access:", "None)"]
    assert ".LEN" not in rows  # a STRING is a value, not a structure to expand


def test_source_yaml_is_a_valid_source_with_unique_topic_safe_names() -> None:
    tags = dict(TAGS)
    tags["Local:1:I"] = tag("DINT")
    tags["Local_1_I"] = tag("DINT")  # collides with the sanitised module tag name
    tags["yes"] = tag("BOOL")  # YAML 1.1 would read it as true unless quoted
    tags["Program:Main.TestDint"] = tag("DINT")
    text = source_yaml(tags, INFO, "10.0.0.5", 44818, 0)
    entry = yaml.safe_load(text)["sources"][0]
    source = LogixSource.model_validate(entry)  # every name matches the TagName pattern
    names = [t.name for t in source.tags]
    assert len(names) == len(set(names))
    addresses = {t.name: str(t.address) for t in source.tags}
    assert addresses["Local_1_I"] == "Local:1:I"
    assert addresses["Local_1_I_2"] == "Local_1_I"
    assert addresses["yes"] == "yes"
    assert addresses["Main.TestDint"] == "Program:Main.TestDint"
    assert addresses["MainProgram.BottleCount"] == "Program:MainProgram.BottleCount"
    assert "Hidden" not in addresses  # External Access None: it could never be read
    assert source.name == "Line_1_Filler"
    assert source.port == 44818
    assert "port:" not in text  # the default is left out
    assert "  # REAL[1000]" in text


def test_source_yaml_without_slot() -> None:
    entry = yaml.safe_load(source_yaml(TAGS, {}, "::1", 2222, None))["sources"][0]
    assert [entry[k] for k in ("name", "host", "port", "slot")] == ["logix", "::1", 2222, None]
