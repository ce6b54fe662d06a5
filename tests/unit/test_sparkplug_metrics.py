"""Metrics: one per tag, aliases unique across the edge node, types declared or learnt."""

from __future__ import annotations

from connectors.logix.config import LogixSource
from connectors.modbus.config import ModbusSource
from gateway.sparkplug.datatypes import DataType
from gateway.sparkplug.metrics import (
    FIRST_TAG_ALIAS,
    NODE_ALIASES,
    Aliases,
    SourceMetrics,
    TagHint,
    metric_name,
)
from gateway.sparkplug.tagmap import source_metrics

T = DataType


def test_udt_members_become_folders() -> None:
    assert metric_name("recipe.speed") == "recipe/speed"
    assert metric_name("recipe.limits.high") == "recipe/limits/high"
    assert metric_name("oil_temp") == "oil_temp"


def test_aliases_are_unique_across_the_edge_node() -> None:
    aliases = Aliases()
    press, oven = SourceMetrics("press1", aliases), SourceMetrics("oven", aliases)
    press.learn(["a", "b"], [1, 2])
    oven.learn(["a", "c"], [1, 2])
    taken = [s.alias for s in press.specs + oven.specs]
    assert len(set(taken)) == 4
    assert min(taken) == FIRST_TAG_ALIAS > max(NODE_ALIASES.values())
    assert press.by_alias(oven.spec("a").alias) is None  # each source finds only its own


def test_learning_says_when_the_birth_is_out_of_date() -> None:
    metrics = SourceMetrics("press1", Aliases())
    assert metrics.learn(["temp", "count"], [21.5, 3]) is True
    assert metrics.learn(["temp", "count"], [22.0, 4]) is False
    assert metrics.learn(["temp", "recipe.name"], [22.0, "PET-05"]) is True  # a new member
    assert [s.tag for s in metrics.specs] == ["temp", "count", "recipe.name"]
    assert metrics.by_name("recipe/name") is metrics.spec("recipe.name")
    assert metrics.spec("count").datatype is T.Int64


def test_a_type_unknown_at_first_is_settled_by_the_first_value() -> None:
    metrics = SourceMetrics("oven", Aliases())
    assert metrics.learn(["zone1"], [None]) is True
    assert metrics.spec("zone1").datatype is T.Unknown
    alias = metrics.spec("zone1").alias
    assert metrics.learn(["zone1"], [None]) is False
    assert metrics.learn(["zone1"], [[]]) is False  # an empty list says nothing either
    assert metrics.learn(["zone1"], [180.5]) is True
    assert metrics.spec("zone1").datatype is T.Double
    assert metrics.spec("zone1").alias == alias
    assert metrics.by_alias(alias) is metrics.spec("zone1")
    assert metrics.learn(["zone1"], ["text"]) is False  # settled once, then fixed


def test_a_declared_type_and_units_win_over_the_value() -> None:
    metrics = SourceMetrics("filler", Aliases(), {"count": TagHint("DINT", "bottles")})
    metrics.learn(["count"], [None])
    spec = metrics.spec("count")
    assert (spec.datatype, spec.units) == (T.Int32, "bottles")
    assert metrics.learn(["count"], [7]) is False


def test_modbus_tags_are_declared_when_the_tag_map_is_loaded() -> None:
    source = ModbusSource.model_validate(
        {
            "name": "press1",
            "protocol": "modbus",
            "host": "127.0.0.1",
            "tags": [
                {"name": "oil_temp", "address": "holding:100", "type": "float32", "units": "degC"},
                {
                    "name": "level",
                    "address": "40003",
                    "scale": {"raw": [0, 27648], "eng": [0, 100]},
                },
                {"name": "pump_on", "address": "coil:4"},
                {"name": "count", "address": "holding:10"},
            ],
        }
    )
    metrics = source_metrics(source, Aliases())
    assert [(s.name, s.datatype, s.units) for s in metrics.specs] == [
        ("oil_temp", T.Float, "degC"),
        ("level", T.Double, None),  # scaled: the readings are floats
        ("pump_on", T.Boolean, None),
        ("count", T.UInt16, None),  # a register's natural type
    ]


def test_logix_tags_are_learnt_from_their_readings_with_their_units() -> None:
    source = LogixSource.model_validate(
        {
            "name": "filler",
            "protocol": "logix",
            "host": "127.0.0.1",
            "tags": [
                {"name": "recipe", "address": "CurrentRecipe"},
                {"name": "speed", "address": "Speed", "units": "bpm"},
            ],
        }
    )
    metrics = source_metrics(source, Aliases())
    assert metrics.specs == []  # "recipe" is a UDT: only its members will be metrics
    metrics.learn(["recipe.name", "recipe.speed", "speed"], ["PET", 1.5, 3])
    assert [(s.name, s.units) for s in metrics.specs] == [
        ("recipe/name", None),
        ("recipe/speed", None),
        ("speed", "bpm"),
    ]
