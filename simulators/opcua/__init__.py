"""OPC UA simulator: an asyncua server on opc.tcp://host:port serving the plant model.

Variables live in namespace ``urn:plantgate:sim`` under string node ids such as
``Oven.Zone1.Temp`` (``nsu=urn:plantgate:sim;s=Oven.Zone1.Temp``).
"""

from simulators.opcua.server import OpcUaSimulator, serve_opcua
from simulators.opcua.variables import (
    APPLICATION_URI,
    BAD_STATUS,
    DEFAULT_PORT,
    NAMESPACE_URI,
    PLANT_VARIABLES,
    PlantVariable,
    bulk_names,
    nsu,
)

__all__ = [
    "APPLICATION_URI",
    "BAD_STATUS",
    "DEFAULT_PORT",
    "NAMESPACE_URI",
    "PLANT_VARIABLES",
    "OpcUaSimulator",
    "PlantVariable",
    "bulk_names",
    "nsu",
    "serve_opcua",
]
