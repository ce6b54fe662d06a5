"""The connector contract: a connector knows its protocol and nothing else.

What every connector does is :class:`Connector`; what some can do besides is a capability of its
own, said here in types: :class:`Subscriber` (the device pushes changes) and :class:`Writer`
(commands may write tags). The runtime asks ``isinstance(connector, Subscriber)``, never probes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from gateway.models import Sample, Samples, Value
from gateway.schema import TagBase
from gateway.writes import PlcType

TagT_contra = TypeVar("TagT_contra", bound=TagBase, contravariant=True)
PlanT = TypeVar("PlanT")

Deliver = Callable[[Sequence[tuple[int, Sample]]], None]
"""Called by a subscribing connector with (index in the subscribed tags, sample) pairs."""


class Connector(Protocol[TagT_contra, PlanT]):
    """One connection to one device, polled.

    After each ``connect`` the runtime asks ``plan`` once for every scan's tag list: how to
    read those tags on this connection (the requests, the decoders of their replies), worked out
    once, without I/O, so a scan only sends and decodes. Every scan then gives its plan to
    ``read``. A plan belongs to the connection it was made on; the runtime plans again after
    a reconnect.

    ``read`` returns one sample per tag of the plan, in order (or the same as columns:
    :class:`Samples`). A request the device refuses marks only its own tags bad, and says why
    with them (``Sample.reason``, ``Samples.reasons``): the runtime logs a tag's quality
    change once, so a connector logs only what concerns its connection, never a tag's quality.
    A lost connection raises ConnectionLost so the runtime can back off and reconnect.
    """

    async def connect(self) -> None:
        """Open the connection to the device."""

    def plan(self, tags: Sequence[TagT_contra]) -> PlanT:
        """How to read these tags on this connection, once per scan's tag list; no I/O."""

    async def read(self, plan: PlanT) -> list[Sample] | Samples:
        """Read the plan's tags once."""

    async def close(self) -> None:
        """Close the connection; never raises."""


@runtime_checkable
class Subscriber(Protocol[TagT_contra]):
    """What a connector whose device can also push changes offers (OPC UA monitored items).

    The runtime uses ``subscribe`` instead of planned reads when ``subscribes`` (the source's
    config asks for it). ``subscribe`` sets up monitoring, calls ``deliver`` from the event
    loop as changes arrive, and keeps running while the subscription is healthy; when the
    session or subscription is lost it raises ConnectionLost (it never returns normally).
    """

    @property
    def subscribes(self) -> bool:
        """True when the source is to be monitored rather than polled."""

    async def subscribe(self, tags: Sequence[TagT_contra], deliver: Deliver) -> None:
        """Monitor the tags until the subscription is lost."""


class Writer(Protocol[TagT_contra]):
    """What a connector that can also write tags offers, for commands the write rules accepted.

    The caller decides every write with :func:`gateway.writes.check_write` first, giving it
    ``plc_type(tag)``; only an accepted value reaches ``write``, so nothing the rules refuse
    touches the wire. A write is sent once and never retried: after a timeout the device may
    have applied it, so the caller reads the tag back with ``read_back`` to learn the outcome.

    ``read_back`` is its own method rather than a planned ``read``: one tag, read at once,
    outside the scans and their plans.
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
