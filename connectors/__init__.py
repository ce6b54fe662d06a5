"""Protocol connectors and their registry, keyed by the YAML ``protocol:``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from connectors.base import Connector
from connectors.logix.config import LogixSource
from connectors.logix.connector import LogixConnector
from connectors.modbus.config import ModbusSource
from connectors.modbus.connector import ModbusConnector
from connectors.opcua.config import OpcUaSource
from connectors.opcua.connector import OpcUaConnector

# Grows into a discriminated union on ``protocol`` as protocols are added.
SourceConfig = Annotated[ModbusSource | LogixSource | OpcUaSource, Field(discriminator="protocol")]

REGISTRY: dict[str, Callable[[Any], Connector[Any, Any]]] = {
    "modbus": ModbusConnector,
    "logix": LogixConnector,
    "opcua": OpcUaConnector,
}
PROTOCOLS = tuple(REGISTRY)
WRITERS = (ModbusConnector, LogixConnector, OpcUaConnector)
"""The connectors that can write (the Writer contract)."""


def connector_for(source: SourceConfig) -> Connector[Any, Any]:
    """Build the connector for a source from its protocol."""
    return REGISTRY[source.protocol](source)
