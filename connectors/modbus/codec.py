"""Decode and encode Modbus register words into typed values, for every byte order.

Registers travel as big-endian 16-bit words. Name a value's bytes A, B, C, D... from most
to least significant; the byte order says in which wire position each byte sits:

    float32 12.5 = 0x41480000, bytes A=41 B=48 C=00 D=00
    ABCD  registers [0x4148, 0x0000]   (big-endian, Modicon convention)
    CDAB  registers [0x0000, 0x4148]   (word swap)
    BADC  registers [0x4841, 0x0000]   (byte swap)
    DCBA  registers [0x0000, 0x4841]   (little-endian)

64-bit values use ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA; the 32-bit names are accepted
and mean the same pattern (ABCD = ABCDEFGH, CDAB = GHEFCDAB, BADC = BADCFEHG, DCBA = HGFEDCBA).
16-bit values only see the byte swap (BADC, DCBA). Strings hold two characters per
register, first character in the high byte unless the order swaps bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import cache
from operator import eq, itemgetter
from typing import Literal

ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA", "ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA"]
DataType = Literal[
    "bool",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "string",
]

BYTE_ORDERS: tuple[ByteOrder, ...] = (
    "ABCD",
    "CDAB",
    "BADC",
    "DCBA",
    "ABCDEFGH",
    "GHEFCDAB",
    "BADCFEHG",
    "HGFEDCBA",
)
_AS_64: dict[str, str] = {
    "ABCD": "ABCDEFGH",
    "CDAB": "GHEFCDAB",
    "BADC": "BADCFEHG",
    "DCBA": "HGFEDCBA",
}
_AS_32: dict[str, str] = {v: k for k, v in _AS_64.items()}
STRUCT_CODES: dict[str, str] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "int64": ">q",
    "uint64": ">Q",
    "float32": ">f",
    "float64": ">d",
}
_WIDTH: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}

Number = int | float


def register_count(data_type: DataType, length: int | None = None) -> int:
    """How many 16-bit registers a value of this type occupies."""
    if data_type == "string":
        if not length:
            raise ValueError("a string needs a length in registers")
        return length
    return _WIDTH[data_type]


def swaps_bytes(order: ByteOrder) -> bool:
    """True when the order swaps the two bytes inside each register."""
    return order in ("BADC", "DCBA", "BADCFEHG", "HGFEDCBA")


@cache
def permutation(order: str, width: int) -> tuple[int, ...]:
    """For each canonical (big-endian) byte position, the wire position that holds it."""
    if width == 2:
        return (1, 0) if swaps_bytes(order) else (0, 1)  # type: ignore[arg-type]
    pattern = _AS_64.get(order, order) if width == 8 else _AS_32.get(order, order)
    if len(pattern) != width:
        raise ValueError(f"byte order {order} does not fit a {width * 8}-bit value")
    return tuple(pattern.index(chr(ord("A") + i)) for i in range(width))


def registers_to_bytes(registers: list[int] | tuple[int, ...]) -> bytes:
    """The wire bytes of a run of registers."""
    return b"".join(r.to_bytes(2, "big") for r in registers)


def decode(
    registers: list[int] | tuple[int, ...], data_type: DataType, order: ByteOrder
) -> Number | str:
    """Decode the registers of one value (exactly its width) into a Python value."""
    wire = registers_to_bytes(registers)
    if data_type == "string":
        if swaps_bytes(order):
            wire = b"".join(wire[i + 1 : i + 2] + wire[i : i + 1] for i in range(0, len(wire), 2))
        return wire.split(b"\x00", 1)[0].decode("latin-1").rstrip(" \x00")
    if data_type == "bool":
        return registers[0] != 0
    width = len(wire)
    perm = permutation(order, width)
    canonical = bytes(wire[p] for p in perm)
    value: Number = struct.unpack(STRUCT_CODES[data_type], canonical)[0]
    if data_type == "float32":
        return shortest_float32(value, canonical)
    return value


def shortest_float32(value: float, packed: bytes) -> float:
    """A short decimal that is exactly the same float32 (25.85602, not 25.856021881103516)."""
    if value != value or value in (float("inf"), float("-inf")):
        return value
    # 7 significant digits round-trip most float32 values at the first try (6 rarely would be
    # shorter; exactness, not the last character, is what matters); 9 always round-trips.
    for digits in (7, 8, 9):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == packed:
            return candidate
    return value


def shortest_float32s(values: list[float]) -> list[float]:
    """:func:`shortest_float32` for many values at once: each step is one C-level pass."""
    result = list(values)
    todo = list(range(len(values)))
    for digits in (7, 8):  # 9 digits always round-trip a float32
        if not todo:
            return result
        wanted = [values[k] for k in todo]
        text, pack, bits = _float32_batch(digits, len(wanted))
        candidates = list(map(float, (text % tuple(wanted)).split(",")))
        exact = map(eq, bits(pack(*candidates)), bits(pack(*wanted)))
        left = []
        for k, candidate, ok in zip(todo, candidates, exact, strict=True):
            if ok:
                result[k] = candidate
            else:
                left.append(k)
        todo = left
    for k in todo:
        result[k] = float(f"{values[k]:.9g}")
    return result


@cache
def _float32_batch(
    digits: int, n: int
) -> tuple[str, Callable[..., bytes], Callable[[bytes], tuple[int, ...]]]:
    """For n values: their format at ``digits`` significant digits, float32 packing, raw bits."""
    return (
        ",".join([f"%.{digits}g"] * n),
        struct.Struct(f">{n}f").pack,
        struct.Struct(f">{n}I").unpack,
    )


def encode(
    value: Number | str | bool, data_type: DataType, order: ByteOrder, length: int | None = None
) -> list[int]:
    """Encode a Python value into registers, the exact inverse of :func:`decode`."""
    if data_type == "string":
        count = register_count("string", length)
        raw = str(value).encode("latin-1")
        if len(raw) > count * 2:
            raise ValueError(f"string of {len(raw)} characters does not fit {count} registers")
        wire = raw.ljust(count * 2, b"\x00")
        if swaps_bytes(order):
            wire = b"".join(wire[i + 1 : i + 2] + wire[i : i + 1] for i in range(0, len(wire), 2))
        return [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]
    if data_type == "bool":
        return [1 if value else 0]
    canonical = struct.pack(STRUCT_CODES[data_type], value)
    width = len(canonical)
    perm = permutation(order, width)
    out = bytearray(width)
    for canonical_pos, wire_pos in enumerate(perm):
        out[wire_pos] = canonical[canonical_pos]
    return [int.from_bytes(out[i : i + 2], "big") for i in range(0, width, 2)]


def block_bytes(registers: Sequence[int]) -> bytes:
    """Registers as the wire carries them: big-endian 16-bit words, back to back."""
    return struct.pack(f">{len(registers)}H", *registers)


def value_reader(
    data_type: DataType, order: ByteOrder, at: int, length: int | None = None
) -> Callable[[bytes], Number | str]:
    """A fast decoder for one value at register ``at`` of a block; same results as :func:`decode`.

    Built once per tag, so a scan of 10,000 tags does no parsing of types or orders.
    """
    start = at * 2
    if data_type == "string":
        end = start + register_count("string", length) * 2

        def read_string(blob: bytes) -> str:
            return decode(
                list(struct.unpack_from(f">{(end - start) // 2}H", blob, start)), "string", order
            )  # type: ignore[return-value]

        return read_string
    width = struct.calcsize(STRUCT_CODES[data_type])
    perm = permutation(order, width)
    shortest = data_type == "float32"
    if perm == tuple(range(width)):  # big-endian as sent
        unpack_be = struct.Struct(STRUCT_CODES[data_type]).unpack_from

        def read_plain(blob: bytes) -> Number:
            value: Number = unpack_be(blob, start)[0]
            return shortest_float32(value, blob[start : start + 4]) if shortest else value

        return read_plain
    if perm == tuple(reversed(range(width))):  # fully little-endian
        unpack_le = struct.Struct("<" + STRUCT_CODES[data_type][1:]).unpack_from

        def read_reversed(blob: bytes) -> Number:
            value: Number = unpack_le(blob, start)[0]
            return shortest_float32(value, blob[start : start + 4][::-1]) if shortest else value

        return read_reversed
    pick = itemgetter(*(start + p for p in perm))
    unpack = struct.Struct(STRUCT_CODES[data_type]).unpack

    def read_permuted(blob: bytes) -> Number:
        canonical = bytes(pick(blob))
        value: Number = unpack(canonical)[0]
        return shortest_float32(value, canonical) if shortest else value

    return read_permuted
