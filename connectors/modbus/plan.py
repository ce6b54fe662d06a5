"""Group a scan's tags into the fewest Modbus read requests within protocol limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connectors.modbus.address import Table
from connectors.modbus.config import MAX_BITS, ModbusTag


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read request: a contiguous block of one table, and the tags it carries."""

    unit_id: int
    table: Table
    start: int
    count: int
    members: tuple[tuple[int, ModbusTag], ...]  # (index in the scan's tag list, tag)


def plan_reads(
    tags: Sequence[ModbusTag], *, unit_id: int, max_registers: int, max_gap: int
) -> list[ReadRequest]:
    """Coalesce tags into requests: same unit and table, at most ``max_gap`` unused addresses
    between them, within the protocol's 125 registers / 2,000 bits per request."""
    by_table: dict[tuple[int, Table], list[tuple[int, ModbusTag]]] = {}
    for index, tag in enumerate(tags):
        unit = unit_id if tag.unit_id is None else tag.unit_id
        by_table.setdefault((unit, tag.address.table), []).append((index, tag))
    requests: list[ReadRequest] = []
    for (unit, table), members in sorted(by_table.items()):
        limit = MAX_BITS if table in ("coil", "discrete") else max_registers
        members.sort(key=lambda m: m[1].address.offset)
        block: list[tuple[int, ModbusTag]] = []
        start = end = 0
        for index, tag in members:
            tag_start = tag.address.offset
            tag_end = tag_start + tag.register_count
            if block and tag_start <= end + max_gap and max(end, tag_end) - start <= limit:
                block.append((index, tag))
                end = max(end, tag_end)
                continue
            if block:
                requests.append(ReadRequest(unit, table, start, end - start, tuple(block)))
            block, start, end = [(index, tag)], tag_start, tag_end
        if block:
            requests.append(ReadRequest(unit, table, start, end - start, tuple(block)))
    return requests
