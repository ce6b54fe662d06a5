"""Studio 5000 L5X exports: tags with their declared types, UDTs member by member, what cannot
be typed said by name, what is wrong refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.importers.l5x import MAX_LEAVES, gateway_name, import_l5x
from gateway.importers.model import ImportResult

DATA = Path(__file__).parent.parent / "data"


def l5x(tmp_path: Path, body: str, data_types: str = "", aois: str = "") -> ImportResult:
    text = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<RSLogix5000Content SchemaRevision="1.0" TargetType="Controller">\n'
        '<Controller Use="Target" Name="Test" ProcessorType="1756-L83E">\n'
        f"<DataTypes>\n{data_types}</DataTypes>\n"
        f"<AddOnInstructionDefinitions>\n{aois}</AddOnInstructionDefinitions>\n"
        f"{body}"
        "</Controller>\n</RSLogix5000Content>\n"
    )
    path = tmp_path / "project.L5X"
    path.write_text(text)
    return import_l5x(path)


def line_of(tmp_path: Path, marker: str) -> int:
    lines = (tmp_path / "project.L5X").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if marker in line)


def tags(*lines: str) -> str:
    return "<Tags>\n" + "\n".join(lines) + "\n</Tags>\n"


def test_the_sample_export_imports_every_tag_typed_and_warns_of_nothing() -> None:
    result = import_l5x(DATA / "line1.L5X")
    assert (result.errors, result.warnings) == ([], [])
    typed = {t.address: t.type for t in result.tags}
    assert len(typed) == 68
    assert all(typed.values())
    assert typed["IntMatrix"] == "INT[4,5]"
    assert typed["RealCube"] == "REAL[2,3,4]"
    assert typed["Messages"] == "STRING[3]"
    assert typed["CurrentRecipe.Steps"] == "INT[4]"
    assert typed["Recipes[2].Limits.High"] == "REAL"
    assert typed["Line1.Faulted"] == "BOOL"  # a BIT member in the export
    assert typed["Program:Packaging.Enabled"] == "BOOL"
    assert "Line1.ZZZZZZZZZZMachineSta0" not in typed  # hidden members stay hidden
    names = {t.address: t.name for t in result.tags}
    assert names["Recipes[2].Limits.High"] == "Recipes_2.Limits.High"
    assert names["Program:MainProgram.BottleCount"] == "MainProgram.BottleCount"
    described = {t.name: t.description for t in result.tags}
    assert described["TestDint"] == "A DINT that never moves"
    assert described["Line1.Speed"] == "Bottles per minute"  # a member's own description


def test_predefined_structures_and_add_on_instructions_expand_to_their_values(
    tmp_path: Path,
) -> None:
    aoi = (
        '<AddOnInstructionDefinition Name="Valve">\n<Parameters>\n'
        '<Parameter Name="EnableIn" DataType="BOOL" Usage="Input" ExternalAccess="Read Only"/>\n'
        '<Parameter Name="Open" DataType="BOOL" Usage="Output" ExternalAccess="Read Only"/>\n'
        '<Parameter Name="Cmd" DataType="DINT" Usage="InOut"/>\n'
        "</Parameters>\n<LocalTags>\n"
        '<LocalTag Name="Travel" DataType="REAL" ExternalAccess="None"/>\n'
        '<LocalTag Name="Stroke" DataType="REAL" ExternalAccess="Read/Write"/>\n'
        "</LocalTags>\n</AddOnInstructionDefinition>\n"
    )
    result = l5x(
        tmp_path,
        tags(
            '<Tag Name="Dwell" TagType="Base" DataType="TIMER"/>',
            '<Tag Name="Cases" TagType="Base" DataType="COUNTER"/>',
            '<Tag Name="V101" TagType="Base" DataType="Valve"/>',
        ),
        aois=aoi,
    )
    assert result.errors == []
    assert [(t.address, t.type) for t in result.tags] == [
        ("Dwell.PRE", "DINT"), ("Dwell.ACC", "DINT"),
        ("Dwell.EN", "BOOL"), ("Dwell.TT", "BOOL"), ("Dwell.DN", "BOOL"),
        ("Cases.PRE", "DINT"), ("Cases.ACC", "DINT"), ("Cases.CU", "BOOL"),
        ("Cases.CD", "BOOL"), ("Cases.DN", "BOOL"), ("Cases.OV", "BOOL"), ("Cases.UN", "BOOL"),
        ("V101.EnableIn", "BOOL"), ("V101.Open", "BOOL"), ("V101.Stroke", "REAL"),
    ]  # fmt: skip
    [warning] = result.warnings  # InOut parameters are references: no value, no warning
    assert warning.message == (
        "V101.Travel: not imported: External Access None (not readable over CIP)"
    )


def test_what_cannot_be_typed_is_imported_untyped_and_said_by_name(tmp_path: Path) -> None:
    string20 = (
        '<DataType Name="STRING_20" Family="StringFamily" Class="User">\n<Members>\n'
        '<Member Name="LEN" DataType="DINT" Dimension="0"/>\n'
        '<Member Name="DATA" DataType="SINT" Dimension="20"/>\n</Members>\n</DataType>\n'
    )
    result = l5x(
        tmp_path,
        tags(
            '<Tag Name="Alarms" TagType="Base" DataType="BOOL" Dimensions="64"/>',
            '<Tag Name="Short" TagType="Base" DataType="STRING_20"/>',
            '<Tag Name="Loop1" TagType="Base" DataType="PID"/>',
            '<Tag Name="StartPB" TagType="Alias" AliasFor="Local:1:I.Data.0"/>',
            '<Tag Name="Secret" TagType="Base" DataType="DINT" ExternalAccess="None"/>',
            '<Tag Name="Ok" TagType="Base" DataType="DINT"/>',
        ),
        data_types=string20,
    )
    assert result.errors == []
    assert [(t.address, t.type) for t in result.tags] == [
        ("Alarms", None), ("Short", None), ("Loop1", None), ("StartPB", None), ("Ok", "DINT"),
    ]  # fmt: skip
    warned = {w.line: w.message for w in result.warnings}
    upload = ": its source uploads the controller's tag list to read it"
    assert warned == {
        line_of(tmp_path, '"Alarms"'): f"Alarms: imported without a type (BOOL arrays travel "
        f"as DWORDs){upload}",
        line_of(tmp_path, '"Short"'): f"Short: imported without a type (STRING_20 is a "
        f"custom string type){upload}",
        line_of(tmp_path, '"Loop1"'): f"Loop1: imported without a type (type PID is not "
        f"described in the file){upload}",
        line_of(tmp_path, '"StartPB"'): f"StartPB: imported without a type (an alias for "
        f"Local:1:I.Data.0){upload}",
        line_of(tmp_path, '"Secret"'): "Secret: not imported: External Access None (not "
        "readable over CIP)",
    }


def test_a_structure_too_big_to_expand_is_imported_whole(tmp_path: Path) -> None:
    point = (
        '<DataType Name="Point" Family="NoFamily" Class="User">\n<Members>\n'
        '<Member Name="X" DataType="REAL" Dimension="0"/>\n'
        '<Member Name="Y" DataType="REAL" Dimension="0"/>\n</Members>\n</DataType>\n'
    )
    elements = MAX_LEAVES // 2 + 1
    result = l5x(
        tmp_path,
        tags(f'<Tag Name="Path" TagType="Base" DataType="Point" Dimensions="{elements}"/>'),
        data_types=point,
    )
    assert [(t.address, t.type) for t in result.tags] == [("Path", None)]
    assert f"more than {MAX_LEAVES} values: imported whole" in result.warnings[0].message


def test_broken_tags_are_errors_with_their_lines(tmp_path: Path) -> None:
    result = l5x(
        tmp_path,
        tags(
            '<Tag TagType="Base" DataType="DINT"/>',
            '<Tag Name="NoType" TagType="Base"/>',
            '<Tag Name="BadDims" TagType="Base" DataType="DINT" Dimensions="x"/>',
            '<Tag Name="9Lives" TagType="Base" DataType="DINT"/>',
            '<Tag Name="Good" TagType="Base" DataType="DINT"/>',
        ),
    )
    errors = [(e.line, e.message) for e in result.errors]
    assert errors[:3] == [
        (line_of(tmp_path, '<Tag TagType="Base"'), "a Tag without a Name"),
        (line_of(tmp_path, '"NoType"'), "NoType: no DataType"),
        (line_of(tmp_path, '"BadDims"'), "BadDims: Dimensions 'x' are not numbers"),
    ]
    line, message = errors[3]
    assert line == line_of(tmp_path, '"9Lives"')
    assert message.startswith("9Lives: address: ")
    assert [t.name for t in result.tags] == ["Good"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("<RSLogix5000Content>\n<Controller>\n</RSLogix5000Content>\n", 3, "not well-formed"),
        ("<Project>\n</Project>\n", 1, "not a Studio 5000 export"),
        (
            '<!DOCTYPE lol [<!ENTITY lol "lol">]>\n<RSLogix5000Content/>\n',
            1,
            "a DOCTYPE is not expected",
        ),
        ("", 1, "not well-formed"),
    ],
)
def test_files_that_are_not_exports_are_refused_with_a_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.L5X"
    path.write_text(text)
    result = import_l5x(path)
    [error] = result.errors
    assert error.line == line
    assert message in error.message


def test_gateway_names_are_topic_safe() -> None:
    assert gateway_name("Program:Main.Count") == "Main.Count"
    assert gateway_name("Recipes[1].Limits.High") == "Recipes_1.Limits.High"
    assert gateway_name("Grid[1,2].Cell") == "Grid_1_2.Cell"
