"""Report by exception: deadband, heartbeat, always, quality changes."""

from __future__ import annotations

from typing import Any

from gateway.models import Quality
from gateway.report import ExceptionReporter
from gateway.schema import TagBase


def tag(**kw: Any) -> TagBase:
    return TagBase.model_validate({"name": "t", **kw})


def run(t: TagBase, steps: list[tuple[float, Any, Quality]]) -> list[bool]:
    rep = ExceptionReporter()
    return [bool(rep.select([t], [v], [q], now)) for now, v, q in steps]


G, B = Quality.GOOD, Quality.BAD


def test_on_change_without_deadband_reports_every_change() -> None:
    assert run(tag(), [(0, 1, G), (1, 1, G), (2, 2, G), (3, 2, G)]) == [True, False, True, False]


def test_deadband_is_measured_from_the_last_reported_value() -> None:
    steps = [(0, 10.0, G), (1, 10.15, G), (2, 10.3, G), (3, 10.35, G), (4, 10.0, G)]
    assert run(tag(deadband=0.2), steps) == [True, False, True, False, True]


def test_quality_change_is_always_reported() -> None:
    assert run(tag(deadband=100), [(0, 1, G), (1, None, B), (2, None, B), (3, 1, G)]) == [
        True,
        True,
        False,
        True,
    ]


def test_heartbeat_republishes_unchanged_values() -> None:
    steps = [(0, 1, G), (30, 1, G), (59.9, 1, G), (60, 1, G), (61, 1, G), (120, 1, G)]
    assert run(tag(heartbeat="60s"), steps) == [True, False, False, True, False, True]


def test_always() -> None:
    assert run(tag(report="always"), [(0, 1, G), (1, 1, G), (2, 1, G)]) == [True, True, True]


def test_bool_never_uses_deadband_and_type_changes_count() -> None:
    assert run(tag(deadband=5), [(0, False, G), (1, True, G)]) == [True, True]
    assert run(tag(), [(0, 1, G), (1, 1.0, G), (2, True, G)]) == [True, True, True]


def test_a_percent_deadband_is_left_to_the_server() -> None:
    class PercentTag(TagBase):
        deadband_type: str = "percent"

    t = PercentTag.model_validate({"name": "t", "deadband": 5})
    assert run(t, [(0, 10.0, G), (1, 10.1, G)]) == [True, True]  # the server already filtered
