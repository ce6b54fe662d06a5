"""Shared model helpers."""

from __future__ import annotations

from gateway.models import ByIdentity


def test_by_identity_makes_once_per_object_and_stays_bounded() -> None:
    made: list[list[str]] = []

    def make(tags: list[str]) -> int:
        made.append(tags)
        return len(made)

    cache: ByIdentity[list[str], int] = ByIdentity(limit=2)
    scan = ["a", "b"]
    assert cache.get(scan, make) == cache.get(scan, make) == 1  # the same list: made once
    assert cache.get(["a", "b"], make) == 2  # an equal but other list is another key
    assert cache.get(["c"], make) == 3  # over the limit: emptied, then made
    assert len(cache._items) <= 2
    assert cache.get(scan, make) == 4  # forgotten when emptied: made again
