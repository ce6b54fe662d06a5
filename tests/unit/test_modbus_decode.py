"""A request's bulk decoder agrees with decoding each tag on its own, for every layout."""

from __future__ import annotations

import random
from typing import Any

from connectors.modbus.codec import BYTE_ORDERS, block_bytes, decode, register_count
from connectors.modbus.config import ModbusTag
from connectors.modbus.decode import RequestDecoder, scaled
from gateway.models import Value

NUMBERS = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
START = 100
SIZE = 60  # registers in the block


def random_tag(rng: random.Random, n: int) -> ModbusTag:
    """A tag somewhere in the block: any number type and order, maybe scaled, a bit, a string."""
    kind = rng.random()
    spec: dict[str, Any] = {"name": f"t{n}"}
    if kind < 0.1:
        spec |= {"address": f"holding:{START + rng.randrange(SIZE)}.{rng.randrange(16)}"}
    elif kind < 0.2:
        spec |= {"address": f"holding:{START + rng.randrange(SIZE - 4)}", "type": "string"}
        spec |= {"length": rng.randint(1, 4), "byte_order": rng.choice(["ABCD", "BADC"])}
    else:
        data_type = rng.choice(NUMBERS)
        width = register_count(data_type)  # type: ignore[arg-type]
        spec |= {"address": f"holding:{START + rng.randrange(SIZE - width + 1)}"}
        spec |= {"type": data_type, "byte_order": rng.choice(BYTE_ORDERS[:4])}
        if rng.random() < 0.2:
            spec |= {"multiplier": 0.1, "offset": -3}
    return ModbusTag.model_validate(spec)


def one_by_one(tag: ModbusTag, words: list[int]) -> Value:
    """The reference: the plain per-value decode of the tag's own registers."""
    at = tag.address.offset - START
    if tag.address.bit is not None:
        return bool((words[at] >> tag.address.bit) & 1)
    width = register_count(tag.data_type, tag.length)
    value = decode(words[at : at + width], tag.data_type, tag.byte_order or "ABCD")
    return scaled(tag, value) if tag.scaled else value  # type: ignore[arg-type]


def test_bulk_decoding_matches_decoding_each_tag() -> None:
    rng = random.Random("bulk")
    bulk_used = overlaps = 0
    for layout in range(300):
        tags = [random_tag(rng, n) for n in range(rng.randint(1, 40))]
        decoder = RequestDecoder(START, list(enumerate(tags)), "ABCD", bits=False)
        words = [rng.getrandbits(16) for _ in range(SIZE)]
        blob = block_bytes(words)
        got: dict[int, Value] = dict(zip(decoder.indices, decoder.values(words, blob), strict=True))
        for index, _, read in decoder.others:
            got[index] = read(words, blob)
        assert sorted(got) == list(range(len(tags))), f"layout {layout}: a tag was not decoded"
        for index, tag in enumerate(tags):
            expected, value = one_by_one(tag, words), got[index]
            assert value == expected or (value != value and expected != expected), (
                f"layout {layout}: {tag.name} {tag.address} {tag.data_type} {tag.byte_order}"
            )
        bulk_used += len(decoder.indices)
        overlaps += sum(1 for _, t, _ in decoder.others if t.data_type in NUMBERS)
    assert bulk_used > 1000  # the bulk path really decoded most tags...
    assert overlaps > 100  # ...and overlapping numbers really fell back to one by one


def test_a_word_swapped_block_is_permuted_once() -> None:
    tags = [
        ModbusTag.model_validate({"name": "a", "address": "holding:100", "type": "float32"}),
        ModbusTag.model_validate(
            {"name": "b", "address": "holding:103", "type": "uint32", "byte_order": "CDAB"}
        ),
    ]
    decoder = RequestDecoder(START, list(enumerate(tags)), "ABCD", bits=False)
    words = [0x4148, 0x0000, 0xFFFF, 0x3344, 0x1122]
    assert decoder.values(words, block_bytes(words)) == [12.5, 0x11223344]
    assert decoder.others == []
