"""Decoding one request's reply into the values of the tags it carries, compiled once.

A scan of 10,000 tags must not make 10,000 Python-level decode calls. For each planned
request the decoder is built once: every plain number tag that does not overlap another
is unpacked by one ``struct`` format covering the whole block (after one byte permutation
of the block for the word- and byte-swapped orders); bits, strings, scaled values and
overlapping tags get a small per-tag step after it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from operator import itemgetter

from connectors.modbus.codec import (
    STRUCT_CODES,
    ByteOrder,
    permutation,
    shortest_float32s,
    value_reader,
)
from connectors.modbus.config import ModbusTag
from gateway.models import Quality, Value

# One tag's value from a request's reply: (registers or bits, the block's wire bytes).
TagReader = Callable[[Sequence[int], bytes], Value]


def clean(value: float) -> float:
    """Drop binary noise from scaling arithmetic (1847 * 0.1 is 184.7, not 184.70000000000002)."""
    return float(f"{value:.12g}")


def scaled(tag: ModbusTag, raw: float) -> float:
    """Apply the tag's linear scaling (scale ranges, or multiplier/offset)."""
    if tag.scale is not None:
        (r0, r1), (e0, e1) = tag.scale.raw, tag.scale.eng
        value = e0 + (raw - r0) * (e1 - e0) / (r1 - r0)
        if tag.scale.clamp:
            value = min(max(value, min(e0, e1)), max(e0, e1))
        return clean(value)
    return clean(raw * (1.0 if tag.multiplier is None else tag.multiplier) + (tag.offset or 0.0))


def tag_reader(tag: ModbusTag, start: int, order: ByteOrder) -> TagReader:
    """The decoder of one tag within a block starting at register ``start``."""
    at = tag.address.offset - start
    if tag.address.is_bit_table:
        return lambda words, blob: bool(words[at])
    bit = tag.address.bit
    if bit is not None:
        return lambda words, blob: bool((words[at] >> bit) & 1)
    read = value_reader(tag.data_type, order, at, tag.length)
    if not tag.scaled:
        return lambda words, blob: read(blob)

    def read_scaled(words: Sequence[int], blob: bytes) -> Value:
        raw = read(blob)
        assert not isinstance(raw, str)  # config refuses scaling on strings
        return scaled(tag, raw)

    return read_scaled


class RequestDecoder:
    """Turns one request's reply into ``(index in the scan's tag list, value)`` pairs."""

    def __init__(
        self, start: int, members: Sequence[tuple[int, ModbusTag]], order: ByteOrder, bits: bool
    ) -> None:
        self.indices: list[int] = []  # the bulk-decoded tags, in the order of `_unpack`'s values
        self._float32: list[int] = []  # positions among them that want the shortest decimal
        self._scaled: list[tuple[int, ModbusTag]] = []
        self._unpack: Callable[[bytes], tuple[int | float, ...]] | None = None
        self._permute: Callable[[bytes], tuple[int, ...]] | None = None
        self.others: list[tuple[int, ModbusTag, TagReader]] = []  # decoded one by one
        self.span: slice | None = None  # where `indices` lie in the scan when they are adjacent
        self.all_good: list[Quality] = []  # the qualities of that span
        if bits:
            self.others = [(i, t, tag_reader(t, start, order)) for i, t in members]
            return
        self._compile(start, members, order)

    def _compile(
        self, start: int, members: Sequence[tuple[int, ModbusTag]], order: ByteOrder
    ) -> None:
        plain: list[tuple[int, int, ModbusTag, str]] = []  # (byte offset, index, tag, code)
        for index, tag in members:
            tag_order = tag.byte_order or order
            code = STRUCT_CODES.get(tag.data_type)
            if code is None or tag.address.bit is not None:  # strings, bits in a register
                self.others.append((index, tag, tag_reader(tag, start, tag_order)))
            else:
                plain.append(((tag.address.offset - start) * 2, index, tag, code))
        plain.sort(key=lambda p: p[0])
        fmt: list[str] = [">"]
        perm: list[int] = []
        end = 0
        for offset, index, tag, code in plain:
            width = struct.calcsize(code)
            if offset < end:  # overlaps the tag before it: one struct cannot hold both
                self.others.append((index, tag, tag_reader(tag, start, tag.byte_order or order)))
                continue
            fmt.append(f"{offset - end}x" if offset > end else "")
            fmt.append(code[1:])
            perm.extend(range(end, offset))
            perm.extend(offset + p for p in permutation(tag.byte_order or order, width))
            if tag.data_type == "float32":
                self._float32.append(len(self.indices))
            if tag.scaled:
                self._scaled.append((len(self.indices), tag))
            self.indices.append(index)
            end = offset + width
        if not self.indices:
            return
        first = self.indices[0]
        if self.indices == list(range(first, first + len(self.indices))):
            self.span = slice(first, first + len(self.indices))
            self.all_good = [Quality.GOOD] * len(self.indices)
        self._unpack = struct.Struct("".join(fmt)).unpack_from
        if perm != list(range(end)):
            self._permute = itemgetter(*perm)

    def values(self, words: Sequence[int], blob: bytes) -> list[int | float]:
        """The bulk-decoded tags' values, in the order of :attr:`indices`."""
        if self._unpack is None:
            return []
        canonical = bytes(self._permute(blob)) if self._permute is not None else blob
        values = list(self._unpack(canonical))
        if self._float32:
            self._shorten(values)
        for n, tag in self._scaled:
            values[n] = scaled(tag, values[n])
        return values

    def _shorten(self, values: list[int | float]) -> None:
        """float32 values as their shortest decimals (25.85602, not 25.856021881103516)."""
        short = shortest_float32s([values[n] for n in self._float32])
        for n, value in zip(self._float32, short, strict=True):
            values[n] = value
