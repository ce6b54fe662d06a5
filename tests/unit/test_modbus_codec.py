"""Register decoding against hand-written vectors, for every type and byte order."""

from __future__ import annotations

import random
import struct

import pytest

from connectors.modbus.address import Address, parse_address
from connectors.modbus.codec import BYTE_ORDERS, DataType, decode, encode

# float32 12.5 = 0x41480000: A=41 B=48 C=00 D=00
FLOAT_12_5 = {
    "ABCD": [0x4148, 0x0000],
    "CDAB": [0x0000, 0x4148],
    "BADC": [0x4841, 0x0000],
    "DCBA": [0x0000, 0x4841],
}
# uint32 0x11223344
UINT32 = {
    "ABCD": [0x1122, 0x3344],
    "CDAB": [0x3344, 0x1122],
    "BADC": [0x2211, 0x4433],
    "DCBA": [0x4433, 0x2211],
}
# uint64 0x0102030405060708
UINT64 = {
    "ABCDEFGH": [0x0102, 0x0304, 0x0506, 0x0708],
    "GHEFCDAB": [0x0708, 0x0506, 0x0304, 0x0102],
    "BADCFEHG": [0x0201, 0x0403, 0x0605, 0x0807],
    "HGFEDCBA": [0x0807, 0x0605, 0x0403, 0x0201],
}
SAME_64 = {"ABCD": "ABCDEFGH", "CDAB": "GHEFCDAB", "BADC": "BADCFEHG", "DCBA": "HGFEDCBA"}


@pytest.mark.parametrize(("order", "registers"), FLOAT_12_5.items())
def test_float32_12_5_in_every_order(order: str, registers: list[int]) -> None:
    assert decode(registers, "float32", order) == 12.5  # type: ignore[arg-type]
    assert encode(12.5, "float32", order) == registers  # type: ignore[arg-type]


@pytest.mark.parametrize(("order", "registers"), UINT32.items())
def test_uint32_in_every_order(order: str, registers: list[int]) -> None:
    assert decode(registers, "uint32", order) == 0x11223344  # type: ignore[arg-type]


@pytest.mark.parametrize(("order", "registers"), UINT64.items())
def test_uint64_in_every_order(order: str, registers: list[int]) -> None:
    assert decode(registers, "uint64", order) == 0x0102030405060708  # type: ignore[arg-type]


@pytest.mark.parametrize(("short", "long"), SAME_64.items())
def test_32_bit_names_mean_the_64_bit_pattern(short: str, long: str) -> None:
    assert decode(UINT64[long], "uint64", short) == 0x0102030405060708  # type: ignore[arg-type]


def test_signed_and_16_bit() -> None:
    assert decode([0xFFFF], "int16", "ABCD") == -1
    assert decode([0xFFFF], "uint16", "ABCD") == 65535
    assert decode([0x8000], "int16", "ABCD") == -32768
    assert decode([0x3412], "uint16", "DCBA") == 0x1234  # byte swap applies to 16-bit values
    assert decode([0x1234], "uint16", "CDAB") == 0x1234  # word swap does not
    assert decode([0xFFFF, 0xFFFE], "int32", "ABCD") == -2
    assert decode([0xFFFE, 0xFFFF], "int32", "CDAB") == -2
    assert decode([0xFFFF] * 4, "int64", "ABCDEFGH") == -1


def test_float64() -> None:
    registers = [0x4029, 0x0000, 0x0000, 0x0000]  # 12.5
    assert decode(registers, "float64", "ABCDEFGH") == 12.5
    assert decode(registers[::-1], "float64", "GHEFCDAB") == 12.5


def test_float32_is_published_as_its_shortest_decimal() -> None:
    registers = encode(0.1, "float32", "ABCD")
    assert registers == [0x3DCC, 0xCCCD]
    assert decode(registers, "float32", "ABCD") == 0.1


