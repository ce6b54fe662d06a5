"""The YAML model of an Allen-Bradley Logix (EtherNet/IP) source and its tags."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, field_validator, model_validator

from connectors.logix.address import Address, parse_address
from connectors.logix.declared import LogixType, declare, parse_type
from connectors.logix.resolve import TagTable
from gateway.schema import Duration, SourceBase, TagBase

# Both are text in the YAML (the JSON Schema's view); their parsers decide the rest.
LogixAddress = Annotated[
    Address,
    BeforeValidator(
        lambda v: v if isinstance(v, Address) else parse_address(v), json_schema_input_type=str
    ),
    PlainSerializer(str),
]
DeclaredType = Annotated[
    LogixType, BeforeValidator(parse_type, json_schema_input_type=str), PlainSerializer(str)
]

DEFAULT_PORT = 44818
# port/link pairs: backplane|bp|enet|N / slot|IP, e.g. backplane/2/enet/10.1.1.5/backplane/0
_ROUTE = re.compile(r"^[A-Za-z0-9_.:-]+(/[A-Za-z0-9_.:-]+)*$")


class LogixTag(TagBase):
    """One controller or program tag (or a member, element, slice or bit of one)."""

    address: LogixAddress
    """As in Studio 5000: Tag, Program:Main.Tag, Arr[2,1], Udt.Member, Dint.5, Arr[0]{10}."""
    # Lets the source read without the controller's tag list.
    type: DeclaredType | None = None
    """The declared type of the address's last name, as in Studio 5000: DINT, REAL[100],
    STRING."""

    @model_validator(mode="after")
    def _type_fits_address(self) -> LogixTag:
        if self.type is not None:
            table = declare([(self.address, self.type)])
            try:
                TagTable(table.tags).resolve(self.address)
            except LookupError as exc:
                raise ValueError(f"{self.address} as {self.type}: {exc}") from exc
        return self


class LogixSource(SourceBase):
    """One CIP connection to a ControlLogix, CompactLogix or Micro800 controller."""

    protocol: Literal["logix"]
    """Allen-Bradley Logix over EtherNet/IP (CIP)."""
    host: str = Field(min_length=1)
    """The controller's (or its Ethernet module's) host name or IP address."""
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65534)  # pycomm3 refuses 65535
    """EtherNet/IP TCP port."""
    # None: no slot in the path; pycomm3 then assumes slot 0, and drops it for a Micro800.
    slot: int | None = Field(default=0, ge=0, le=255)
    """The controller's slot in the chassis; null for a Micro800."""
    route: str | None = None
    """A full CIP route instead of slot, e.g. backplane/2/enet/10.1.1.5/backplane/0."""
    timeout: Duration = 5.0
    """Longest wait for one reply."""
    # None (default): only when a tag does not declare its type.
    tag_list: bool | None = None
    """Upload the controller's tag list at connect: not set = only when a tag has no type;
    false = never (every tag declares its type); true = always."""
    tags: list[LogixTag] = Field(min_length=1)
    """The tags to read from this controller."""

    @field_validator("route")
    @classmethod
    def _route(cls, route: str | None) -> str | None:
        if route is None:
            return None
        steps = route.strip().strip("/")
        if not _ROUTE.fullmatch(steps) or len(steps.split("/")) % 2:
            raise ValueError(
                f"{route!r}: a route is port/link pairs, e.g. backplane/2/enet/10.1.1.5/backplane/0"
            )
        return steps

    @model_validator(mode="after")
    def _slot_or_route(self) -> LogixSource:
        if self.route is not None and "slot" in self.model_fields_set and self.slot is not None:
            raise ValueError(
                "set slot or route, not both (the route ends at the controller's slot)"
            )
        return self

    @model_validator(mode="after")
    def _declarations_agree(self) -> LogixSource:
        untyped = [t.name for t in self.tags if t.type is None]
        if self.tag_list is False and untyped:
            more = f" (and {len(untyped) - 10} more)" if len(untyped) > 10 else ""
            raise ValueError(
                f"tag_list: false reads only tags that declare their type (type: DINT, "
                f"type: REAL[100]...); no type on: {', '.join(untyped[:10])}{more}"
            )
        declare((t.address, t.type) for t in self.tags if t.type is not None)
        return self

    @property
    def uploads_tag_list(self) -> bool:
        """Whether connecting uploads the controller's tag list."""
        if self.tag_list is not None:
            return self.tag_list
        return any(t.type is None for t in self.tags)

    @property
    def path(self) -> str:
        """The connection path pycomm3 takes: ``host:port`` then the slot or route."""
        target = f"{self.host}:{self.port}"
        if self.route is not None:
            return f"{target}/{self.route}"
        if self.slot is None:
            return target
        return f"{target}/{self.slot}"
