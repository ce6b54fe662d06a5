"""The write rules: every refusal by name, before anything could reach a PLC; and what passes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from connectors.modbus.config import ModbusSource, ModbusTag
from connectors.opcua.config import OpcUaTag
from gateway.models import Value
from gateway.writes import (
    Accepted,
    Command,
    MalformedCommand,
    PlcType,
    RateLimiter,
    Refused,
    Rule,
    Scaling,
    WriteRates,
    boolean,
    check_write,
    floating,
    integer,
    parse_command,
    string,
    unsupported,
)

NOW = 1_763_762_540_000  # epoch ms the command arrives
SOURCE = ModbusSource.model_validate(
    {
        "name": "press1",
        "protocol": "modbus",
        "host": "127.0.0.1",
        "tags": [{"name": "x", "address": "holding:150"}],
    }
)
INT16 = integer("int16", 16, signed=True)
UINT32 = integer("uint32", 32, signed=False)
FLOAT32 = floating("float32", 32)


def tag(**spec: Any) -> ModbusTag:
    """A writable holding-register tag (uint16 unless the spec says otherwise)."""
    return ModbusTag.model_validate(
        {"name": "sp", "address": "holding:150", "writable": True, **spec}
    )


def decide(
    the_tag: ModbusTag | OpcUaTag,
    value: Value,
    *,
    plc: PlcType | None = None,
    writes: bool = True,
    issued: int = NOW,
    now: int = NOW,
    limiter: RateLimiter | None = None,
) -> Accepted | Refused:
    if plc is None and isinstance(the_tag, ModbusTag):
        plc = the_tag.plc_type()
    return check_write(
        Command(value, "cmd-1", issued),
        writes=writes,
        source=SOURCE,
        tag=the_tag,
        plc_type=plc,
        now=now,
        limiter=limiter or RateLimiter(),
        default_max_age=30.0,
    )


def refused(the_tag: ModbusTag | OpcUaTag, value: Value, **kw: Any) -> Refused:
    verdict = decide(the_tag, value, **kw)
    assert isinstance(verdict, Refused), verdict
    return verdict


def accepted(the_tag: ModbusTag | OpcUaTag, value: Value, **kw: Any) -> Accepted:
    verdict = decide(the_tag, value, **kw)
    assert isinstance(verdict, Accepted), verdict
    return verdict


# -- the two switches --------------------------------------------------------------------------


def test_writes_disabled_refuses_even_a_writable_tag() -> None:
    verdict = refused(tag(), 1, writes=False)
    assert verdict.rule is Rule.WRITES_DISABLED
    assert verdict.result == "refused"
    assert "gateway.writes is false" in verdict.reason


def test_a_tag_without_writable_true_is_refused() -> None:
    read_only = ModbusTag.model_validate({"name": "sp", "address": "holding:150"})
    verdict = refused(read_only, 1)
    assert verdict.rule is Rule.NOT_WRITABLE
    assert verdict.reason == "press1/sp is not writable: true in the config"


@pytest.mark.parametrize(
    ("address", "why"),
    [("input:5", "input registers are read-only"), ("discrete:2", "discrete inputs are read-only")],
)
def test_modbus_read_only_tables_are_refused_by_the_rules(address: str, why: str) -> None:
    # The config refuses writable: true there too; the rules do not rely on it.
    plc = ModbusTag.model_validate({"name": "x", "address": address}).plc_type()
    verdict = refused(tag(), 1 if address.startswith("input") else True, plc=plc)
    assert verdict.rule is Rule.NOT_WRITABLE
    assert why in verdict.reason


# -- expired -----------------------------------------------------------------------------------


def test_a_command_older_than_the_gateway_max_age_expires() -> None:
    verdict = refused(tag(), 1, issued=NOW - 30_001)
    assert verdict.rule is Rule.EXPIRED
    assert verdict.result == "expired"
    assert "max_age is 30s" in verdict.reason
    accepted(tag(), 1, issued=NOW - 30_000)


def test_the_tag_max_age_overrides_the_gateway_default() -> None:
    short = tag(write={"max_age": "2s"})
    assert refused(short, 1, issued=NOW - 2_001).rule is Rule.EXPIRED
    accepted(short, 1, issued=NOW - 1_999)


def test_a_command_from_the_future_beyond_max_age_expires() -> None:
    verdict = refused(tag(), 1, issued=NOW + 30_001)
    assert verdict.rule is Rule.EXPIRED
    assert "clocks" in verdict.reason
    accepted(tag(), 1, issued=NOW + 5_000)  # small skew between clocks is normal


# -- type --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plc", "value"),
    [
        (INT16, "12"),  # a string into an int16
        (FLOAT32, True),  # a bool into a float
        (boolean(), 1),  # a number into a bool
        (string(length=10), 5),  # a number into a string
        (INT16, None),
        (INT16, [1, 2]),  # an array into a scalar
        (replace(INT16, array=True), 3),  # a scalar into an array
        (unsupported("DateTime"), "2025-01-01T00:00:00Z"),
        (string(length=10, charset="latin-1"), "5 €"),  # the euro sign is not latin-1
    ],
    ids=lambda v: str(v) if isinstance(v, PlcType) else repr(v),
)
def test_a_value_of_the_wrong_type_is_refused(plc: PlcType, value: Value) -> None:
    assert refused(tag(), value, plc=plc).rule is Rule.TYPE


def test_a_tag_whose_plc_type_is_not_known_yet_is_refused() -> None:
    opcua = OpcUaTag.model_validate({"name": "sp", "node": "ns=2;s=Sp", "writable": True})
    verdict = refused(opcua, 1.5, plc=None)
    assert verdict.rule is Rule.TYPE
    assert "not known" in verdict.reason


# -- range -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ({"type": "int16"}, 70000),
        ({"type": "int16"}, -32769),
        ({"type": "uint16"}, -1),
        ({"type": "uint32"}, 2**32),
        ({"type": "int64"}, 2**63),
        ({"type": "uint64"}, 2**64),
        ({"type": "int16"}, 1.5),  # a fraction into an integer type
        ({"type": "float32"}, 1e39),
        ({"type": "float32"}, float("nan")),
        ({"type": "float64"}, float("inf")),
        ({"type": "float64"}, 10**400),
        ({"type": "string", "length": 2}, "FIVE!"),  # 5 bytes into 4
        # scaled: the raw value after inverse scaling must fit (700 -> raw 70000 > 65535)
        ({"type": "uint16", "scale": {"raw": [0, 10000], "eng": [0, 100]}}, 700),
        ({"type": "int16", "multiplier": 0.1}, 3276.8),  # raw 32768
        ({"type": "uint16", "multiplier": 0.1, "offset": -40}, -40.1),  # raw -1
        # clamped: readings never leave 0..100, so a write outside could never read back
        ({"type": "uint16", "scale": {"raw": [0, 1000], "eng": [0, 100], "clamp": True}}, 101),
    ],
    ids=lambda v: repr(v),
)
def test_a_value_that_does_not_fit_the_plc_type_is_refused(
    spec: dict[str, Any], value: Value
) -> None:
    assert refused(tag(**spec), value).rule is Rule.RANGE


@pytest.mark.parametrize(
    ("spec", "value", "raw"),
    [
        ({"type": "int16"}, 32767, 32767),
        ({"type": "int16"}, -32768, -32768),
        ({"type": "int16"}, 5.0, 5),  # a whole float is a whole number
        ({"type": "uint32"}, 2**32 - 1, 2**32 - 1),
        ({"type": "uint64"}, 2**64 - 1, 2**64 - 1),
        ({"type": "float32"}, 0.1, 0.1),
        ({"type": "float32"}, 3.4028235e38, 3.4028235e38),  # how float32's max is published
        ({"type": "float64"}, 7, 7.0),
        ({"type": "string", "length": 2}, "FOUR", "FOUR"),
        # inverse scaling is exact: 21.7 with x0.1 - 40 is 617, not 617.0000000000001
        ({"type": "int16", "multiplier": 0.1, "offset": -40}, 21.7, 617),
        ({"type": "float64", "multiplier": 0.1}, 0.3, 3.0),  # not 2.9999999999999996
        ({"type": "int16", "multiplier": 0.1}, 0.35, 4),  # raw 3.5 exactly, not 3.4999999...
        ({"type": "uint16", "scale": {"raw": [0, 27648], "eng": [0, 100]}}, 50, 13824),
        # between raw steps: the nearest one (33.3 is raw 9206.784)
        ({"type": "uint16", "scale": {"raw": [0, 27648], "eng": [0, 100]}}, 33.3, 9207),
        ({"type": "float32", "multiplier": 0.5}, 21.5, 43.0),
    ],
    ids=lambda v: repr(v),
)
def test_an_accepted_value_is_converted_to_what_the_plc_holds(
    spec: dict[str, Any], value: Value, raw: Value
) -> None:
    verdict = accepted(tag(**spec), value)
    assert verdict.value == raw
    assert type(verdict.value) is type(raw)


def test_arrays_are_checked_element_by_element_and_by_length() -> None:
    doubles = replace(floating("Double", 64), array=True, array_length=3)
    verdict = accepted(tag(), [1, 2.5, -3], plc=doubles)
    assert verdict.value == [1.0, 2.5, -3.0]
    short = refused(tag(), [1.0, 2.0], plc=doubles)
    assert short.rule is Rule.RANGE
    assert "2 element(s)" in short.reason
    bad = refused(tag(), [1.0, "x", 3.0], plc=doubles)
    assert bad.rule is Rule.TYPE
    assert bad.reason.startswith("[1] ")


# -- the tag's write: limits -------------------------------------------------------------------


def test_min_and_max_bound_the_engineering_value() -> None:
    limited = tag(type="int16", multiplier=0.1, write={"min": 0, "max": 90.5})
    below = refused(limited, -0.1)
    assert below.rule is Rule.MIN
    assert below.reason == "-0.1 is below min 0"
    above = refused(limited, 90.6)
    assert above.rule is Rule.MAX
    assert above.reason == "90.6 is above max 90.5"
    assert accepted(limited, 90.5).value == 905
    assert accepted(limited, 0).value == 0


def test_min_and_max_refuse_a_value_that_is_not_a_number() -> None:
    opcua = OpcUaTag.model_validate(
        {"name": "sp", "node": "ns=2;s=Sp", "writable": True, "write": {"max": 5}}
    )
    assert refused(opcua, "4", plc=string("String")).rule is Rule.TYPE


def test_allowed_lists_the_only_values_a_command_may_write() -> None:
    recipes = tag(type="string", length=8, write={"allowed": ["PLAIN-500", "SUGAR-330"]})
    verdict = refused(recipes, "DIET-330")
    assert verdict.rule is Rule.NOT_ALLOWED
    assert verdict.reason == 'DIET-330 is not one of "PLAIN-500", "SUGAR-330"'.replace(
        "DIET-330", '"DIET-330"'
    )
    assert accepted(recipes, "SUGAR-330").value == "SUGAR-330"
    states = tag(type="uint16", write={"allowed": [0, 1, 3]})
    assert refused(states, 2).rule is Rule.NOT_ALLOWED
    assert accepted(states, 3.0).value == 3
    valve = tag(address="coil:12", write={"allowed": [False]})  # may only be closed remotely
    assert refused(valve, True).rule is Rule.NOT_ALLOWED
    assert accepted(valve, False).value is False


# -- rate --------------------------------------------------------------------------------------


def test_max_rate_spaces_accepted_writes() -> None:
    once_a_second = tag(write={"max_rate": 1})
    limiter = RateLimiter()
    accepted(once_a_second, 1, limiter=limiter)
    verdict = refused(once_a_second, 2, limiter=limiter, issued=NOW + 999, now=NOW + 999)
    assert verdict.rule is Rule.RATE
    assert "at most 1 write(s) per second" in verdict.reason
    # The refused command did not use the budget up: 1 s after the accepted one, fine again.
    accepted(once_a_second, 3, limiter=limiter, issued=NOW + 1000, now=NOW + 1000)
    assert limiter.last == NOW + 1000


def test_a_refused_command_leaves_the_rate_limiter_alone() -> None:
    limited = tag(type="int16", write={"max_rate": 0.1})
    limiter = RateLimiter()
    assert refused(limited, 70000, limiter=limiter).rule is Rule.RANGE
    assert limiter.last is None
    accepted(limited, 7, limiter=limiter)


def test_a_clock_stepped_back_does_not_block_writes() -> None:
    limited = tag(write={"max_rate": 1})
    limiter = RateLimiter()
    accepted(limited, 1, limiter=limiter)
    accepted(limited, 2, limiter=limiter, issued=NOW - 60_000 + 1, now=NOW - 60_000)


def test_write_rates_keep_one_limiter_per_tag() -> None:
    rates = WriteRates()
    assert rates.limiter("press1", "sp") is rates.limiter("press1", "sp")
    assert rates.limiter("press1", "sp") is not rates.limiter("press2", "sp")


# -- read-back ---------------------------------------------------------------------------------


def test_read_back_matches_at_the_precision_the_plc_keeps() -> None:
    f32 = accepted(tag(type="float32"), 0.1)
    assert f32.matches(0.1)  # Modbus decodes float32 to its shortest decimal
    assert f32.matches(0.10000000149011612)  # OPC UA hands the float32 over as a double
    assert not f32.matches(0.1000001)
    scaled = accepted(tag(type="uint16", scale={"raw": [0, 27648], "eng": [0, 100]}), 33.3)
    assert scaled.expected == pytest.approx(33.3008, abs=1e-4)  # the raw step written
    assert scaled.matches(33.30078)  # the decoder's rounding of that step
    assert scaled.matches(33.3)  # whatever rounding: it is the same raw step
    assert not scaled.matches(33.29688)  # the raw step below
    padded = accepted(tag(type="string", length=4), "AB  ")
    assert padded.matches("AB")  # a fixed-length string reads back without its padding
    assert not padded.matches("ABC")
    coil = accepted(tag(address="coil:12"), True)
    assert coil.matches(True)
    assert not coil.matches(1)
    ints = accepted(tag(), [1, 2], plc=replace(UINT32, array=True))
    assert ints.matches([1, 2])
    assert not ints.matches([1, 3])
    assert not ints.matches([1])


# -- commands ----------------------------------------------------------------------------------


def test_parse_command_reads_value_id_and_ts() -> None:
    assert parse_command(b'{"value": 21.5, "id": "a1", "ts": 1763762540000}') == Command(
        21.5, "a1", 1763762540000
    )
    assert parse_command('{"value": null, "id": "a2", "ts": 1}').value is None


@pytest.mark.parametrize(
    ("payload", "message", "command_id"),
    [
        (b"{not json", "not JSON", None),
        (b"[1, 2]", "expected", None),
        (b'{"value": 1, "ts": 1}', "id must be", None),
        (b'{"value": 1, "id": "", "ts": 1}', "id must be", None),
        (b'{"value": 1, "id": "a", "ts": "now"}', "ts must be", "a"),
        (b'{"value": 1, "id": "a", "ts": true}', "ts must be", "a"),
        (b'{"id": "a", "ts": 1}', "value is missing", "a"),
        (b'{"value": 1, "id": "a", "ts": 1, "force": true}', "unknown key(s): force", "a"),
    ],
)
def test_a_malformed_command_says_what_is_wrong(
    payload: bytes, message: str, command_id: str | None
) -> None:
    with pytest.raises(
        MalformedCommand, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as info:
        parse_command(payload)
    assert info.value.id == command_id


def test_scaling_inverts_exactly_and_knows_when_it_cannot() -> None:
    scale = Scaling.of_multiplier(0.1, -40)
    assert scale.to_raw(21.7) == 617
    assert scale.to_eng(617) == pytest.approx(21.7)
    assert not Scaling.of_ranges((0, 10), (5, 5)).invertible
    assert not Scaling.of_multiplier(0, None).invertible
