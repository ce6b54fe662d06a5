"""Kepware's CSV export: its Modbus addresses and data types in plantgate's words; what has no
equivalent is warned about by row; what is wrong refuses the file, every row listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.importers.kepware import import_kepware
from gateway.importers.model import ImportResult

HEADER = (
    '"Tag Name","Address","Data Type","Respect Data Type","Client Access","Scan Rate",'
    '"Scaling","Raw Low","Raw High","Scaled Low","Scaled High","Scaled Data Type",'
    '"Clamp Low","Clamp High","Eng Units","Description","Negate Value"\n'
)


def row(
    name: str,
    address: str,
    data_type: str = "Word",
    scan: str = "1000",
    scaling: str = "",
    ends: tuple[str, str, str, str] = ("", "", "", ""),
    scaled_type: str = "",
    clamps: tuple[str, str] = ("", ""),
    units: str = "",
    description: str = "",
    negate: str = "",
) -> str:
    cells = [name, address, data_type, "1", "R/W", scan, scaling, *ends, scaled_type]
    cells += [*clamps, units, description, negate]
    return ",".join(f'"{c}"' for c in cells) + "\n"


def kepware(tmp_path: Path, *rows: str, header: str = HEADER, **kw: str) -> ImportResult:
    path = tmp_path / "export.csv"
    path.write_text(header + "".join(rows))
    return import_kepware(path, **kw)


@pytest.mark.parametrize(
    ("address", "data_type", "expected"),
    [
        ("400001", "Word", "holding:0"),  # six digits
        ("40001", "Word", "holding:0"),  # five
        ("4001", "Word", "holding:0"),  # padded forms: all item 1
        ("401", "Word", "holding:0"),
        ("41", "Word", "holding:0"),
        ("410001", "Word", "holding:10000"),
        ("465536", "Word", "holding:65535"),
        ("300005", "Short", "input:4"),
        ("000001", "Boolean", "coil:0"),
        ("01", "Boolean", "coil:0"),
        ("100010", "Boolean", "discrete:9"),
        ("40001.5", "Boolean", "holding:0.5"),  # zero-based bits, the driver's default
        ("400010.15", "Boolean", "holding:9.15"),
    ],
)
def test_modbus_addresses_map_to_plantgates(
    tmp_path: Path, address: str, data_type: str, expected: str
) -> None:
    result = kepware(tmp_path, row("t", address, data_type))
    assert result.errors == []
    [tag] = result.tags
    assert tag.address == expected


@pytest.mark.parametrize(
    ("data_type", "expected"),
    [
        ("Short", "int16"),
        ("Word", "uint16"),
        ("Long", "int32"),
        ("DWord", "uint32"),
        ("LLong", "int64"),
        ("QWord", "uint64"),
        ("Float", "float32"),
        ("Double", "float64"),
        ("Default", None),
        ("", None),
    ],
)
def test_data_types_map_to_plantgates(tmp_path: Path, data_type: str, expected: str | None) -> None:
    [tag] = kepware(tmp_path, row("t", "40001", data_type), byte_order="ABCD").tags
    assert tag.type == expected


def test_strings_say_their_length_in_bytes_and_their_byte_order(tmp_path: Path) -> None:
    result = kepware(
        tmp_path,
        row("hi", "40041.16H", "String"),
        row("lo", "300101.10l", "String"),
        row("odd", "40201.5H", "String"),
    )
    hi, lo, odd = result.tags
    assert (hi.address, hi.length, hi.byte_order) == ("holding:40", 8, None)
    assert (lo.address, lo.length, lo.byte_order) == ("input:100", 5, "BADC")
    assert odd.length == 3
    assert [(w.line, w.message) for w in result.warnings] == [
        (4, "odd: a 5-byte string is read as 6 characters")
    ]


def test_scaling_clamps_negation_units_and_scan_rate(tmp_path: Path) -> None:
    result = kepware(
        tmp_path,
        row("level", "40002", scaling="Linear", ends=("0", "27648", "0", "150"),
            scaled_type="Double", clamps=("1", "1"), units="m3", scan="250",
            description="Tank 1 level"),
        row("loss", "40003", "Short", scaling="Linear", ends=("0", "1000", "0", "100"),
            scaled_type="Float", negate="1"),
        row("minus", "40004", "Short", negate="1"),
        row("half", "40005", scaling="Linear", ends=("0", "10", "0", "1"), clamps=("1", "0")),
        row("rounded", "40006", scaling="Linear", ends=("0", "10", "0", "1"), scaled_type="Word"),
        row("every_scan", "40007", scan="0"),
    )  # fmt: skip
    assert result.errors == []
    level, loss, minus, half, rounded, every_scan = result.tags
    assert level.scale is not None
    assert (level.scale.raw, level.scale.eng, level.scale.clamp) == ((0, 27648), (0, 150), True)
    assert (level.units, level.scan, level.description) == ("m3", 0.25, "Tank 1 level")
    assert loss.scale is not None
    assert loss.scale.eng == (-0.0, -100)  # Negate Value: the scaled value negated
    assert (minus.scale, minus.multiplier) == (None, -1.0)
    assert half.scale is not None
    assert half.scale.clamp is False
    assert rounded.scale is not None
    assert every_scan.scan is None  # 0 ms: the source's scan
    assert [(w.line, w.message) for w in result.warnings] == [
        (5, "half: one end clamped; plantgate clamps both ends or neither: not clamped"),
        (6, "rounded: Kepware rounds the scaled value to Word; plantgate publishes it with "
            "its decimals"),
    ]  # fmt: skip


def test_what_has_no_equivalent_is_warned_about_by_row_and_left_out(tmp_path: Path) -> None:
    result = kepware(
        tmp_path,
        row("bcd", "40001", "BCD"),
        row("lbcd", "40002", "LBCD"),
        row("char", "40003", "Char"),
        row("byte", "40004", "Byte"),
        row("date", "40005", "Date"),
        row("array", "40006[10]", "Word"),
        row("typed_array", "40020", "Float Array"),
        row("root", "40030", scaling="Square Root", ends=("0", "100", "0", "10")),
        row("kept", "40040"),
    )
    assert [t.name for t in result.tags] == ["kept"]
    assert result.errors == []
    warned = {w.line: w.message for w in result.warnings}
    assert sorted(warned) == list(range(2, 10))
    assert (
        warned[2]
        == "bcd: not imported: BCD (binary-coded decimal) values are not decoded by plantgate"
    )
    assert warned[7] == "array: not imported: arrays (40006[10]) have no plantgate equivalent"
    assert warned[9] == "root: not imported: plantgate has no square-root scaling"


def test_bad_rows_are_errors_each_with_its_line(tmp_path: Path) -> None:
    result = kepware(
        tmp_path,
        row("ok", "40001"),
        row("", "40002"),
        row("no_table", "50001"),
        row("hex", "H4000A"),
        row("too_far", "465537"),
        row("zero", "400000"),
        row("odd_type", "40003", "Decimal"),
        row("string_no_length", "40004", "String"),
        row("length_not_string", "40005.10H", "Word"),
        row("bool_register", "40006", "Boolean"),
        row("word_coil", "000001", "Word"),
        row("scan", "40007", scan="fast"),
        row("scale", "40008", scaling="Linear", ends=("0", "x", "0", "1")),
        row("mode", "40009", scaling="Log"),
    )
    assert [t.name for t in result.tags] == ["ok"]
    errors = {e.line: e.message for e in result.errors}
    assert sorted(errors) == list(range(3, 16))
    assert errors[3] == "(no name): Tag Name is empty"
    assert errors[4] == "no_table: Address '50001' is not a Kepware Modbus address"
    assert errors[6] == "too_far: Address 465537: items are numbered 1 to 65536"
    assert errors[8] == "odd_type: Data Type 'Decimal' is not a Kepware data type"
    assert errors[9].startswith("string_no_length: a String address says its length")
    assert errors[11].startswith("bool_register: tag: type bool on a register needs a bit")
    assert errors[12].startswith("word_coil: tag: coil:0 holds one bit")
    assert errors[13] == "scan: Scan Rate 'fast' is not a number of milliseconds"
    assert errors[14] == "scale: Raw High 'x' is not a number"


def test_headers_are_matched_loosely_and_unknown_ones_warned_about(tmp_path: Path) -> None:
    header = "Tag Name;Address;Data Type;Eng. Units;Colour\n"
    result = kepware(tmp_path, "T1;40001;Float;degC;red\n", header=header, byte_order="CDAB")
    [tag] = result.tags
    assert (tag.units, tag.type) == ("degC", "float32")
    assert result.byte_order == "CDAB"
    assert [(w.line, w.message) for w in result.warnings] == [
        (1, "column 'Colour' is not a Kepware tag column plantgate knows: ignored")
    ]
    missing = kepware(tmp_path, "a,b\n", header="Name,Addr\n")
    assert [(e.line, e.message) for e in missing.errors] == [
        (1, "no 'Tag Name' column: is this a Kepware tag export?"),
        (1, "no 'Address' column: is this a Kepware tag export?"),
    ]


def test_the_word_order_of_wide_values_is_a_warning_unless_given(tmp_path: Path) -> None:
    rows = (row("f", "40001", "Float"), row("w", "40003", "Word"))
    warned = kepware(tmp_path, *rows)
    assert [w.message for w in warned.warnings] == [
        "32- and 64-bit tags: Kepware keeps their word order in the device's settings, not in "
        "the export; set the source's byte_order (--byte-order) to match them"
    ]
    assert kepware(tmp_path, *rows, byte_order="CDAB").warnings == []
    assert kepware(tmp_path, rows[1]).warnings == []  # 16-bit values have no word order
