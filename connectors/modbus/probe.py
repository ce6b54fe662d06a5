"""``plantgate probe``: read raw registers once and show every plausible interpretation."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.modbus.address import parse_address
from connectors.modbus.codec import DataType, decode
from connectors.modbus.connector import exception_text

ORDERS_32 = ("ABCD", "CDAB", "BADC", "DCBA")
ORDERS_64 = ("ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA")
TYPES: tuple[tuple[DataType, int], ...] = (
    ("int16", 1),
    ("uint16", 1),
    ("int32", 2),
    ("uint32", 2),
    ("float32", 2),
    ("int64", 4),
    ("uint64", 4),
    ("float64", 4),
)


def parse_target(url: str) -> tuple[str, int]:
    """``modbus://HOST[:PORT]`` to host and port (502 by default)."""
    parts = urlsplit(url if "://" in url else f"modbus://{url}")
    if parts.scheme != "modbus" or not parts.hostname:
        raise ValueError(f"{url!r}: use modbus://HOST[:PORT]")
    return parts.hostname, parts.port or 502


def _show(value: float | int | str) -> str:
    if isinstance(value, float):
        if (
            math.isnan(value)
            or math.isinf(value)
            or (value != 0 and not 1e-6 <= abs(value) <= 1e12)
        ):
            return f"({value:.3g})"  # implausible: shown, but marked
        return f"{value:.7g}"
    return str(value)


def interpretations(registers: list[int]) -> str:
    """A table: each type (rows) in each byte order (columns), from the first register on."""
    header = f"{'':<9}" + "".join(
        f"{o + ' / ' + o64:<28}" for o, o64 in zip(ORDERS_32, ORDERS_64, strict=True)
    )
    lines = [header.rstrip()]
    for data_type, width in TYPES:
        cells = []
        for order in ORDERS_32:
            if len(registers) < width:
                cells.append("-")
                continue
            cells.append(_show(decode(registers[:width], data_type, order)))  # type: ignore[arg-type]
        lines.append((f"{data_type:<9}" + "".join(f"{c:<28}" for c in cells)).rstrip())
    text_ab = decode(registers, "string", "ABCD")
    text_ba = decode(registers, "string", "BADC")
    lines.append(f"{'string':<9}{text_ab!r:<28}{'(byte swap) ' + repr(text_ba)}")
    return "\n".join(lines)


async def probe(url: str, address: str, unit: int = 1, count: int = 4, timeout: float = 3.0) -> str:
    """Read ``count`` registers (or bits) at ``address`` and describe them."""
    host, port = parse_target(url)
    where = parse_address(address)
    client = AsyncModbusTcpClient(host, port=port, timeout=timeout, retries=0, reconnect_delay=0)
    if not await client.connect():
        raise ConnectionError(f"cannot connect to {host}:{port}")
    try:
        read = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[where.table]
        response = await read(where.offset, count=count, device_id=unit)
    except ModbusException as exc:
        raise ConnectionError(f"{host}:{port}: {exc}") from exc
    finally:
        client.close()
    span = f"{where.table}:{where.offset}..{where.offset + count - 1}"
    head = f"{span} on {host}:{port}, unit {unit}"
    if response.isError():
        return f"{head}: the device answered {exception_text(response)}"
    if where.is_bit_table:
        bits = " ".join("1" if b else "0" for b in response.bits[:count])
        return f"{head}\nbits: {bits}"
    registers = list(response.registers)
    hex_words = " ".join(f"{r:04X}" for r in registers)
    dec_words = " ".join(str(r) for r in registers)
    bits = " ".join(f"{r:016b}" for r in registers[:2]) + (" ..." if count > 2 else "")
    return f"{head}\nhex:   {hex_words}\ndec:   {dec_words}\nbits:  {bits}\n\n" + interpretations(
        registers
    )