def test_strings() -> None:
    # "HELLO" in 4 registers: 'H' 'E' | 'L' 'L' | 'O' NUL | NUL NUL
    assert decode([0x4845, 0x4C4C, 0x4F00, 0x0000], "string", "ABCD") == "HELLO"
    assert decode([0x4548, 0x4C4C, 0x004F, 0x0000], "string", "BADC") == "HELLO"
    assert decode([0x4142, 0x2020], "string", "ABCD") == "AB"  # trailing spaces stripped


@pytest.mark.parametrize("order", BYTE_ORDERS)
@pytest.mark.parametrize(
    "data_type", ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
)
def test_round_trip_every_type_and_order(order: str, data_type: DataType) -> None:
    rng = random.Random(f"{order}{data_type}")
    bits = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64}
    for _ in range(50):
        if data_type.startswith("float"):
            value: float = rng.uniform(-1e6, 1e6)
            if data_type == "float32":
                value = struct.unpack(">f", struct.pack(">f", value))[0]
        else:
            n = bits[data_type]
            lo, hi = (
                (-(2 ** (n - 1)), 2 ** (n - 1) - 1)
                if data_type.startswith("int")
                else (0, 2**n - 1)
            )
            value = rng.randint(lo, hi)
        registers = encode(value, data_type, order)  # type: ignore[arg-type]
        decoded = decode(registers, data_type, order)  # type: ignore[arg-type]
        if data_type == "float32":
            assert struct.pack(">f", decoded) == struct.pack(">f", value)
        else:
            assert decoded == value


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("holding:100", Address("holding", 100)),
        ("holding:100.3", Address("holding", 100, 3)),
        ("input:0", Address("input", 0)),
        ("coil:7", Address("coil", 7)),
        ("discrete:65535", Address("discrete", 65535)),
        ("40101", Address("holding", 100)),
        ("40001", Address("holding", 0)),
        ("400001", Address("holding", 0)),
        ("30001", Address("input", 0)),
        ("10005", Address("discrete", 4)),
        ("00001", Address("coil", 0)),
        ("40001.15", Address("holding", 0, 15)),
    ],
)
def test_addresses(text: str, address: Address) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(
    "bad",
    [
        "holding",
        "holding:-1",
        "coil:1.2",
        "holding:1.16",
        "40000",
        "50001",
        "reg:1",
        "holding:70000",
    ],
)
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ValueError, match=r"Modbus address|bit|offset|start at 1|beyond"):
        parse_address(bad)


@pytest.mark.parametrize("order", BYTE_ORDERS)
@pytest.mark.parametrize(
    "data_type", ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
)
def test_the_fast_reader_agrees_with_decode(order: str, data_type: DataType) -> None:
    from connectors.modbus.codec import block_bytes, register_count, value_reader

    rng = random.Random(f"reader{order}{data_type}")
    width = register_count(data_type)
    for _ in range(200):
        block = [rng.getrandbits(16) for _ in range(8)]
        at = rng.randrange(0, 8 - width + 1)
        expected = decode(block[at : at + width], data_type, order)  # type: ignore[arg-type]
        got = value_reader(data_type, order, at)(block_bytes(block))  # type: ignore[arg-type]
        assert got == expected or (got != got and expected != expected)  # NaN is NaN


def test_the_fast_reader_reads_strings() -> None:
    from connectors.modbus.codec import block_bytes, value_reader

    blob = block_bytes([0, 0x4548, 0x4C4C, 0x004F])
    assert value_reader("string", "BADC", 1, 3)(blob) == "HELLO"


def test_shortest_float32s_agrees_with_one_at_a_time() -> None:
    from connectors.modbus.codec import shortest_float32, shortest_float32s

    rng = random.Random("shortest")
    packed = [rng.getrandbits(32).to_bytes(4, "big") for _ in range(5000)]
    packed += [struct.pack(">f", v) for v in (0.1, 21.5, -0.0, 3.4028234663852886e38, 1e-45)]
    values = [struct.unpack(">f", p)[0] for p in packed]
    got = shortest_float32s(values)
    for value, p, short in zip(values, packed, got, strict=True):
        expected = shortest_float32(value, p)
        assert short == expected or (short != short and expected != expected), p.hex()
    assert len({len(repr(v)) for v in got}) > 3  # really a mix of 7, 8 and 9 digits
