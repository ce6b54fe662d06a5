"""The write rules: whether a command may write a tag, and the value the PLC is sent.

Pure: no I/O, no clock, no logging. The caller (the MQTT command wiring) hands over the
gateway's switch, the source and tag, the command, the time it arrived and the tag's rate
limiter; it gets back either :class:`Accepted` (the value for the connector's ``write``) or
:class:`Refused` (the rule and a reason for a person). A refused command never reaches a
connector, so it never reaches the wire.

The rules, in the order they are checked: ``writes_disabled`` (``gateway.writes`` is false),
``not_writable`` (the tag lacks ``writable: true``, or the device cannot be written there),
``expired`` (issued longer than ``max_age`` before it arrived), ``type`` (a string into an
int16, a bool into a float...), ``range`` (does not fit the PLC's type: 70000 into an int16, a
fraction into an integer; a scaled tag's raw value after inverse scaling), ``min``/``max`` and
``not_allowed`` (the tag's ``write:`` limits), ``rate`` (``write.max_rate``).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Literal

from gateway.models import Value
from gateway.schema import SourceBase, TagBase, WriteLimits, format_duration

MAX_ID_LENGTH = 256


class Rule(StrEnum):
    """The name of the rule that refused a command: the result's machine-readable reason."""

    WRITES_DISABLED = "writes_disabled"
    NOT_WRITABLE = "not_writable"
    EXPIRED = "expired"
    TYPE = "type"
    RANGE = "range"
    MIN = "min"
    MAX = "max"
    NOT_ALLOWED = "not_allowed"
    RATE = "rate"


@dataclass(frozen=True, slots=True)
class Command:
    """A write command as the MES sent it: the value, its id, and when it was issued."""

    value: Value
    id: str
    ts: int  # epoch ms when the MES issued the command


class MalformedCommand(ValueError):
    """A command payload that is not ``{"value": ..., "id": "...", "ts": <epoch ms>}``."""

    def __init__(self, message: str, command_id: str | None = None) -> None:
        super().__init__(message)
        self.id = command_id  # the command's id when one could be read, for its result


