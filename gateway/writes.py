"""The write guard: nothing reaches a PLC unless the gateway and the tag both allow writes."""

from __future__ import annotations

import logging

from gateway.errors import PlantgateError
from gateway.schema import SourceBase, TagBase

audit = logging.getLogger("plantgate.audit")


class WriteRefused(PlantgateError):
    """A write that the configuration does not allow; it never reaches the wire."""


def authorise_write(gateway_writes: bool, source: SourceBase, tag: TagBase, value: object) -> None:
    """Raise WriteRefused unless ``gateway.writes: true`` and the tag says ``writable: true``."""
    if not gateway_writes:
        reason = "gateway.writes is false"
    elif not tag.writable:
        reason = f"tag {tag.name} is not writable: true"
    else:
        audit.info("write %s/%s = %r", source.name, tag.name, value)
        return
    audit.warning("write %s/%s = %r refused: %s", source.name, tag.name, value, reason)
    raise WriteRefused(f"write to {source.name}/{tag.name} refused: {reason}")
