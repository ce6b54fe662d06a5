"""``plantgate tail`` lines for Sparkplug messages."""

from __future__ import annotations

from gateway.models import Batch, Quality, Reading
from gateway.sparkplug.describe import Births, describe_sparkplug
from gateway.sparkplug.metrics import Aliases, SourceMetrics, TagHint
from gateway.sparkplug.payloads import dbirth, ddata, ddeath, nbirth, ndeath

NODE = "spBv1.0/plant1/{}/line1-edge"
DEVICE = "spBv1.0/plant1/{}/line1-edge/press1"


def press() -> tuple[SourceMetrics, Batch]:
    readings = [
        Reading("oil_temp", 21.5, Quality.GOOD, 1000, 1),
        Reading("speed", -3, Quality.UNCERTAIN, 1500, 2),
        Reading("recipe.name", None, Quality.BAD, 2000, 3),
    ]
    hints = {"oil_temp": TagHint("float64", "degC"), "speed": TagHint("INT")}
    metrics = SourceMetrics("press1", Aliases(), hints)
    batch = Batch("press1", 2000, readings)
    metrics.learn(batch.tags, batch.values)
    return metrics, batch


def test_births_data_and_deaths() -> None:
    metrics, batch = press()
    births: Births = {}
    current = {r.tag: (r.value, r.quality, r.ts) for r in batch.readings}
    lines = [
        describe_sparkplug(NODE.format("NBIRTH"), nbirth(4, 0, 3000), births, now_ms=3000),
        describe_sparkplug(DEVICE.format("DBIRTH"), dbirth(metrics, current, 1, 3000), births),
        describe_sparkplug(
            DEVICE.format("DDATA"), ddata(metrics, batch, 2, 3000, True), births, now_ms=3000
        ),
        describe_sparkplug(DEVICE.format("DDEATH"), ddeath(3, 3100), births),
        describe_sparkplug(NODE.format("NDEATH"), ndeath(4, 3200), births),
    ]
    nbirth_head, *_ = lines[0].splitlines()
    assert nbirth_head.split() == [
        NODE.format("NBIRTH"),
        "NBIRTH",
        "seq=0",
        "bdSeq=4,",
        "2",
        "metrics",
    ]
    dbirth_lines = lines[1].splitlines()
    assert dbirth_lines[0].endswith("DBIRTH seq=1, 3 metrics")
    assert dbirth_lines[1].split() == ["oil_temp", "21.5", "degC", "good", "ts=1000", "Double"]
    assert dbirth_lines[2].split() == ["speed", "-3", "uncertain", "ts=1500", "Int16"]
    assert dbirth_lines[3].split() == ["recipe/name", "null", "bad", "ts=2000", "Unknown"]
    # The data message names metrics only by alias: the lines name them as the birth did,
    # and read the Int16 as signed because the birth said Int16.
    ddata_lines = lines[2].splitlines()
    assert ddata_lines[0].endswith("DDATA seq=2, 3 metrics")
    assert ddata_lines[1].split() == [
        "oil_temp",
        "21.5",
        "good",
        "age=2.0s",
        "Double",
        "historical",
    ]
    assert ddata_lines[2].split() == ["speed", "-3", "uncertain", "age=1.5s", "Int16", "historical"]
    assert ddata_lines[3].split() == [
        "recipe/name",
        "null",
        "bad",
        "age=1.0s",
        "Unknown",
        "historical",
    ]
    assert lines[3].split() == [DEVICE.format("DDEATH"), "DDEATH", "seq=3"]
    assert lines[4].split() == [NODE.format("NDEATH"), "NDEATH", "bdSeq=4"]


def test_data_before_any_birth_shows_aliases() -> None:
    metrics, batch = press()
    text = describe_sparkplug(DEVICE.format("DDATA"), ddata(metrics, batch, 2, 3000), {})
    assert f"<alias {metrics.spec('oil_temp').alias}>" in text


def test_a_new_node_birth_forgets_the_old_aliases() -> None:
    metrics, _ = press()
    births: Births = {}
    describe_sparkplug(DEVICE.format("DBIRTH"), dbirth(metrics, {}, 1, 3000), births)
    assert births["plant1/line1-edge"]
    describe_sparkplug(NODE.format("NBIRTH"), nbirth(5, 0, 3000), births)
    assert set(births["plant1/line1-edge"]) == {1, 2}  # the node's own metrics only


def test_state_garbage_and_other_topics() -> None:
    births: Births = {}
    assert describe_sparkplug(
        "spBv1.0/STATE/scada", b'{"online": true, "timestamp": 1}', births
    ).split() == ["spBv1.0/STATE/scada", "STATE", "online"]
    bad = describe_sparkplug(DEVICE.format("DDATA"), b"\xff\xff\xff", births)
    assert bad.startswith(DEVICE.format("DDATA"))
    assert "malformed: not a Sparkplug B payload" in bad
    assert "not a Sparkplug B topic" in describe_sparkplug("acme/x", b"{}", births)
