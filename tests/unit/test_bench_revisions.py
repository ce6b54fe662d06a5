"""bench.revisions' seq accounting of mosquitto_sub's output."""

from __future__ import annotations

import pytest

from bench.revisions import Seqs

LINES = b"".join(
    b'1795885562.100000000 {"value":%d,"quality":"good","ts":1795885562000,"seq":%d}\n' % (s, s)
    for s in (1, 2, 3, 5, 6, 10)
)
BATCH = (
    b'1795885563.250000000 {"ts":1795885563000,"readings":['
    + b",".join(b'{"tag":"r%05d","ts":1795885563000,"seq":%d}' % (s, s) for s in range(11, 21))
    + b"]}\n"
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096])
def test_seqs_are_marked_whatever_the_reads_split(size: int) -> None:
    stream = LINES + BATCH
    seqs = Seqs()
    for at in range(0, len(stream), size):
        seqs.feed(stream[at : at + size])
    assert seqs.top == 20
    assert seqs.missing(20) == 4  # 4, 7, 8 and 9
    assert [s for s in range(1, 21) if not seqs.seen[s]] == [4, 7, 8, 9]


def test_a_line_not_yet_ended_is_not_counted() -> None:
    seqs = Seqs()
    seqs.feed(b'1795885562.1 {"ts":1,"seq":1}\n1795885562.2 {"ts":1,"seq":2')
    assert seqs.top == 1
    seqs.feed(b"}\n")
    assert (seqs.top, seqs.missing(2)) == (2, 0)


def test_seqs_above_the_highest_received_are_missing() -> None:
    seqs = Seqs()
    seqs.feed(b'1795885562.1 {"ts":1,"seq":2}\n')
    assert seqs.missing(1) == 1
    assert seqs.missing(5) == 4


def test_a_lower_seq_read_later_keeps_the_highest() -> None:
    # A re-sent message (at-least-once) arrives after newer ones.
    seqs = Seqs()
    seqs.feed(b'1795885562.1 {"ts":1,"seq":7}\n')
    seqs.feed(b'1795885562.2 {"ts":1,"seq":3}\n')
    assert seqs.top == 7
