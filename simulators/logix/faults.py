"""Injected CIP errors for tests: the next N tag requests, or requests for one tag, fail;
writes refused; the tag list upload refused."""

from __future__ import annotations

from dataclasses import dataclass

from simulators.logix.cip import CipError

__all__ = ["ErrorInjection", "FaultPlan"]


@dataclass(slots=True)
class ErrorInjection:
    """Answer matching tag requests with ``status``/``extended``; ``remaining`` None = forever."""

    status: int
    extended: tuple[int, ...]
    remaining: int | None
    tag: str | None  # full tag name (case-insensitive), None = any tag request


class FaultPlan:
    """The injected errors still pending, consumed in the order they were added, and the
    switches that refuse writes or the tag list until cleared."""

    def __init__(self) -> None:
        self._pending: list[ErrorInjection] = []
        self.write_refusal: ErrorInjection | None = None
        self.tag_list_refusal: CipError | None = None

    def add(self, injection: ErrorInjection) -> None:
        """Queue an injection."""
        self._pending.append(injection)

    def clear(self) -> None:
        """Drop every pending injection and switch."""
        self._pending.clear()
        self.write_refusal = None
        self.tag_list_refusal = None

    def refused_write(self, tag_name: str) -> CipError | None:
        """The error a write to ``tag_name`` is refused with, if writes are being refused."""
        refusal = self.write_refusal
        if refusal is None or (refusal.tag is not None and refusal.tag != tag_name.lower()):
            return None
        return CipError(refusal.status, *refusal.extended)

    def take(self, tag_name: str | None) -> CipError | None:
        """Consume the first injection matching a request for ``tag_name`` (None: not resolved)."""
        for inj in self._pending:
            if inj.tag is not None and (tag_name is None or inj.tag != tag_name.lower()):
                continue
            if inj.remaining is not None:
                inj.remaining -= 1
                if inj.remaining <= 0:
                    self._pending.remove(inj)
            return CipError(inj.status, *inj.extended)
        return None
