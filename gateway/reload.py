"""Hot reload of the tag map: what changed between the running config and a new one.

A reload is applied as a per-source diff: an unchanged source keeps its connection, schedule
and seq; a changed source restarts alone (its seq continues); a removed one stops (what it
buffered is still delivered); an added one starts. Changing ``mqtt:`` reconnects the publisher
(nothing buffered is lost). Some keys cannot change while running (the buffer's path): a new
file that changes them is refused with the reason, and the running config stays.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import Config


def _buffer_path(config: Config) -> object:
    return config.gateway.buffer.path


# What only a restart can change: (what, how to read it).
FIXED: tuple[tuple[str, Callable[[Config], object]], ...] = (("gateway.buffer.path", _buffer_path),)


@dataclass(frozen=True)
class Diff:
    """What a new tag map changes."""

    unchanged: list[str] = field(default_factory=list)  # source names
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    mqtt: bool = False  # the broker connection's settings changed
    gateway: bool = False  # other gateway keys (writes, metrics, buffer bounds) changed

    @property
    def anything(self) -> bool:
        """True when the new file changes something."""
        return bool(self.changed or self.added or self.removed or self.mqtt or self.gateway)

    def __str__(self) -> str:
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (
                ("changed", self.changed),
                ("added", self.added),
                ("removed", self.removed),
            )
            if names
        ]
        if self.mqtt:
            parts.append("mqtt settings")
        if self.gateway:
            parts.append("gateway settings")
        return "; ".join(parts) or "nothing"


def diff(old: Config, new: Config) -> Diff:
    """Compare two validated tag maps, source by source (by name)."""
    before = {s.name: s for s in old.sources}
    after = {s.name: s for s in new.sources}
    return Diff(
        unchanged=[n for n in after if n in before and before[n] == after[n]],
        changed=[n for n in after if n in before and before[n] != after[n]],
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        mqtt=old.mqtt != new.mqtt,
        gateway=old.gateway != new.gateway,
    )


def refusals(old: Config, new: Config) -> list[str]:
    """Why a new tag map cannot be applied while running (empty: it can)."""
    return [
        f"{what} changes from {read(old)} to {read(new)}: a restart is needed for that"
        for what, read in FIXED
        if read(old) != read(new)
    ]


def fingerprint(path: Path) -> str:
    """A short hash of a config file's bytes (shown in the status and metrics)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def stamp(path: Path) -> tuple[int, int]:
    """What a file watch compares: modification time and size."""
    info = os.stat(path)
    return info.st_mtime_ns, info.st_size
