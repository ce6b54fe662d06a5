"""OPC UA simulator: an asyncua server on opc.tcp://host:port serving the plant model.

Variables live in namespace ``urn:plantgate:sim`` under string node ids such as
``Oven.Zone1.Temp`` (``nsu=urn:plantgate:sim;s=Oven.Zone1.Temp``).
"""

from simulators.opcua.server import OpcUaSimulator, serve_opcua
from simulators.opcua.variables import (
    APPLICATION_URI,
    BAD_STATUS,
    BULK_PREFIX,
    DEFAULT_PORT,
    NAMESPACE_URI,
    PLANT_VARIABLES,
    PlantVariable,
    nsu,
)

__all__ = [
    "APPLICATION_URI",
    "BAD_STATUS",
    "BULK_PREFIX",
    "DEFAULT_PORT",
    "NAMESPACE_URI",
    "PLANT_VARIABLES",
    "OpcUaSimulator",
    "PlantVariable",
    "nsu",
    "serve_opcua",
]
