"""The connector contract: a connector knows its protocol and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from gateway.models import Sample
from gateway.schema import TagBase

TagT_contra = TypeVar("TagT_contra", bound=TagBase, contravariant=True)


class Connector(Protocol[TagT_contra]):
    """One connection to one device.

    ``connect`` raises ConnectionLost when the device cannot be reached. ``read`` returns one
    Sample per tag, in order; a request the device refuses marks only its own tags bad, while
    a lost connection raises ConnectionLost so the runtime can back off and reconnect.
    """

    async def connect(self) -> None:
        """Open the connection to the device."""

    async def read(self, tags: Sequence[TagT_contra]) -> list[Sample]:
        """Read the given tags once."""

    async def close(self) -> None:
        """Close the connection; never raises."""
