"""The runtime's log of tag quality changes: once per change, bounded, with why."""

from __future__ import annotations

import logging

import pytest

from gateway.models import Quality
from gateway.quality import QualityLog

G, B, U = Quality.GOOD, Quality.BAD, Quality.UNCERTAIN


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, "gateway.quality")
    return caplog


def test_a_change_is_logged_once_bad_with_why_then_good_again(
    log: pytest.LogCaptureFixture,
) -> None:
    qualities = QualityLog("oven")
    names = ["a", "b", "c"]
    qualities.note(names, [G, G, G], None)
    qualities.note(names, [G, B, G], {1: "BadNoCommunication"})
    qualities.note(names, [G, B, G], {1: "BadNoCommunication"})  # no change: nothing
    qualities.note(names, [G, B, G], {1: "BadNoCommunication"})
    qualities.note(names, [G, G, G], None)
    qualities.note(names, [G, G, G], None)
    assert log.messages == [
        "oven: tag(s) not good: b (BadNoCommunication)",
        "oven: tag(s) good again: b",
    ]
    assert qualities.not_good == {}


def test_a_new_reason_or_quality_is_a_change_and_a_missing_reason_says_the_quality(
    log: pytest.LogCaptureFixture,
) -> None:
    qualities = QualityLog("press1")
    qualities.note(["a", "b"], [B, U], None)
    qualities.note(["a", "b"], [B, U], {0: "read holding:0+1: no answer"})
    qualities.note(["a", "b"], [U, U], {0: "UncertainLastUsableValue"})
    assert log.messages == [
        "press1: tag(s) not good: a (bad quality); b (uncertain quality)",
        "press1: tag(s) not good: a (read holding:0+1: no answer)",
        "press1: tag(s) not good: a (UncertainLastUsableValue)",
    ]


def test_a_scan_of_other_tags_leaves_a_bad_tag_bad(log: pytest.LogCaptureFixture) -> None:
    # Scan groups read different tags: a good scan of the fast group says nothing of the slow.
    qualities = QualityLog("press1")
    qualities.note(["slow"], [B], {0: "refused"})
    qualities.note(["fast"], [G], None)
    assert qualities.not_good == {"slow": "refused"}
    qualities.note(["fast", "slow"], [G, G], None)
    assert log.messages == [
        "press1: tag(s) not good: slow (refused)",
        "press1: tag(s) good again: slow",
    ]


def test_many_tags_make_one_bounded_line_grouped_by_reason(log: pytest.LogCaptureFixture) -> None:
    qualities = QualityLog("press1")
    names = [f"t{i}" for i in range(25)]
    reasons = {i: "read holding:0+20: refused" if i < 20 else "cannot decode" for i in range(25)}
    qualities.note(names, [B] * 25, reasons)
    qualities.note(names, [G] * 25, None)
    assert log.messages == [
        "press1: tag(s) not good: t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 "
        "(read holding:0+20: refused) and 15 more",
        "press1: tag(s) good again: t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 and 15 more",
    ]
    qualities.note(names[18:], [B] * 7, {0: "x", 1: "x", 2: "y"})
    assert (
        log.messages[2]
        == "press1: tag(s) not good: t18, t19 (x); t20 (y); t21, t22, t23, t24 (bad quality)"
    )
