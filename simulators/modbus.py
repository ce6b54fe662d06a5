"""Modbus TCP simulator: a pymodbus server whose datastore is the moving plant model.

Register map (0-based protocol addresses, unit ids 1 and 2; unit 2 runs 1000 counts ahead).
Holding and input registers carry the same moving values:

    0      counter            uint16   (bottles, wraps at 65536)
    1      ramp x100          uint16   0..10000 (scale raw [0, 10000] -> eng [0, 100])
    2      temperature x10    int16    around 1800 (multiplier 0.1)
    3      sine - 50, x100    int16    -2500..2500 (negative half of the time)
    4      state              uint16   index into STATES
    5      speed              uint16   bottles/min
    6      alarm word         uint16   one walking bit (holding:6.0 .. holding:6.15)
    10-11  sine               float32  ABCD
    12-13  sine               float32  CDAB
    14-15  sine               float32  BADC
    16-17  sine               float32  DCBA
    20-21  counter            uint32   ABCD
    22-23  -counter           int32    CDAB
    30-33  pressure           float64  ABCDEFGH
    34-37  counter            uint64   GHEFCDAB
    40-47  recipe             string   16 characters, ABCD
    100-199 setpoints         writable, keep what is written (holding only)

Coils: 0 running, 1 toggle, 2-7 alarm bits 0-5, 10-19 writable.
Discrete inputs: 0 toggle, 1 running.
Registers 1000-49999 hold a fixed pseudo-random pattern (bulk tags for benchmarks and
coalescing tests); other unused addresses below 50000 read as 0, and from 50000 on the device
answers "illegal data address" (exception 2), like a real PLC.

Writes: holding registers 0-99 and coils 0-9 are the plant's own values, read-only: a write
there is answered "illegal data address" (exception 2); everything else below 50000 keeps what
is written. Every write request is counted by (unit, function code, address) in
``sim.writes``, refused ones too, so a test can prove that a command never reached the device.

Faults a test can set (``sim.faults``): answer with an exception (for a while, or for an
address range), stall before answering (every request or the next few), garble register replies,
answer writes alone with an exception or stall them; ``drop_connections()``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
)
from pymodbus.server import ModbusTcpServer

from simulators.plant import PlantSnapshot, snapshot

log = logging.getLogger(__name__)

TABLE_SIZE = 50_000
BULK_START = 1000
# The plant's own values: written by the plant model, refused to clients.
READ_ONLY: dict[str, int] = {"holding": 100, "coil": 10}  # table -> first writable address
_TABLE_OF_FUNCTION = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
    4: "input",
}


def words(data: bytes, order: str) -> list[int]:
    """Split big-endian bytes into registers in the given byte order (written out, not shared)."""
    if order in ("CDAB", "GHEFCDAB"):  # word swap
        regs = [data[i : i + 2] for i in range(0, len(data), 2)][::-1]
    elif order in ("BADC", "BADCFEHG"):  # byte swap inside each word
        regs = [data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2)]
    elif order in ("DCBA", "HGFEDCBA"):  # fully reversed
        rev = data[::-1]
        regs = [rev[i : i + 2] for i in range(0, len(rev), 2)]
    else:
        regs = [data[i : i + 2] for i in range(0, len(data), 2)]
    return [int.from_bytes(r, "big") for r in regs]


def plant_registers(p: PlantSnapshot, unit: int) -> dict[int, int]:
    """The moving register values for one unit at one instant."""
    counter = p.counter + (1000 if unit == 2 else 0)
    regs: dict[int, int] = {
        0: counter % 65536,
        1: round(p.ramp * 100),
        2: struct.unpack(">H", struct.pack(">h", round(p.temperature * 10)))[0],
        3: struct.unpack(">H", struct.pack(">h", round((p.sine - 50) * 100)))[0],
        4: p.state,
        5: p.speed,
        6: p.alarm_word,
    }
    sine = struct.pack(">f", p.sine)
    for at, order in ((10, "ABCD"), (12, "CDAB"), (14, "BADC"), (16, "DCBA")):
        regs.update(enumerate(words(sine, order), at))
    regs.update(enumerate(words(struct.pack(">I", counter), "ABCD"), 20))
    regs.update(enumerate(words(struct.pack(">i", -counter), "CDAB"), 22))
    regs.update(enumerate(words(struct.pack(">d", p.pressure), "ABCDEFGH"), 30))
    regs.update(enumerate(words(struct.pack(">Q", counter), "GHEFCDAB"), 34))
    regs.update(enumerate(words(p.recipe.encode().ljust(16, b"\0"), "ABCD"), 40))
    return regs


def plant_bits(p: PlantSnapshot) -> tuple[dict[int, bool], dict[int, bool]]:
    """The moving coils and discrete inputs at one instant."""
    coils = {0: p.running, 1: p.toggle}
    coils.update({2 + i: bool(p.alarm_word >> i & 1) for i in range(6)})
    return coils, {0: p.toggle, 1: p.running}


def bulk_pattern() -> list[int]:
    """A register table whose bulk area holds a fixed pseudo-random pattern."""
    rng = random.Random(1000)
    return [0] * BULK_START + [rng.getrandbits(16) for _ in range(TABLE_SIZE - BULK_START)]


@dataclass
class Unit:
    """One unit id's four tables."""

    unit_id: int
    coil: list[bool] = field(default_factory=lambda: [False] * TABLE_SIZE)
    discrete: list[bool] = field(default_factory=lambda: [False] * TABLE_SIZE)
    holding: list[int] = field(default_factory=lambda: bulk_pattern())
    input: list[int] = field(default_factory=lambda: bulk_pattern())
    refreshed: float = 0.0

    def refresh(self, now: float) -> None:
        """Write the plant model's current values into the tables."""
        p = snapshot(now)
        for at, value in plant_registers(p, self.unit_id).items():
            self.holding[at] = value
            self.input[at] = value
        coils, discrete = plant_bits(p)
        for at, bit in coils.items():
            self.coil[at] = bit
        for at, bit in discrete.items():
            self.discrete[at] = bit
        self.refreshed = now


