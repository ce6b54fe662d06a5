"""OPC UA simulator: an asyncua server on opc.tcp://host:port serving the plant model.

Variables live in namespace ``urn:plantgate:sim`` under string node ids such as
``Oven.Zone1.Temp`` (``nsu=urn:plantgate:sim;s=Oven.Zone1.Temp``).

``Oven.Zone1.Setpoint`` and ``Recipe.*`` (one setpoint of each type a command can write, and an
array) keep what clients write; the others are read-only and answer writes BadNotWritable.
``sim.writes`` counts client Write requests per variable, refused ones too;
``sim.fail_writes(status)`` answers every write with a StatusCode, ``sim.stall_writes(s)``
holds writes before applying and answering them.
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
