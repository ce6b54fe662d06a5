"""Request coalescing: the fewest requests within protocol limits."""

from __future__ import annotations

from typing import Any

from connectors.modbus.config import ModbusTag
from connectors.modbus.plan import plan_reads


def tag(address: str, **kw: Any) -> ModbusTag:
    return ModbusTag.model_validate(
        {"name": address.replace(":", "_").replace(".", "_"), "address": address, **kw}
    )


def blocks(
    tags: list[ModbusTag], max_gap: int = 0, max_registers: int = 125
) -> list[tuple[str, int, int]]:
    return [
        (r.table, r.start, r.count)
        for r in plan_reads(tags, unit_id=1, max_registers=max_registers, max_gap=max_gap)
    ]


def test_adjacent_tags_share_one_request() -> None:
    tags = [
        tag("holding:0"),
        tag("holding:1"),
        tag("holding:2", type="float32"),
        tag("holding:4", type="uint64"),
    ]
    assert blocks(tags) == [("holding", 0, 8)]


def test_gaps_split_unless_max_gap_allows() -> None:
    tags = [tag("holding:0"), tag("holding:5")]
    assert blocks(tags) == [("holding", 0, 1), ("holding", 5, 1)]
    assert blocks(tags, max_gap=4) == [("holding", 0, 6)]


def test_tables_never_mix() -> None:
    tags = [tag("holding:0"), tag("input:1"), tag("coil:0"), tag("discrete:0")]
    assert sorted(blocks(tags)) == [
        ("coil", 0, 1),
        ("discrete", 0, 1),
        ("holding", 0, 1),
        ("input", 1, 1),
    ]


def test_125_register_limit() -> None:
    tags = [tag(f"holding:{i * 2}", type="float32") for i in range(100)]  # 200 registers
    assert blocks(tags) == [("holding", 0, 124), ("holding", 124, 76)]
    assert blocks(tags, max_registers=50) == [("holding", i, 50) for i in range(0, 200, 50)]


def test_a_value_never_straddles_two_requests() -> None:
    tags = [tag("holding:0", type="string", length=124), tag("holding:124", type="float32")]
    assert blocks(tags) == [("holding", 0, 124), ("holding", 124, 2)]


def test_bits_of_one_register_share_it() -> None:
    tags = [tag("holding:6.0"), tag("holding:6.3"), tag("holding:7")]
    assert blocks(tags) == [("holding", 6, 2)]


def test_2000_bit_limit_for_coils() -> None:
    tags = [tag(f"coil:{i}") for i in range(2500)]
    assert blocks(tags) == [("coil", 0, 2000), ("coil", 2000, 500)]


def test_members_remember_their_index() -> None:
    tags = [tag("holding:10"), tag("holding:0"), tag("input:0")]
    plan = plan_reads(tags, unit_id=1, max_registers=125, max_gap=10)
    holding = next(r for r in plan if r.table == "holding")
    assert [i for i, _ in holding.members] == [1, 0]


def test_units_behind_one_gateway_never_mix() -> None:
    tags = [
        tag("holding:0"),
        tag("holding:1", unit_id=2),
        tag("holding:2"),
        tag("holding:3", unit_id=1),
    ]
    plan = plan_reads(tags, unit_id=1, max_registers=125, max_gap=0)
    assert [(r.unit_id, r.start, r.count) for r in plan] == [(1, 0, 1), (1, 2, 2), (2, 1, 1)]


def test_scattered_tags_make_the_expected_number_of_requests() -> None:
    # 1,000 tags in 10 clusters of 100 adjacent registers, clusters 1,000 registers apart.
    tags = [tag(f"holding:{c * 1000 + i}") for c in range(10) for i in range(100)]
    assert len(plan_reads(tags, unit_id=1, max_registers=125, max_gap=0)) == 10
    # Every other register: a gap of 1 splits everything unless max_gap allows it.
    sparse = [tag(f"holding:{2 * i}") for i in range(1000)]
    assert len(plan_reads(sparse, unit_id=1, max_registers=125, max_gap=0)) == 1000
    assert len(plan_reads(sparse, unit_id=1, max_registers=125, max_gap=1)) == 16  # 63 tags each
