"""What the tag map says about a source's metrics, before a single reading."""

from __future__ import annotations

from connectors import SourceConfig
from connectors.modbus.config import ModbusSource, ModbusTag
from gateway.sparkplug.metrics import Aliases, SourceMetrics, TagHint


def plc_type(tag: ModbusTag) -> str:
    """A Modbus tag's type as its readings have it: a scaled register reads as a float64."""
    return "float64" if tag.scaled else tag.data_type


def source_metrics(source: SourceConfig, aliases: Aliases) -> SourceMetrics:
    """A source's metrics as the tag map knows them.

    A Modbus tag is one value of a declared type: its metric is made now. A Logix or OPC UA
    tag may turn out to be a structure read as its members, and its type is the
    controller's: those metrics are learnt from the first readings, with the units given
    here.
    """
    if isinstance(source, ModbusSource):
        metrics = SourceMetrics(source.name, aliases)
        for tag in source.tags:
            metrics.declare(tag.name, plc_type(tag), tag.units)
        return metrics
    hints = {tag.name: TagHint(None, tag.units) for tag in source.tags}
    return SourceMetrics(source.name, aliases, hints)
