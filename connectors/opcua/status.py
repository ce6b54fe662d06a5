"""Per-tag OPC UA status names, logged when they change rather than on every scan."""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger("connectors.opcua")

GOOD = "Good"
MAX_NAMES = 10  # a whole PLC going bad behind a server is one log line, not thousands


class StatusLog:
    """Remembers each tag's last status name; logs the tags whose status changed, once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.current: dict[str, str] = {}  # tag name -> last status name (diagnostics)

    def note(self, statuses: Iterable[tuple[str, str]]) -> None:
        """Record (tag name, status name) pairs; log the ones that changed."""
        worse: list[str] = []
        better: list[str] = []
        for tag, status in statuses:
            before = self.current.get(tag, GOOD)
            if status == before:
                continue
            self.current[tag] = status
            if status == GOOD:
                better.append(tag)
            else:
                worse.append(f"{tag} ({status})")
        if worse:
            log.warning("%s: tag(s) not good: %s", self.source, _some(worse))
        if better:
            log.info("%s: tag(s) good again: %s", self.source, _some(better))


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    more = len(names) - MAX_NAMES
    return shown + (f" and {more} more" if more > 0 else "")
