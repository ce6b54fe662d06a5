"""A source's tag qualities as its device gave them, logged when they change: bad with why,
good again. Once, here, for every protocol, rather than in each connector."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import compress, repeat
from operator import is_not

from gateway.models import Quality

log = logging.getLogger(__name__)

MAX_NAMES = 10  # a whole PLC going bad behind a gateway is one log line, not thousands
_GOOD = Quality.GOOD


class QualityLog:
    """The tags of one source that are not good now, and why; each change is logged once.

    Fed what connectors read, not the bad marks the runtime makes when a connection is lost
    (that is one line about the connection): a tag refused before a reconnect and still
    refused after it is not logged again.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.not_good: dict[str, str] = {}  # tag name -> why, as last logged

    def note(
        self,
        names: Sequence[str],
        qualities: Sequence[Quality],
        reasons: Mapping[int, str] | None,
    ) -> None:
        """Take in one scan's qualities (``reasons`` by index); log the tags whose changed."""
        count = len(qualities)
        not_good = self.not_good
        went_bad: dict[str, list[str]] = {}  # why -> tag names
        if qualities.count(_GOOD) != count:
            given = reasons or {}
            for i in compress(range(count), map(is_not, qualities, repeat(_GOOD))):
                name = names[i]
                why = given.get(i) or f"{qualities[i].value} quality"
                if not_good.get(name) != why:
                    not_good[name] = why
                    went_bad.setdefault(why, []).append(name)
        elif not not_good:  # the usual scan: every tag good, as before
            return
        # Previously not good, now good (found by C-level filters: scans are 10,000 tags).
        was_bad = compress(range(count), map(not_good.__contains__, names))
        recovered = [names[i] for i in was_bad if qualities[i] is _GOOD]
        for name in recovered:
            del not_good[name]
        if went_bad:
            log.warning("%s: tag(s) not good: %s", self.source, _by_reason(went_bad))
        if recovered:
            log.info("%s: tag(s) good again: %s", self.source, _some(recovered))


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    more = len(names) - MAX_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def _by_reason(groups: dict[str, list[str]]) -> str:
    """``a, b (why); c (other why) and 12 more``: at most MAX_NAMES names in all."""
    parts: list[str] = []
    shown = 0
    for why, names in groups.items():
        room = MAX_NAMES - shown
        if room <= 0:
            break
        parts.append(f"{', '.join(names[:room])} ({why})")
        shown += min(room, len(names))
    more = sum(map(len, groups.values())) - shown
    text = "; ".join(parts)
    return f"{text} and {more} more" if more > 0 else text
