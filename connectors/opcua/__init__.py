"""OPC UA connector: bulk reads or monitored items over asyncua."""
