"""Typed building blocks of the YAML tag map: durations, sizes, names, tags."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
MIN_SCAN = 0.001  # seconds: no PLC answers faster over TCP
MAX_DURATION = 3650 * 86400.0  # longer is a typo, and would overflow date arithmetic
MAX_SIZE = 2**50
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


def parse_duration(value: object) -> float:
    """Parse ``250ms``, ``1s``, ``5m``, ``2h``, ``7d`` (or bare seconds) into seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 250ms, 1s, 5m or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration; use e.g. 250ms, 1s, 5m or 7d")
    if not seconds > 0:
        raise ValueError("a duration must be greater than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than 3650d; is a unit missing or wrong?")
    return seconds


def parse_size(value: object) -> int:
    """Parse ``512MiB``, ``2GB`` (or a bare number of bytes) into bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MiB or 2GB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2) or "B"])
    else:
        raise ValueError(f"{value!r} is not a size; use e.g. 512MiB or 2GB")
    if size <= 0:
        raise ValueError("a size must be greater than zero")
    if size > MAX_SIZE:
        raise ValueError(f"{value!r} is larger than 1PiB; is a unit wrong?")
    return size


def format_duration(seconds: float) -> str:
    """Render seconds back into the shortest exact YAML duration."""
    ms = round(seconds * 1000)
    for unit, factor in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % factor == 0:
            return f"{ms // factor}{unit}"
    return f"{ms}ms"


# What the YAML may write, for the JSON Schema editors read (plantgate.schema.json); the parsers
# above decide. Bare numbers are seconds and bytes.
_DURATION_TEXT = Annotated[
    str,
    Field(
        pattern=_DURATION.pattern,
        json_schema_extra={"patternErrorMessage": "a duration such as 250ms, 1s, 5m, 2h or 7d"},
    ),
]
_SIZE_TEXT = Annotated[
    str,
    Field(
        pattern=_SIZE.pattern,
        json_schema_extra={"patternErrorMessage": "a size such as 512MiB, 1GiB or 2GB"},
    ),
]

Duration = Annotated[
    float,
    BeforeValidator(
        parse_duration,
        json_schema_input_type=_DURATION_TEXT | Annotated[float, Field(gt=0, le=MAX_DURATION)],
    ),
    PlainSerializer(format_duration),
]
"""Seconds, written in YAML as ``250ms``, ``1s``, ``5m``, ``7d``."""

Size = Annotated[
    int,
    BeforeValidator(
        parse_size, json_schema_input_type=_SIZE_TEXT | Annotated[int, Field(gt=0, le=MAX_SIZE)]
    ),
]
"""Bytes, written in YAML as ``512MiB`` or ``2GB``."""

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=64)]
"""A name that is safe in MQTT topics and as a Sparkplug id."""

TagName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", min_length=1, max_length=128)
]
"""A tag name: letters, digits, ``_ - .`` (dots let UDT members nest)."""


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, never silently ignored."""

    # The string under a field is its description in the JSON Schema: ``plantgate schema``
    # reads it from the source (pydantic's use_attribute_docstrings would at every start).
    model_config = ConfigDict(extra="forbid", frozen=True)


class WriteLimits(Strict):
    """A writable tag's limits on what a command may write (``write:`` under the tag)."""

    min: float | None = None
    """Lowest value a command may write, in engineering units like the readings."""
    max: float | None = None
    """Highest value a command may write, in engineering units like the readings."""
    allowed: list[StrictBool | StrictInt | StrictFloat | StrictStr] | None = Field(
        default=None, min_length=1
    )
    """The only values a command may write (enumerations, recipe names)."""
    max_rate: float | None = Field(default=None, gt=0)
    """Accepted writes per second, at most."""
    max_age: Duration | None = None
    """A command older than this on arrival expires (default: gateway.write_max_age)."""

    @model_validator(mode="after")
    def _check(self) -> WriteLimits:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        for value in self.allowed or ():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if (self.min is not None and value < self.min) or (
                self.max is not None and value > self.max
            ):
                raise ValueError(f"allowed value {value!r} is outside min..max")
        return self


class TagBase(Strict):
    """Keys every tag has, whatever its protocol."""

    name: TagName
    """The tag's name in topics: letters, digits, '_', '-' and '.'; unique within its source."""
    units: str | None = None
    """Engineering units, e.g. degC; for people reading the config (JSON payloads omit it)."""
    deadband: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    """on_change: a number is reported when it moved more than this from the last reported
    value."""
    report: Literal["on_change", "always"] = "on_change"
    """on_change: only changed values (and quality changes); always: every scan."""
    heartbeat: Duration | None = None
    """Republish an unchanged value at least this often (on_change only)."""
    scan: Annotated[Duration, Field(ge=MIN_SCAN)] | None = None
    """This tag's own scan interval (default: the source's scan)."""
    writable: bool = False
    """Commands may write this tag (also needs gateway.writes: true)."""
    write: WriteLimits | None = None
    """Limits on what a command may write to this tag (needs writable: true)."""

    @model_validator(mode="after")
    def _write_limits(self) -> TagBase:
        # Refused rather than ignored: limits on a read-only tag mean writable: true is missing,
        # or the limits are dead config; either way the author should decide.
        if self.write is not None and not self.writable:
            raise ValueError("write: limits need writable: true on the tag (or remove write:)")
        return self


class SourceBase(Strict):
    """Keys every source (one PLC connection) has, whatever its protocol."""

    name: Name
    """The source's name in topics: letters, digits, '_' and '-'; unique."""
    scan: Annotated[Duration, Field(ge=MIN_SCAN)] = 1.0
    """How often its tags are read (a tag's own scan overrides it)."""
    connect_timeout: Duration = 5.0
    """Longest wait for the connection to the device to open."""
    backoff_max: Duration = 30.0
    """Longest wait between reconnect attempts (full-jitter exponential backoff from 0.5s)."""


class Credentials(Strict):
    """A user name and its password, given through ``${VAR}`` or read from ``password_file``."""

    username: str | None = None
    """User name to log in with (anonymous when not set)."""
    password: str | None = None
    """The password, as ${VAR} from the environment (a literal is warned about)."""
    password_file: Path | None = None
    """A file holding the password (e.g. a container secret), instead of password."""

    @model_validator(mode="after")
    def _one_secret(self) -> Credentials:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        return self

    def secret(self) -> str | None:
        """The password, read from password_file when that is how it is given."""
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password