@dataclass
class Faults:
    """What a test asked the simulator to do wrong."""

    exception: ExcCodes | None = None  # answer every request with this exception
    exception_count: int | None = None  # ... for this many requests (None: until cleared)
    exception_range: tuple[str, int, int] | None = None  # ... only for (table, start, end)
    stall: float = 0.0  # seconds to wait before answering
    stall_count: int | None = None  # ... for this many requests (None: until cleared)
    garble: bool = False  # register replies claim more bytes than they carry
    write_exception: ExcCodes | None = None  # answer every write with this exception
    write_stall: float = 0.0  # seconds to wait before applying and answering a write


class PlantContext(ModbusServerContext):
    """pymodbus datastore serving the plant model (the server's external-datastore interface)."""

    def __init__(
        self, unit_ids: tuple[int, ...] = (1, 2)
    ) -> None:  # no super(): its store is unused
        self.old_simulator = True
        self.simdevices = []
        self.units = {u: Unit(u) for u in unit_ids}
        self.faults = Faults()
        self.requests = 0  # counted per request, for coalescing tests and benchmarks
        self.writes: Counter[tuple[int, int, int]] = Counter()  # (unit, function, address)

    def device_ids(self) -> list[int]:
        """Unit ids served."""
        return list(self.units)

    def _unit(self, device_id: int) -> Unit:
        unit = self.units.get(device_id)
        if unit is None:
            raise NoSuchIdException(f"unit id {device_id} is not served")
        return unit

    async def _fault(self, table: str, address: int, count: int) -> ExcCodes | None:
        f = self.faults
        if f.stall and (f.stall_count is None or f.stall_count > 0):
            if f.stall_count is not None:
                f.stall_count -= 1
            await asyncio.sleep(f.stall)
        if f.exception is None:
            return None
        if f.exception_range is not None:
            t, start, end = f.exception_range
            if t != table or address + count <= start or address >= end:
                return None
        if f.exception_count is not None:
            f.exception_count -= 1
            if f.exception_count <= 0:
                code, f.exception, f.exception_count = f.exception, None, None
                return code
        return f.exception

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        """Serve a read from the plant model."""
        self.requests += 1
        unit = self._unit(device_id)
        table = _TABLE_OF_FUNCTION[func_code]
        if (code := await self._fault(table, address, count)) is not None:
            return code
        if address + count > TABLE_SIZE:
            return ExcCodes.ILLEGAL_ADDRESS
        now = time.time()
        if now - unit.refreshed > 0.01:
            unit.refresh(now)
        values: list[int] | list[bool] = getattr(unit, table)[address : address + count]
        return values

    async def async_setValues(  # type: ignore[override]
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        """Store a write (holding registers and coils)."""
        self.requests += 1
        self.writes[(device_id, func_code, address)] += 1
        unit = self._unit(device_id)
        table = _TABLE_OF_FUNCTION[func_code]
        if (code := await self._fault(table, address, len(values))) is not None:
            return code
        if self.faults.write_stall:
            await asyncio.sleep(self.faults.write_stall)
        if self.faults.write_exception is not None:
            return self.faults.write_exception
        if address + len(values) > TABLE_SIZE or address < READ_ONLY.get(table, 0):
            return ExcCodes.ILLEGAL_ADDRESS
        store = getattr(unit, table)
        store[address : address + len(values)] = list(values)
        return None


class _Packed:
    """A register reply packed in one ``struct`` call; pymodbus packs one register at a time
    and formats every reply into a debug string, which made the simulator, not the client,
    the slow end of a 10,000-tag benchmark."""

    registers: Sequence[int]
    function_code: int
    garbled = False

    def encode(self) -> bytes:
        """Byte count, then the registers big-endian."""
        n = len(self.registers)
        return struct.pack(f">B{n}H", 2 * n + 2 * self.garbled, *self.registers)

    def __str__(self) -> str:
        return f"{type(self).__name__}({len(self.registers)} registers)"


class _HoldingReply(_Packed, ReadHoldingRegistersResponse):
    pass


class _InputReply(_Packed, ReadInputRegistersResponse):
    pass


class _RegisterRead:
    """A function 3 or 4 request answered with a packed reply."""

    reply: type[_HoldingReply | _InputReply]
    function_code: int
    address: int
    count: int
    transaction_id: int

    async def datastore_update(self, context: ModbusServerContext, device_id: int) -> ModbusPDU:
        """Read the registers from the plant model."""
        values = await context.async_getValues(
            device_id, self.function_code, self.address, self.count
        )
        if isinstance(values, ExcCodes):
            return ExceptionResponse(self.function_code, values)
        reply = self.reply(registers=values, dev_id=device_id, transaction_id=self.transaction_id)
        reply.garbled = isinstance(context, PlantContext) and context.faults.garble
        return reply


class _HoldingRead(_RegisterRead, ReadHoldingRegistersRequest):
    reply = _HoldingReply


class _InputRead(_RegisterRead, ReadInputRegistersRequest):
    reply = _InputReply


class ModbusSimulator:
    """A Modbus TCP server on the plant model, with fault injection for tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5020) -> None:
        self.host = host
        self.port = port
        self.context = PlantContext()
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        """Listen on host:port."""
        self._server = ModbusTcpServer(
            self.context, address=(self.host, self.port), custom_pdu=[_HoldingRead, _InputRead]
        )
        await self._server.serve_forever(background=True)
        log.info(
            "modbus simulator on %s:%d (unit ids %s)",
            self.host,
            self.port,
            self.context.device_ids(),
        )

    async def stop(self) -> None:
        """Close the listener and every client connection."""
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    def drop_connections(self, count: int | None = None) -> None:
        """Close every client connection now, or the first ``count`` (the listener stays)."""
        if self._server is not None:
            for conn in list(self._server.active_connections.values())[:count]:
                conn.close()

    @property
    def clients(self) -> int:
        """Client connections open now."""
        return 0 if self._server is None else len(self._server.active_connections)

    @property
    def faults(self) -> Faults:
        """The fault settings tests change."""
        return self.context.faults

    @property
    def requests(self) -> int:
        """Requests served so far."""
        return self.context.requests

    @property
    def writes(self) -> Counter[tuple[int, int, int]]:
        """Write requests received so far, by (unit, function code, address)."""
        return self.context.writes


async def serve_modbus(host: str = "127.0.0.1", port: int = 5020) -> None:
    """Run the Modbus simulator until cancelled."""
    sim = ModbusSimulator(host, port)
    await sim.start()
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
