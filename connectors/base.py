"""The connector contract: a connector knows its protocol and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from gateway.models import Sample, Samples, Value
from gateway.schema import TagBase
from gateway.writes import PlcType

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


class Writer(Connector[TagT_contra], Protocol[TagT_contra]):
    """A connector that can also write tags, for commands the write rules accepted.

    The caller decides every write with :func:`gateway.writes.check_write` first, giving it
    ``plc_type(tag)``; only an accepted value reaches ``write``, so nothing the rules refuse
    touches the wire. A write is sent once and never retried: after a timeout the device may
    have applied it, so the caller reads the tag back with ``read_back`` to learn the outcome.

    ``read_back`` is its own method rather than ``read([tag])``: a connector may keep work per
    tag list (the Modbus request plans), which a one-tag list made per command would churn.
    """

    def plc_type(self, tag: TagT_contra) -> PlcType | None:
        """What the device holds at this tag, for the write rules; None while not known yet.

        No I/O: from the config (Modbus), or learned at connect (the OPC UA DataType).
        """

    async def write(self, tag: TagT_contra, value: Value) -> None:
        """Write ``Accepted.value`` (the PLC's own value, raw for a scaled tag) once.

        Raises DeviceError when the device refuses, its message carrying the device's own
        code (``Modbus exception 2 (illegal data address)``, ``BadNotWritable``);
        WriteUnconfirmed (a DeviceError) when no answer came in time, so the write may have
        been applied; ConnectionLost when the connection is gone (applied or not is unknown).
        """

    async def read_back(self, tag: TagT_contra) -> Sample:
        """Read one tag now, outside the scans: to confirm a write.

        Raises DeviceError when the device cannot give the value (with its own code) and
        ConnectionLost when the connection is gone.
        """
