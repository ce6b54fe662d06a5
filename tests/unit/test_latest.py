"""The newest committed reading per tag, as told to a subscriber at every connect."""

from __future__ import annotations

from buffer.latest import LatestValues
from gateway.models import Batch, Quality, Reading


def batch(source: str, first_seq: int, **values: float) -> Batch:
    ts = 1000 + first_seq
    n = len(values)
    return Batch.of_columns(
        source, ts, list(values), list(values.values()), [Quality.GOOD] * n, [ts] * n, first_seq
    )


def newest(latest: LatestValues, source: str) -> dict[str, tuple[float, int]]:
    return {r.tag: (r.value, r.seq) for r in latest.readings(source)}  # type: ignore[misc]


def test_the_newest_reading_of_each_tag_wins_across_different_tag_lists() -> None:
    latest = LatestValues()
    latest.update(batch("press1", 1, a=1.0, b=2.0, c=3.0))
    latest.update(batch("press1", 4, b=20.0))  # report by exception: only b changed
    latest.update(batch("press1", 5, a=10.0, b=200.0, c=30.0))
    latest.update(batch("press1", 8, c=300.0))
    assert newest(latest, "press1") == {"a": (10.0, 5), "b": (200.0, 6), "c": (300.0, 8)}


def test_many_tag_lists_are_folded_and_nothing_older_comes_back() -> None:
    latest = LatestValues()
    seq = 1
    for n in range(3 * LatestValues.FOLD_AFTER + 5):
        latest.update(batch("press1", seq, **{f"t{n % 40}": float(n)}))
        seq += 1
        latest.update(batch("press1", seq, all=float(n)))
        seq += 1
    found = newest(latest, "press1")
    assert found["all"] == (float(3 * LatestValues.FOLD_AFTER + 4), seq - 1)
    for tag in range(40):  # each tag's last write, whichever fold it went through
        last = max(n for n in range(3 * LatestValues.FOLD_AFTER + 5) if n % 40 == tag)
        assert found[f"t{tag}"][0] == float(last)


def test_sources_are_kept_apart_and_can_be_forgotten() -> None:
    latest = LatestValues()
    latest.update(batch("press1", 1, a=1.0, b=2.0))
    latest.update(batch("press2", 1, a=5.0))
    assert latest.sources() == ["press1", "press2"]
    latest.forget("press1", {"b"})
    assert latest.readings("press1") == [Reading("a", 1.0, Quality.GOOD, 1001, 1)]
    latest.forget("press2")
    assert latest.readings("press2") == []
    assert latest.sources() == ["press1"]
