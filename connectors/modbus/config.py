"""The YAML model of a Modbus TCP source and its tags."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, model_validator

from connectors.modbus.address import Address, parse_address
from connectors.modbus.codec import ByteOrder, DataType, register_count
from gateway.schema import Duration, SourceBase, Strict, TagBase
from gateway.writes import PlcType, Scaling, boolean, floating, integer, string

# What the YAML may write, for the JSON Schema editors read (parse_address decides): text, or a
# Modicon number left unquoted (YAML makes it an integer; a leading 0 would make it octal).
_ADDRESS_TEXT = Annotated[
    str,
    Field(
        pattern=r"^\s*((input|holding):\d+(\.(1[0-5]|\d))?|(coil|discrete):\d+"
        r"|[0134]\d{4,5}|[34]\d{4,5}\.(1[0-5]|\d))\s*$",
        json_schema_extra={
            "patternErrorMessage": "coil|discrete|input|holding:N, holding:N.BIT or 40101"
        },
    ),
]
_MODICON_NUMBERS = (
    Annotated[int, Field(ge=10001, le=19999)]  # discrete inputs, 5 digits
    | Annotated[int, Field(ge=100001, le=165536)]  # 6 digits
    | Annotated[int, Field(ge=30001, le=39999)]  # input registers
    | Annotated[int, Field(ge=300001, le=365536)]
    | Annotated[int, Field(ge=40001, le=49999)]  # holding registers
    | Annotated[int, Field(ge=400001, le=465536)]
)
ModbusAddress = Annotated[
    Address,
    BeforeValidator(
        lambda v: v if isinstance(v, Address) else parse_address(str(v)),
        json_schema_input_type=_ADDRESS_TEXT | _MODICON_NUMBERS,
    ),
    PlainSerializer(str),
]

# Protocol limits per request (Modbus application protocol spec, functions 1-4).
MAX_REGISTERS = 125
MAX_BITS = 2000


class Scale(Strict):
    """Linear scaling from a raw range to an engineering range."""

    raw: tuple[float, float]
    """Two raw device values, e.g. [0, 27648]..."""
    eng: tuple[float, float]
    """...and the engineering values they mean, e.g. [0, 100]."""
    clamp: bool = False
    """Keep scaled values inside the eng range."""

    @model_validator(mode="after")
    def _check(self) -> Scale:
        if self.raw[0] == self.raw[1]:
            raise ValueError("raw range is empty: its two ends must differ")
        return self


class ModbusTag(TagBase):
    """One value in a Modbus device's tables."""

    address: ModbusAddress
    """coil:N, discrete:N, input:N, holding:N (0-based), holding:N.BIT, or a Modicon number
    (1-based: 40101 is holding:100)."""
    unit_id: int | None = Field(default=None, ge=0, le=255)
    """The unit behind a gateway, when it is not the source's."""
    type: DataType | None = None
    """The value's type (default: bool for coils, discrete inputs and bits, else uint16)."""
    length: int | None = Field(default=None, ge=1, le=MAX_REGISTERS)
    """type string: its length in registers, two characters each."""
    byte_order: ByteOrder | None = None
    """This tag's byte order (default: the source's)."""
    scale: Scale | None = None
    """Linear scaling from a raw range to an engineering range."""
    multiplier: float | None = None
    """value = raw x multiplier + offset (instead of scale)."""
    offset: float | None = None
    """value = raw x multiplier + offset (instead of scale)."""

    @model_validator(mode="after")
    def _check(self) -> ModbusTag:
        data_type = self.data_type
        if self.address.is_bit_table or self.address.bit is not None:
            if data_type != "bool":
                raise ValueError(
                    f"{self.address} holds one bit: type must be bool, not {data_type}"
                )
        elif data_type == "bool":
            where = f"{self.address.table}:{self.address.offset}"
            raise ValueError(f"type bool on a register needs a bit number, e.g. {where}.0")
        if data_type == "string" and not self.length:
            raise ValueError("type string needs length (registers, two characters each)")
        if data_type != "string" and self.length is not None:
            raise ValueError("length only applies to type string")
        if self.scale is not None and (self.multiplier is not None or self.offset is not None):
            raise ValueError("use either scale or multiplier/offset, not both")
        if self.scaled and data_type in ("bool", "string"):
            raise ValueError(f"a {data_type} cannot be scaled")
        end = self.address.offset + self.register_count
        if end > 65536:
            raise ValueError(f"{self.address} with {self.register_count} registers runs past 65535")
        if self.writable:
            self._check_writable()
        return self

    def _check_writable(self) -> None:
        plc = self.plc_type()
        if plc.read_only is not None:
            raise ValueError(f"writable: true, but {plc.read_only}")
        if plc.scale is not None and not plc.scale.invertible:
            raise ValueError("writable: true, but this scaling maps every raw value to one value")
        limits = self.write
        if (
            limits is not None
            and (limits.min is not None or limits.max is not None)
            and plc.kind in ("bool", "string")
        ):
            raise ValueError(f"write: min/max do not apply to a {plc.name}; use allowed")

    @property
    def scaled(self) -> bool:
        """True when the tag converts raw device values to engineering values."""
        return self.scale is not None or self.multiplier is not None or self.offset is not None

    @property
    def data_type(self) -> DataType:
        """The declared type, or the table's natural one."""
        if self.type is not None:
            return self.type
        return "bool" if self.address.is_bit_table or self.address.bit is not None else "uint16"

    @property
    def register_count(self) -> int:
        """How many addresses (registers or bits) this tag spans."""
        if self.address.is_bit_table or self.address.bit is not None:
            return 1
        return register_count(self.data_type, self.length)

    def plc_type(self) -> PlcType:
        """What the device holds at this address, for the write rules (scaling included)."""
        data_type = self.data_type
        if data_type == "bool":
            plc = boolean()
        elif data_type == "string":
            plc = string(length=2 * (self.length or 0), charset="latin-1")
        elif data_type.startswith("float"):
            plc = floating(data_type, 16 * register_count(data_type))
        else:
            bits = 16 * register_count(data_type)
            plc = integer(data_type, bits, signed=not data_type.startswith("u"))
        if self.scale is not None:
            scale = Scaling.of_ranges(self.scale.raw, self.scale.eng, self.scale.clamp)
            plc = replace(plc, scale=scale)
        elif self.scaled:
            plc = replace(plc, scale=Scaling.of_multiplier(self.multiplier, self.offset))
        if self.address.table == "discrete":
            plc = replace(plc, read_only="discrete inputs are read-only in Modbus")
        elif self.address.table == "input":
            plc = replace(plc, read_only="input registers are read-only in Modbus")
        return plc


