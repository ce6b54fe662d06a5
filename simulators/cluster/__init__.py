"""A clustered MQTT broker for failover tests: aedes nodes sharing sessions through one Redis.

The node.js project (package.json, node.mjs) lives beside this package; ``make cluster-deps``
installs its packages and redis-server.
"""

from simulators.cluster.aedes import AedesCluster, AedesNode
from simulators.cluster.redis_server import RedisServer

__all__ = ["AedesCluster", "AedesNode", "RedisServer"]