def parse_command(payload: bytes | str) -> Command:
    """A command from its JSON payload; raises MalformedCommand saying what is wrong."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedCommand(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise MalformedCommand('expected {"value": ..., "id": "...", "ts": <epoch ms>}')
    command_id = body.get("id")
    if not isinstance(command_id, str) or not command_id or len(command_id) > MAX_ID_LENGTH:
        raise MalformedCommand(f"id must be a string of 1 to {MAX_ID_LENGTH} characters")
    ts = body.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise MalformedCommand("ts must be the epoch ms the command was issued", command_id)
    if "value" not in body:
        raise MalformedCommand("value is missing", command_id)
    unknown = sorted(set(body) - {"value", "id", "ts"})
    if unknown:
        raise MalformedCommand(f"unknown key(s): {', '.join(unknown)}", command_id)
    return Command(body["value"], command_id, ts)


def _exact(number: float) -> Fraction:
    """A YAML number as the exact decimal it was written as (0.1 is 1/10, not 0.1000...0555)."""
    return Fraction(number) if isinstance(number, int) else Fraction(repr(float(number)))


@dataclass(frozen=True, slots=True)
class Scaling:
    """A tag's linear scaling, ``eng = raw * gain + offset``, in exact fractions.

    Exact so that the inverse of a decimal setpoint is exact too: 0.3 with multiplier 0.1 is
    raw 3, not 2.9999999999999996 (which an integer tag would round, but a float tag keeps).
    """

    gain: Fraction
    offset: Fraction
    eng_range: tuple[float, float] | None = None  # clamped tags: no reading ever leaves it

    @classmethod
    def of_ranges(
        cls, raw: tuple[float, float], eng: tuple[float, float], clamp: bool = False
    ) -> Scaling:
        """The scaling that maps the raw range onto the engineering range."""
        r0, r1 = (_exact(x) for x in raw)
        e0, e1 = (_exact(x) for x in eng)
        gain = (e1 - e0) / (r1 - r0)
        return cls(gain, e0 - r0 * gain, (min(eng), max(eng)) if clamp else None)

    @classmethod
    def of_multiplier(cls, multiplier: float | None, offset: float | None) -> Scaling:
        """The scaling ``eng = raw * multiplier + offset``."""
        return cls(
            _exact(1 if multiplier is None else multiplier), _exact(0 if offset is None else offset)
        )

    @property
    def invertible(self) -> bool:
        """False when every raw value maps to one engineering value (nothing to write back)."""
        return self.gain != 0

    def to_raw(self, eng: float) -> Fraction:
        """The exact raw value of an engineering value."""
        return (_exact(eng) - self.offset) / self.gain

    def to_eng(self, raw: float) -> float:
        """The engineering value of a raw value."""
        return float(_exact(raw) * self.gain + self.offset)


Kind = Literal["bool", "int", "float", "string", "unsupported"]


@dataclass(frozen=True, slots=True)
class PlcType:
    """What the device holds at a tag, as far as writing it is concerned.

    Made by each connector from what it knows: a Modbus tag's config (its type, length and
    scaling), an OPC UA variable's DataType and ValueRank.
    """

    name: str  # the device's own name for the type (int16, Float, ...), for messages
    kind: Kind
    bits: int = 0  # int and float: width
    signed: bool = True  # int
    length: int | None = None  # string: most bytes the device holds (None: any)
    charset: str = "utf-8"  # string
    array: bool = False  # a one-dimensional array of the type
    array_length: int | None = None  # its fixed length, when the device says (None: any)
    scale: Scaling | None = None  # engineering <-> raw (Modbus scale, multiplier/offset)
    read_only: str | None = None  # why the device can never be written there

    def __str__(self) -> str:
        if not self.array:
            return self.name
        return f"array of {self.array_length or 'any number of'} {self.name}"


def boolean(name: str = "bool") -> PlcType:
    """A bit."""
    return PlcType(name, "bool")


def integer(name: str, bits: int, signed: bool) -> PlcType:
    """A whole number of ``bits`` bits, signed or not."""
    return PlcType(name, "int", bits, signed)


def floating(name: str, bits: int) -> PlcType:
    """An IEEE 754 float of 32 or 64 bits."""
    return PlcType(name, "float", bits)


def string(name: str = "string", length: int | None = None, charset: str = "utf-8") -> PlcType:
    """Text of at most ``length`` bytes in ``charset``."""
    return PlcType(name, "string", length=length, charset=charset)


def unsupported(name: str) -> PlcType:
    """A type the gateway does not write (a structure, a DateTime...)."""
    return PlcType(name, "unsupported")


def int_range(plc: PlcType) -> tuple[int, int]:
    """The smallest and largest value of an integer type."""
    if plc.signed:
        return -(2 ** (plc.bits - 1)), 2 ** (plc.bits - 1) - 1
    return 0, 2**plc.bits - 1


@dataclass(frozen=True, slots=True)
class Refused:
    """A command the rules refuse; nothing was written."""

    rule: Rule
    reason: str  # for a person: what is wrong and what the limit is

    @property
    def result(self) -> Literal["refused", "expired"]:
        """The command's result: ``expired`` for an expired command, else ``refused``."""
        return "expired" if self.rule is Rule.EXPIRED else "refused"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A command the rules accept: ``value`` is what to hand the connector's ``write``."""

    value: Value  # the PLC's own value: of its type, raw for a scaled tag
    expected: Value  # what reading the tag back should give (engineering units)
    plc_type: PlcType

    def matches(self, read: Value) -> bool:
        """True when a read-back value shows this write (to the precision the PLC keeps)."""
        if self.plc_type.array:
            if not isinstance(read, list) or not isinstance(self.expected, list):
                return False
            return len(read) == len(self.expected) and all(
                _same_value(self.plc_type, want, got)
                for want, got in zip(self.expected, read, strict=True)
            )
        return _same_value(self.plc_type, self.expected, read)


def _same_value(plc: PlcType, want: Value, got: Value) -> bool:
    """One element of a read-back against the value written."""
    if plc.kind == "bool":
        return isinstance(got, bool) and got is want
    if plc.kind == "string":
        if not isinstance(got, str) or not isinstance(want, str):
            return False
        # A fixed-length string comes back without the padding a shorter one was given.
        return got == (want.rstrip(" \x00") if plc.length is not None else want)
    if not _is_number(got) or not _is_number(want):
        return False
    assert isinstance(got, int | float)
    assert isinstance(want, int | float)
    if plc.scale is not None:
        if plc.kind == "int":  # the raw steps must agree; decimals are the scaling's noise
            return round(plc.scale.to_raw(got)) == round(plc.scale.to_raw(want))
        return math.isclose(got, want, rel_tol=1e-6 if plc.bits == 32 else 1e-9, abs_tol=1e-12)
    if plc.kind == "float" and plc.bits == 32:
        return struct.pack(">f", got) == struct.pack(">f", want)
    return got == want


