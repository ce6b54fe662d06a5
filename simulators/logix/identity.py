"""Identity of the simulated controller (Identity object and ListIdentity reply)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = ["Identity"]

_ROCKWELL = 1
_PLC = 0x0E
_ENCAP_VERSION = 1
_AF_INET = 2
# Status word: bits 4-7 = 6 ("run") in the low byte and keyswitch "remote" in the high byte,
# which pycomm3 reports as keyswitch "REMOTE RUN".
_REMOTE_RUN = 0x3060


@dataclass(frozen=True, slots=True)
class Identity:
    """What the controller says it is; a 1756 name keeps pycomm3 out of Micro800 mode."""

    product_name: str = "1756-L83E/B"
    revision: tuple[int, int] = (33, 11)  # >= 21: pycomm3 addresses tags by instance id
    serial: int = 0x00C0FFEE
    product_code: int = 166
    vendor_id: int = _ROCKWELL
    device_type: int = _PLC
    status: int = _REMOTE_RUN
    state: int = 3  # operational

    def attributes_all(self) -> bytes:
        """Identity object Get_Attributes_All data (attributes 1-7)."""
        name = self.product_name.encode("ascii")
        return (
            struct.pack(
                "<HHHBBHI",
                self.vendor_id,
                self.device_type,
                self.product_code,
                self.revision[0],
                self.revision[1],
                self.status,
                self.serial,
            )
            + bytes((len(name),))
            + name
        )

    def list_identity_item(self, host: str, port: int) -> bytes:
        """Body of the ListIdentity CPF item: encapsulation version, socket address, identity."""
        try:
            address = ipaddress.IPv4Address(host).packed
        except ValueError:
            address = bytes(4)
        # The socket address is big-endian (sockaddr_in), unlike everything else here.
        sockaddr = struct.pack(">hH4s8x", _AF_INET, port, address)
        return (
            struct.pack("<H", _ENCAP_VERSION)
            + sockaddr
            + self.attributes_all()
            + bytes((self.state,))
        )
