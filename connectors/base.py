"""The connector contract: a connector knows its protocol and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from gateway.models import Sample, Samples
from gateway.schema import TagBase

TagT_contra = TypeVar("TagT_contra", bound=TagBase, contravariant=True)

Deliver = Callable[[Sequence[tuple[int, Sample]]], None]
"""Called by a subscribing connector with (index in the subscribed tags, sample) pairs."""


class Connector(Protocol[TagT_contra]):
    """One connection to one device.

    ``connect`` raises ConnectionLost when the device cannot be reached. ``read`` returns one
    Sample per tag, in order (or the same as columns: :class:`Samples`); a request the device
    refuses marks only its own tags bad, while a lost connection raises ConnectionLost so the
    runtime can back off and reconnect.

    A connector may also offer ``prepare(tags)``: work done once per tag list (the Modbus
    request plans), which the runtime calls after connecting, before the first scan.
    """

    async def connect(self) -> None:
        """Open the connection to the device."""

    async def read(self, tags: Sequence[TagT_contra]) -> list[Sample] | Samples:
        """Read the given tags once."""

    async def close(self) -> None:
        """Close the connection; never raises."""


class Subscriber(Connector[TagT_contra], Protocol[TagT_contra]):
    """A connector whose device can also push changes (e.g. OPC UA monitored items).

    The runtime uses ``subscribe`` instead of ``read`` when the source's config says
    ``subscribe: true``. ``subscribe`` sets up monitoring, calls ``deliver`` from the event
    loop as changes arrive, and keeps running while the subscription is healthy; when the
    session or subscription is lost it raises ConnectionLost (it never returns normally).
    """

    async def subscribe(self, tags: Sequence[TagT_contra], deliver: Deliver) -> None:
        """Monitor the tags until the subscription is lost."""
