"""Protocol connectors and their registry, keyed by the YAML ``protocol:``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.base import Connector
from connectors.modbus.config import ModbusSource
from connectors.modbus.connector import ModbusConnector

# Grows into a discriminated union on ``protocol`` as protocols are added.
SourceConfig = ModbusSource

REGISTRY: dict[str, Callable[[Any], Connector[Any]]] = {
    "modbus": ModbusConnector,
}
PROTOCOLS = tuple(REGISTRY)


def connector_for(source: SourceConfig) -> Connector[Any]:
    """Build the connector for a source from its protocol."""
    return REGISTRY[source.protocol](source)
