"""A ControlLogix-like EtherNet/IP simulator that pycomm3 and pylogix can use end to end.

Clients reach a simulator on a non-default port with ``LogixDriver("127.0.0.1:PORT")``
(pycomm3) or ``PLC("127.0.0.1", port=PORT)`` (pylogix).
"""

from simulators.logix.cip import CipStatus, ExtStatus
from simulators.logix.identity import Identity
from simulators.logix.server import DEFAULT_PORT, LogixSimulator, serve_logix
from simulators.logix.types import TagValue

__all__ = [
    "DEFAULT_PORT",
    "CipStatus",
    "ExtStatus",
    "Identity",
    "LogixSimulator",
    "TagValue",
    "serve_logix",
]