class ModbusSource(SourceBase):
    """One Modbus TCP connection (a PLC, or a gateway with several unit ids behind it)."""

    protocol: Literal["modbus"]
    """Modbus TCP."""
    host: str
    """The device's host name or IP address."""
    port: int = Field(default=502, ge=1, le=65535)
    """The device's TCP port."""
    unit_id: int = Field(default=1, ge=0, le=255)
    """Modbus unit id (slave id) of the device or of the unit behind a gateway."""
    byte_order: ByteOrder = "ABCD"
    """Where a value's bytes sit in the registers: ABCD, CDAB, BADC, DCBA (64-bit names too)."""
    timeout: Duration = 3.0
    """Longest wait for one reply."""
    retries: int = Field(default=0, ge=0, le=10)
    """Extra tries of a request that got no answer."""
    request_delay: Duration | None = None
    """Pause between requests, for slow serial gateways."""
    max_gap: int = Field(default=0, ge=0, le=MAX_REGISTERS)
    """Unused registers one request may read to merge two requests into one."""
    max_registers_per_read: int = Field(default=MAX_REGISTERS, ge=1, le=MAX_REGISTERS)
    """Cap on registers per read request, for devices that refuse long reads."""
    # Each connection waits on its own replies: only for devices that accept that many clients.
    connections: int = Field(default=1, ge=1, le=16)
    """TCP connections a scan's requests are spread over (only if the device accepts as many
    clients)."""
    tags: list[ModbusTag] = Field(min_length=1)
    """The values to read from this device."""
