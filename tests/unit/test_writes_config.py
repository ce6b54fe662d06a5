"""Write keys in the tag map: write: limits per tag, gateway.write_max_age; nonsense refused."""

from __future__ import annotations

import pytest

from connectors.modbus.config import ModbusSource
from gateway.config import parse_config
from gateway.errors import ConfigError

HEAD = """\
gateway: {name: edge, writes: true}
sources:
  - name: press1
    protocol: modbus
    host: 127.0.0.1
    tags:
"""


def config(*tags: str, head: str = HEAD) -> str:
    return head + "".join(f"      - {tag}\n" for tag in tags)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    return info.value.problems


def test_write_limits_and_the_gateway_max_age_are_read() -> None:
    cfg = parse_config(
        config(
            "{name: sp, address: holding:150, type: int16, writable: true,"
            " write: {min: -10, max: 90.5, max_rate: 0.5, max_age: 5s}}",
            "{name: recipe, address: holding:160, type: string, length: 4, writable: true,"
            " write: {allowed: [PLAIN-500, 330, true]}}",
            "{name: plain, address: holding:170}",
            head=HEAD.replace("writes: true}", "writes: true, write_max_age: 2m}"),
        )
    )
    assert cfg.gateway.write_max_age == 120
    [source] = cfg.sources
    assert isinstance(source, ModbusSource)
    sp, recipe, plain = source.tags
    assert sp.write is not None
    assert (sp.write.min, sp.write.max, sp.write.max_rate, sp.write.max_age) == (-10, 90.5, 0.5, 5)
    assert recipe.write is not None
    assert recipe.write.allowed == ["PLAIN-500", 330, True]  # each keeps its YAML type
    assert [type(v) for v in recipe.write.allowed] == [str, int, bool]
    assert plain.write is None
    assert plain.writable is False


def test_the_gateway_max_age_defaults_to_30s() -> None:
    assert parse_config(config("{name: sp, address: holding:150}")).gateway.write_max_age == 30


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        (
            "{name: sp, address: holding:150, writable: true, write: {min: 10, max: 5}}",
            "sources[0].tags[0].write: min 10 is above max 5 (c.yaml:7)",
        ),
        (
            # decided: refused, not warned; limits without writable: true are a forgotten
            # switch or dead config, and the author should know at load
            "{name: sp, address: holding:150, write: {max: 5}}",
            "sources[0].tags[0]: write: limits need writable: true on the tag (or remove write:)",
        ),
        (
            "{name: sp, address: holding:150, writable: true, write: {max_rate: 0}}",
            "sources[0].tags[0].write.max_rate: Input should be greater than 0",
        ),
        (
            "{name: sp, address: holding:150, writable: true, write: {allowed: []}}",
            "sources[0].tags[0].write.allowed: List should have at least 1 item",
        ),
        (
            "{name: sp, address: holding:150, writable: true, write: {allowed: [1, 20], max: 10}}",
            "sources[0].tags[0].write: allowed value 20 is outside min..max",
        ),
        (
            "{name: sp, address: holding:150, writable: true, write: {max_age: soon}}",
            "sources[0].tags[0].write.max_age: 'soon' is not a duration",
        ),
        (
            "{name: sp, address: holding:150, writable: true, write: {max_rte: 1}}",
            "sources[0].tags[0].write.max_rte: unknown key (did you mean 'max_rate'?)",
        ),
        (
            "{name: sp, address: input:5, writable: true}",
            "sources[0].tags[0]: writable: true, but input registers are read-only in Modbus",
        ),
        (
            "{name: sp, address: discrete:5, writable: true}",
            "sources[0].tags[0]: writable: true, but discrete inputs are read-only in Modbus",
        ),
        (
            "{name: sp, address: holding:150, writable: true, multiplier: 0}",
            "sources[0].tags[0]: writable: true, but this scaling maps every raw value to one",
        ),
        (
            "{name: sp, address: holding:150, writable: true, scale: {raw: [0, 100], eng: [5, 5]}}",
            "sources[0].tags[0]: writable: true, but this scaling maps every raw value to one",
        ),
        (
            "{name: sp, address: coil:5, writable: true, write: {max: 1}}",
            "sources[0].tags[0]: write: min/max do not apply to a bool; use allowed",
        ),
    ],
)
def test_nonsense_is_refused_at_validation(tag: str, message: str) -> None:
    found = problems(config(tag))
    assert len(found) == 1, found
    assert found[0].startswith(message), found[0]


def test_a_read_only_table_without_writable_is_fine() -> None:
    parse_config(config("{name: level, address: input:5}", "{name: alarm, address: discrete:1}"))