class RateLimiter:
    """One tag's write budget: accepted writes at least ``1 / max_rate`` seconds apart."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None  # epoch ms of the last accepted write


class WriteRates:
    """The rate limiters of every tag, made on first use (as many as the config has tags)."""

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str], RateLimiter] = {}

    def limiter(self, source: str, tag: str) -> RateLimiter:
        """The limiter of one tag."""
        key = (source, tag)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = RateLimiter()
        return limiter


class _Refuse(Exception):
    """Raised inside the rules to stop at the first refusal."""

    def __init__(self, rule: Rule, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


def check_write(
    command: Command,
    *,
    writes: bool,
    source: SourceBase,
    tag: TagBase,
    plc_type: PlcType | None,
    now: int,
    limiter: RateLimiter,
    default_max_age: float,
) -> Accepted | Refused:
    """Decide a command: the value to write, or the first rule that refuses it.

    ``writes`` is ``gateway.writes``; ``plc_type`` what the connector knows of the tag (None:
    not yet known, e.g. the source never connected); ``now`` the epoch ms the command arrived;
    ``default_max_age`` is ``gateway.write_max_age`` in seconds. An accepted command is
    recorded in ``limiter``.
    """
    where = f"{source.name}/{tag.name}"
    limits = tag.write or WriteLimits()
    try:
        if not writes:
            raise _Refuse(
                Rule.WRITES_DISABLED, "gateway.writes is false: this gateway writes nothing"
            )
        if not tag.writable:
            raise _Refuse(Rule.NOT_WRITABLE, f"{where} is not writable: true in the config")
        _check_age(command, now, limits.max_age or default_max_age)
        if plc_type is None:
            raise _Refuse(
                Rule.TYPE,
                f"the PLC type of {where} is not known (the source has not connected yet, "
                "or the device did not give it)",
            )
        if plc_type.read_only is not None:
            raise _Refuse(Rule.NOT_WRITABLE, f"{where}: {plc_type.read_only}")
        value, expected = _convert(plc_type, limits, command.value)
        _check_rate(limits, limiter, now)
    except _Refuse as refusal:
        return Refused(refusal.rule, refusal.reason)
    limiter.last = now
    return Accepted(value, expected, plc_type)


def _check_age(command: Command, now: int, max_age: float) -> None:
    age = (now - command.ts) / 1000
    if age > max_age:
        raise _Refuse(
            Rule.EXPIRED,
            f"issued {age:.1f} s before it arrived; max_age is {format_duration(max_age)}",
        )
    if -age > max_age:
        # A command from the future cannot be aged: the MES's clock or ours is wrong.
        raise _Refuse(
            Rule.EXPIRED,
            f"issued {-age:.1f} s after it arrived: the clocks of the sender and the gateway "
            f"disagree by more than max_age ({format_duration(max_age)})",
        )


def _check_rate(limits: WriteLimits, limiter: RateLimiter, now: int) -> None:
    if limits.max_rate is None or limiter.last is None:
        return
    since = (now - limiter.last) / 1000
    # A clock stepped back (since < 0) must not block writes until it catches up.
    if 0 <= since < 1 / limits.max_rate:
        raise _Refuse(
            Rule.RATE,
            f"at most {limits.max_rate:g} write(s) per second; the last was {since:.3f} s ago",
        )


def _convert(plc: PlcType, limits: WriteLimits, value: Value) -> tuple[Value, Value]:
    """The PLC value and the expected read-back of a command's value, or a refusal."""
    if plc.kind == "unsupported":
        raise _Refuse(Rule.TYPE, f"writing a {plc.name} is not supported")
    if not plc.array:
        return _convert_one(plc, limits, value, "")
    if not isinstance(value, list):
        raise _Refuse(Rule.TYPE, f"the tag is an {plc}: send a JSON array, not {_show(value)}")
    if plc.array_length and len(value) != plc.array_length:
        raise _Refuse(Rule.RANGE, f"the tag is an {plc}: got {len(value)} element(s)")
    pairs = [_convert_one(plc, limits, item, f"[{i}] ") for i, item in enumerate(value)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _convert_one(plc: PlcType, limits: WriteLimits, value: Value, at: str) -> tuple[Value, Value]:
    raw, expected = _CONVERTERS[plc.kind](plc, value, at)
    _check_limits(limits, value, at)
    return raw, expected


def _to_bool(plc: PlcType, value: Value, at: str) -> tuple[Value, Value]:
    if not isinstance(value, bool):
        raise _Refuse(Rule.TYPE, f"{at}a {plc.name} takes true or false, not {_show(value)}")
    return value, value


def _number(plc: PlcType, value: Value, at: str) -> int | float:
    if not _is_number(value):
        raise _Refuse(Rule.TYPE, f"{at}a {plc.name} takes a number, not {_show(value)}")
    assert isinstance(value, int | float)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Refuse(Rule.RANGE, f"{at}{value} is not a finite number")
    if plc.scale is not None and plc.scale.eng_range is not None:
        low, high = plc.scale.eng_range
        if not low <= value <= high:
            raise _Refuse(
                Rule.RANGE, f"{at}{value!r} is outside the scaled range {low:g}..{high:g}"
            )
    return value


def _to_int(plc: PlcType, value: Value, at: str) -> tuple[Value, Value]:
    number = _number(plc, value, at)
    if plc.scale is not None:
        # The nearest raw step: an engineering setpoint rarely falls on one exactly.
        raw = round(plc.scale.to_raw(number))
        what = f"{at}{number!r} scales to raw {raw}, which"
    elif isinstance(number, float) and not number.is_integer():
        raise _Refuse(
            Rule.RANGE, f"{at}{number!r} has a fraction: a {plc.name} holds whole numbers"
        )
    else:
        raw = int(number)
        what = f"{at}{number!r}"
    low, high = int_range(plc)
    if not low <= raw <= high:
        raise _Refuse(Rule.RANGE, f"{what} does not fit a {plc.name} ({low}..{high})")
    return raw, (raw if plc.scale is None else plc.scale.to_eng(raw))


def _to_float(plc: PlcType, value: Value, at: str) -> tuple[Value, Value]:
    number = _number(plc, value, at)
    try:
        raw = float(plc.scale.to_raw(number)) if plc.scale is not None else float(number)
        if plc.bits == 32:
            struct.pack(">f", raw)  # rounds to the nearest float32, or overflows
    except OverflowError:
        scaled = " after scaling" if plc.scale is not None else ""
        raise _Refuse(Rule.RANGE, f"{at}{number!r}{scaled} does not fit a {plc.name}") from None
    return raw, float(number)


def _to_string(plc: PlcType, value: Value, at: str) -> tuple[Value, Value]:
    if not isinstance(value, str):
        raise _Refuse(Rule.TYPE, f"{at}a {plc.name} takes a JSON string, not {_show(value)}")
    try:
        size = len(value.encode(plc.charset))
    except UnicodeEncodeError as exc:
        raise _Refuse(
            Rule.TYPE, f"{at}{_show(value)}: {exc.object[exc.start]!r} is not {plc.charset}"
        ) from exc
    if plc.length is not None and size > plc.length:
        raise _Refuse(Rule.RANGE, f"{at}{size} bytes do not fit a {plc.name} of {plc.length} bytes")
    return value, value


_CONVERTERS: dict[Kind, Callable[[PlcType, Value, str], tuple[Value, Value]]] = {
    "bool": _to_bool,
    "int": _to_int,
    "float": _to_float,
    "string": _to_string,
}


def _check_limits(limits: WriteLimits, value: Value, at: str) -> None:
    """The tag's ``write:`` limits, on the engineering value the command carries."""
    if limits.min is not None or limits.max is not None:
        if not _is_number(value):
            raise _Refuse(Rule.TYPE, f"{at}the tag has min/max: send a number")
        assert isinstance(value, int | float)
        if limits.min is not None and value < limits.min:
            raise _Refuse(Rule.MIN, f"{at}{value!r} is below min {limits.min:g}")
        if limits.max is not None and value > limits.max:
            raise _Refuse(Rule.MAX, f"{at}{value!r} is above max {limits.max:g}")
    if limits.allowed is not None and not any(_same(value, a) for a in limits.allowed):
        shown = ", ".join(_show(a) for a in limits.allowed)
        raise _Refuse(Rule.NOT_ALLOWED, f"{at}{_show(value)} is not one of {shown}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(value: Value, allowed: bool | int | float | str) -> bool:
    """Equal and of the same kind: ``true`` is not ``1`` and ``"1"`` is not ``1``."""
    if isinstance(value, bool) or isinstance(allowed, bool):
        return value is allowed
    if _is_number(value) and _is_number(allowed):
        return value == allowed
    return isinstance(value, str) and value == allowed


def _show(value: Value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
