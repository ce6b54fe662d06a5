"""plantgate: edge data gateway from PLC tags to MQTT through a store-and-forward buffer."""

__version__ = "0.1.0"
