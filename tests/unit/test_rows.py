"""A stored row: neutral columns that give back exactly what was stored, sealed by a checksum."""

from __future__ import annotations

import math

import pytest

from buffer.rows import RowCorrupt, TagSets, decode, encode
from gateway.models import Batch, Quality, Reading, Value

VALUES: list[list[Value]] = [
    [1.5, -0.0, 1e16, 0.1 + 0.2, math.inf],  # all floats: float64 column
    [1, -2, 2**63 - 1, -(2**63)],  # all int64
    [2**70, 1],  # beyond int64: JSON
    [True, 2, 3.5, None],  # mixed: JSON (a bool is not a number here)
    ["text", 'quote " ✓', "tab\tnewline\n", [1, 2.5, None], {"a": 1}],
]


def scan(values: list[Value], qualities: list[Quality] | None = None, ts: int = 5000) -> Batch:
    tags = [f"t{i}" for i in range(len(values))]
    marks = qualities or [Quality.GOOD] * len(values)
    return Batch.of_columns("press1", ts, tags, values, marks, [ts] * len(values), 41)


@pytest.mark.parametrize("values", VALUES, ids=["floats", "ints", "bigint", "mixed", "strings"])
def test_a_row_gives_back_exactly_what_was_stored(values: list[Value]) -> None:
    batch = scan(values)
    stored = decode(7, encode(batch))
    assert stored.readings == batch.readings
    assert [type(v) for v in stored.values] == [type(v) for v in values]
    assert (stored.id, stored.source, stored.ts) == (7, "press1", 5000)
    assert stored.seqs == range(41, 41 + len(values))


def test_nan_is_kept_in_every_kind_of_column() -> None:
    for values in ([1.0, math.nan], [1, "x", math.nan]):
        stored = decode(1, encode(scan(values)))  # type: ignore[arg-type]
        assert math.isnan(stored.values[-1])  # type: ignore[arg-type]


def test_qualities_and_device_timestamps_are_kept() -> None:
    readings = [
        Reading("a", 1.0, Quality.GOOD, 1000, 1),
        Reading("b", None, Quality.BAD, 1001, 2),
        Reading("c", 2.0, Quality.UNCERTAIN, 999, 3),
    ]
    batch = Batch("oven", 1000, readings)
    row = encode(batch)
    assert row[8] is not None  # per-reading stamps stored only when they differ
    assert decode(1, row).readings == readings
    plain = encode(scan([1.0, 2.0]))
    assert plain[7] == b""  # all good: no qualities stored
    assert plain[8] is None  # all at the scan's time: no stamps stored


def test_seqs_must_be_consecutive_and_names_free_of_newlines() -> None:
    gap = Batch("s", 0, [Reading("a", 1, Quality.GOOD, 0, 1), Reading("b", 1, Quality.GOOD, 0, 3)])
    with pytest.raises(ValueError, match="consecutive"):
        encode(gap)
    with pytest.raises(ValueError, match="newline"):
        encode(Batch("s", 0, [Reading("a\nb", 1, Quality.GOOD, 0, 1)]))


@pytest.mark.parametrize("column", [0, 1, 2, 3, 4, 5, 6, 7, 8])
def test_damage_to_any_column_is_caught(column: int) -> None:
    readings = [Reading("a", 1.5, Quality.BAD, 7, 1), Reading("b", 2.5, Quality.GOOD, 8, 2)]
    row = list(encode(Batch("src", 5, readings)))
    value = row[column]
    if isinstance(value, bytes):
        damaged: object = bytes([value[0] ^ 0x20]) + value[1:]
    elif isinstance(value, str):
        damaged = value + "x"
    else:
        damaged = value + 1  # type: ignore[operator]
    row[column] = damaged
    with pytest.raises(RowCorrupt):
        decode(3, tuple(row))


def test_garbage_that_matches_no_checksum_is_refused_not_raised_through() -> None:
    row = list(encode(scan(["x", 1])))
    row[6] = b"\xff\xfe not json"
    with pytest.raises(RowCorrupt):
        decode(1, tuple(row))


def test_tag_sets_are_shared_and_compared_by_content() -> None:
    sets = TagSets()
    first = decode(1, encode(scan([1.0, 2.0])), sets)
    second = decode(2, encode(scan([3.0, 4.0])), sets)
    assert first.tags is second.tags
    assert first.tags == decode(3, encode(scan([5.0, 6.0]))).tags  # another object, equal
    assert {first.tags: "x"}[decode(4, encode(scan([7.0, 8.0]))).tags] == "x"
