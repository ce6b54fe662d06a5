"""The simple CSV importer and the import command: every bad row listed with its line, the file
refused; good files become YAML that validates."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.importers import detect_format, import_file
from gateway.importers.command import run
from gateway.importers.simple_csv import guess_protocol, import_csv

DATA = Path(__file__).parent.parent / "data"


def write(tmp_path: Path, text: str, name: str = "tags.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def command(path: Path, out_dir: Path, **kw: Any) -> tuple[int, str, str]:
    """Run the import command: its exit code, the YAML it wrote and what it said on stderr."""
    err, out = io.StringIO(), out_dir / "out.yaml"
    out.unlink(missing_ok=True)
    code = run(str(path), output=str(out), err=err, **kw)
    return code, out.read_text() if out.exists() else "", err.getvalue()


def test_every_bad_row_is_listed_with_its_line_and_nothing_is_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name,address,type,scan,raw_low,raw_high,eng_low,eng_high,description\n"  # line 1
        "ok,holding:0,uint16,,,,,,\n"  # 2
        "\n"  # 3: blank, skipped
        "# a comment line, skipped\n"  # 4
        "wrong_type,holding:1,int17,,,,,,\n"  # 5
        'multi,holding:2,int99,,,,,,"two\nlines"\n'  # 6-7: one record, at line 6
        "no_address,,uint16,,,,,,\n"  # 8
        "slow,holding:3,uint16,soon,,,,,\n"  # 9
        "half_scaled,holding:4,uint16,,0,100,,,\n"  # 10
        "bad_number,holding:5,uint16,,0,x,0,1,\n"  # 11
        "bit_float,holding:6.3,float32,,,,,,\n",  # 12
    )
    code, written, err = command(path, tmp_path)
    assert code == 1
    assert written == ""
    lines = err.splitlines()
    file = str(path)
    expected = [
        f"{file}:5: wrong_type: type: Input should be",
        f"{file}:6: multi: type: Input should be",
        f"{file}:8: no_address: address: empty",
        f"{file}:9: slow: scan: 'soon' is not a duration",
        f"{file}:10: half_scaled: scaling needs all of raw_low, raw_high, eng_low, eng_high",
        f"{file}:11: bad_number: raw_high: 'x' is not a number",
        f"{file}:12: bit_float: tag: holding:6.3 holds one bit: type must be bool, not float32",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in lines), (start, lines)
    assert lines[-1] == f"{file}: not imported: {len(expected)} problem(s)"
    assert not any(":2:" in line or ":7:" in line for line in lines)


def test_unknown_columns_are_refused_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "name,adress,unit\nx,holding:0,degC\n")
    result = import_csv(path)
    messages = [(p.line, p.message) for p in result.errors]
    assert (1, "unknown column 'adress' (did you mean address?)") in messages
    assert (1, "unknown column 'unit' (did you mean units?)") in messages
    assert (1, "no address column") in messages


def test_a_good_file_becomes_yaml_that_validates(tmp_path: Path) -> None:
    code, written, err = command(DATA / "press1.csv", tmp_path)
    assert code == 0, err
    assert err.endswith("press1.csv: 24 tag(s) imported\n")
    document = yaml.safe_load(written)
    tags = document["tags"]
    assert tags[1] == {
        "name": "fill_level",
        "address": "40002",
        "type": "uint16",
        "scale": {"raw": [0, 10000], "eng": [0, 100], "clamp": True},
        "units": "%",
        "scan": "500ms",
        "deadband": 0.5,
    }
    assert tags[3] == {
        "name": "sine",
        "address": "holding:3",
        "type": "int16",
        "multiplier": 0.01,
        "offset": 50,
    }
    assert "  # sine, sent as (value - 50) x 100" in written  # descriptions are comments
    assert {t["name"]: t.get("unit_id") for t in tags}["unit2_count"] == 2


def test_a_whole_source_entry_takes_the_common_scan(tmp_path: Path) -> None:
    rows = ["a,holding:0,1s", "b,holding:1,1s", "c,holding:2,250ms", "d,holding:3,", "e,40005,1s"]
    path = write(tmp_path, "name,address,scan\n" + "\n".join(rows) + "\n")
    code, written, err = command(path, tmp_path, source="press2", host="10.0.0.9", port=502)
    assert code == 0, err
    [entry] = yaml.safe_load(written)["sources"]
    assert {k: v for k, v in entry.items() if k != "tags"} == {
        "name": "press2",
        "protocol": "modbus",
        "host": "10.0.0.9",
        "port": 502,
        "scan": "1s",
    }
    assert [t.get("scan") for t in entry["tags"]] == [None, None, "250ms", None, None]
    # A common scan other than the default would change the tags that have none: kept per tag.
    path = write(tmp_path, "name,address,scan\na,holding:0,250ms\nb,holding:1,250ms\nc,40003,\n")
    code, written, err = command(path, tmp_path, source="press2", host="10.0.0.9")
    [entry] = yaml.safe_load(written)["sources"]
    assert "scan" not in entry
    assert [t.get("scan") for t in entry["tags"]] == ["250ms", "250ms", None]


def test_names_are_made_topic_safe_and_unique_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "name,address\nOven Temp,holding:0\noven_temp,holding:1\n")
    result = import_csv(path)
    assert [t.name for t in result.tags] == ["Oven_Temp", "oven_temp_2"]
    assert [(w.line, w.message) for w in result.warnings] == [
        (2, "'Oven Temp' is not a topic-safe name: named Oven_Temp"),
        (3, "oven_temp: line 2 has that name too; named oven_temp_2"),
    ]


def test_the_protocol_follows_the_addresses(tmp_path: Path) -> None:
    assert guess_protocol(["holding:1", "40001", "coil:3"]) == "modbus"
    assert guess_protocol(["nsu=urn:plant;s=Oven.Temp", "ns=2;i=5"]) == "opcua"
    assert guess_protocol(["Program:Main.Count", "Recipe.Speed", "40001"]) == "logix"
    path = write(
        tmp_path,
        "name,address,units\nzone1,nsu=urn:plantgate:sim;s=Oven.Zone1.Temp,degC\n",
    )
    code, written, err = command(path, tmp_path)
    assert code == 0, err
    assert yaml.safe_load(written)["tags"] == [
        {"name": "zone1", "node": "nsu=urn:plantgate:sim;s=Oven.Zone1.Temp", "units": "degC"}
    ]
    logix = write(tmp_path, "name,address,type\nt,Trend,REAL[1000]\nb,Bad,DOUBLE\n", "l.csv")
    result = import_csv(logix)
    assert result.protocol == "logix"
    [error] = result.errors
    assert (error.line, error.message.split(": ")[:2]) == (3, ["b", "type"])


def test_spreadsheet_files_in_windows_1252_with_semicolons_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "name;address;units\ntemp;holding:0;°C\n", encoding="cp1252")
    result = import_csv(path)
    assert [(t.name, t.units) for t in result.tags] == [("temp", "°C")]
    assert [w.message for w in result.warnings] == ["not UTF-8: read as Windows-1252"]


def test_formats_are_told_apart_by_extension_and_header(tmp_path: Path) -> None:
    assert detect_format(DATA / "line1.L5X") == "l5x"
    assert detect_format(DATA / "press1_kepware.csv") == "kepware"
    assert detect_format(DATA / "press1.csv") == "csv"
    assert import_file(DATA / "press1_kepware.csv").protocol == "modbus"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "logix"}, "a kepware file holds modbus tags, not logix"),
        ({"source": "press1"}, "--source needs --host"),
    ],
)
def test_command_line_mistakes_are_refused(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    path = tmp_path / "kepware.csv"
    path.write_bytes((DATA / "press1_kepware.csv").read_bytes())
    code, written, err = command(path, tmp_path, **kwargs)
    assert (code, written) == (1, "")
    assert message in err


def test_an_unreadable_file_exits_non_zero(tmp_path: Path) -> None:
    err = io.StringIO()
    assert run(str(tmp_path / "missing.csv"), "csv", err=err) == 1
    assert "missing.csv: cannot read:" in err.getvalue()
    empty = write(tmp_path, "")
    assert run(str(empty), "csv", err=err) == 1
    assert "the file has no header row" in err.getvalue()
