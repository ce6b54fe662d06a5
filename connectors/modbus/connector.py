"""Modbus TCP connector on pymodbus' asyncio client."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from connectors.base import Connector, Writer
from connectors.modbus.codec import ByteOrder, encode
from connectors.modbus.config import MAX_REGISTERS, ModbusSource, ModbusTag
from connectors.modbus.decode import RequestDecoder
from connectors.modbus.plan import ReadRequest, plan_reads
from connectors.modbus.replies import REPLIES
from gateway.errors import ConnectionLost, DeviceError, WriteUnconfirmed
from gateway.models import Quality, Sample, Samples, Value
from gateway.writes import PlcType

_GOOD, _BAD = Quality.GOOD, Quality.BAD  # looked up once: enum attributes are slow

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def exception_text(response: ModbusPDU) -> str:
    """``Modbus exception 2 (illegal data address)`` for a device's exception response."""
    code = getattr(response, "exception_code", 0)
    return f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"


def registers_for(tag: ModbusTag, value: Value, order: ByteOrder) -> list[int]:
    """The registers holding a PLC value of the tag's type, as the write rules accepted it.

    No scaling and no conversion here: :func:`gateway.writes.check_write` did both, so a value
    that does not fit is a caller's mistake, not a command to refuse.
    """
    data_type = tag.data_type
    if data_type == "string":
        if not isinstance(value, str):
            raise TypeError(f"{tag.name}: a string tag needs a str, not {value!r}")
        return encode(value, "string", order, tag.length)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{tag.name}: a {data_type} needs a number, not {value!r}")
    try:
        return encode(value, data_type, order)
    except (OverflowError, struct.error) as exc:
        raise ValueError(f"{tag.name}: {value!r} is not a {data_type}; check_write first") from exc


@dataclass(frozen=True, slots=True)
class ModbusPlan:
    """How one scan's tags are read: the fewest requests, each with the decoder of its reply."""

    size: int  # tags in the scan
    requests: tuple[tuple[ReadRequest, RequestDecoder], ...]


class ModbusConnector:
    """Reads tags from one Modbus TCP device, coalescing them into few requests.

    A request the device refuses (or does not answer, or answers garbled) marks its own tags
    bad, each with the request and the device's words as the reason: ``read holding:0+10:
    Modbus exception 2 (illegal data address)``.
    """

    def __init__(self, source: ModbusSource) -> None:
        self.source = source
        self._clients: list[AsyncModbusTcpClient] = []
        self.requests_sent = 0
        self.writes_sent = 0
        self._writing = asyncio.Lock()  # one write at a time: a bit's read-modify-write

    async def connect(self) -> None:
        """Open the TCP connection(s) (pymodbus' own reconnect is off: the runtime owns retries)."""
        src = self.source
        clients: list[AsyncModbusTcpClient] = []
        try:
            for n in range(src.connections):
                clients.append(await self._open(n))
        except ConnectionLost:
            for client in clients:
                client.close()
            raise
        self._clients = clients

    async def _open(self, n: int) -> AsyncModbusTcpClient:
        src = self.source
        which = f" (connection {n + 1} of {src.connections})" if n else ""
        # pymodbus would resend any request that timed out, writes included; a write may have
        # been applied all the same, so we retry reads ourselves and writes never.
        client = AsyncModbusTcpClient(
            src.host, port=src.port, timeout=src.timeout, retries=0, reconnect_delay=0
        )
        # It drops the link after a run of unanswered requests; ours count each retry, so the
        # run is stretched to end where pymodbus' own retries would have ended it.
        client.set_max_no_responses((src.retries + 5) * (src.retries + 1) - 2)
        try:
            ok = await asyncio.wait_for(client.connect(), src.connect_timeout)
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            raise ConnectionLost(f"cannot connect to {src.host}:{src.port}{which}: {exc}") from exc
        if not ok:
            client.close()
            hint = "; does the device accept that many clients?" if n else ""
            raise ConnectionLost(
                f"cannot connect to {src.host}:{src.port}{which}: "
                f"connection refused or timed out{hint}"
            )
        for reply in REPLIES:
            client.register(reply)
        return client

    def plan(self, tags: Sequence[ModbusTag]) -> ModbusPlan:
        """The fewest requests for the tags, each with its reply's decoder (10,000 tags take
        ~0.1 s: once per scan and connection, not in every scan)."""
        requests = plan_reads(
            tags,
            unit_id=self.source.unit_id,
            max_registers=self.source.max_registers_per_read,
            max_gap=self.source.max_gap,
        )
        order = self.source.byte_order
        return ModbusPlan(
            len(tags),
            tuple(
                (r, RequestDecoder(r.start, r.members, order, bits=r.table in ("coil", "discrete")))
                for r in requests
            ),
        )

    async def read(self, plan: ModbusPlan) -> Samples:
        """Read the plan's tags once; a refused request marks only its own tags bad."""
        # Columns, not a Sample object per tag: this runs for every tag on every scan.
        values: list[Value] = [None] * plan.size
        qualities = [_BAD] * plan.size
        reasons: dict[int, str] = {}
        requests = iter(plan.requests)
        clients = self._clients
        if not clients:
            raise ConnectionLost(f"not connected to {self.source.host}:{self.source.port}")
        if len(clients) == 1:
            await self._read_requests(clients[0], requests, values, qualities, reasons)
        else:
            # Each connection takes the next request as soon as its last reply is decoded;
            # a lost one ends the scan once the others' requests in flight have answered.
            outcomes = await asyncio.gather(
                *(self._read_requests(c, requests, values, qualities, reasons) for c in clients),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        return Samples(values, qualities, reasons=reasons or None)

    async def _read_requests(
        self,
        client: AsyncModbusTcpClient,
        requests: Iterator[tuple[ReadRequest, RequestDecoder]],
        values: list[Value],
        qualities: list[Quality],
        reasons: dict[int, str],
    ) -> None:
        """Send requests on one connection until none are left, decoding each reply."""
        delay = self.source.request_delay
        for n, (request, decoder) in enumerate(requests):
            if n and delay:
                await asyncio.sleep(delay)
            try:
                words, blob = await self._read_block(client, request)
            except DeviceError as exc:
                why = f"read {request.table}:{request.start}+{request.count}: {exc}"
                reasons.update((index, why) for index, _ in request.members)
                continue
            except ConnectionLost as exc:
                for _ in requests:  # the other connections stop after their current request
                    pass
                if len(self._clients) > 1:
                    which = self._clients.index(client) + 1
                    count = len(self._clients)
                    raise ConnectionLost(f"{exc} (connection {which} of {count})") from exc
                raise
            self._decode(decoder, words, blob, values, qualities, reasons)

    def _decode(
        self,
        decoder: RequestDecoder,
        words: Sequence[int],
        blob: bytes,
        values: list[Value],
        qualities: list[Quality],
        reasons: dict[int, str],
    ) -> None:
        """Put one reply's values and qualities in their places in the scan's columns."""
        decoded = decoder.values(words, blob)
        if decoder.span is not None:  # the usual case: the request's tags are adjacent
            values[decoder.span] = decoded
            qualities[decoder.span] = decoder.all_good
        else:
            for index, value in zip(decoder.indices, decoded, strict=True):
                values[index], qualities[index] = value, _GOOD
        for index, tag, read_tag in decoder.others:
            try:
                values[index], qualities[index] = read_tag(words, blob), _GOOD
            except (ValueError, IndexError, struct.error) as exc:  # e.g. a short reply
                reasons[index] = f"cannot decode {tag.address}: {exc}"

    def plc_type(self, tag: ModbusTag) -> PlcType:
        """The tag's PLC type for the write rules: all in its config, no I/O."""
        return tag.plc_type()

    async def write(self, tag: ModbusTag, value: Value) -> None:
        """Write a value the write rules accepted, once (see :class:`connectors.base.Writer`).

        Coils with function 5, registers with 16, a bit of a holding register by reading the
        register (function 3) and writing it whole (function 6): not atomic on the device, so
        writes are serialised here and a bit the PLC flips in between is overwritten.
        """
        address = tag.address
        unit = self.source.unit_id if tag.unit_id is None else tag.unit_id
        where = f"{tag.name} ({address})"
        if address.table in ("discrete", "input"):
            raise ValueError(f"{where} is read-only; check_write refuses it before the wire")
        async with self._writing:
            client = self._write_client()
            if address.table == "coil":
                if not isinstance(value, bool):
                    raise TypeError(f"{where}: a coil needs a bool, not {value!r}")
                await self._send_write(
                    client, where, lambda: client.write_coil(address.offset, value, device_id=unit)
                )
            elif address.bit is not None:
                if not isinstance(value, bool):
                    raise TypeError(f"{where}: a register bit needs a bool, not {value!r}")
                word = await self._read_word(client, tag, unit)
                mask = 1 << address.bit
                word = word | mask if value else word & ~mask
                await self._send_write(
                    client,
                    where,
                    lambda: client.write_register(address.offset, word, device_id=unit),
                )
            else:
                registers = registers_for(tag, value, tag.byte_order or self.source.byte_order)
                await self._send_write(
                    client,
                    where,
                    lambda: client.write_registers(address.offset, registers, device_id=unit),
                )

    async def read_back(self, tag: ModbusTag) -> Sample:
        """Read one tag now with its own request (the scans' plans stay as they are)."""
        client = self._write_client()
        unit = self.source.unit_id if tag.unit_id is None else tag.unit_id
        [request] = plan_reads([tag], unit_id=unit, max_registers=MAX_REGISTERS, max_gap=0)
        bits = request.table in ("coil", "discrete")
        decoder = RequestDecoder(request.start, request.members, self.source.byte_order, bits)
        try:
            words, blob = await self._read_block(client, request)
        except DeviceError as exc:
            raise DeviceError(f"{tag.name} ({tag.address}): cannot read it back: {exc}") from exc
        values: list[Value] = [None]
        qualities = [_BAD]
        reasons: dict[int, str] = {}
        self._decode(decoder, words, blob, values, qualities, reasons)
        if qualities[0] is not _GOOD:
            why = reasons.get(0, "cannot decode the reply")
            raise DeviceError(f"{tag.name} ({tag.address}): {why}")
        return Sample(values[0])

    def _write_client(self) -> AsyncModbusTcpClient:
        """The connection writes and read-backs go over (the first: in order with the scans')."""
        client = self._clients[0] if self._clients else None
        if client is None or not client.connected:
            raise ConnectionLost(f"not connected to {self.source.host}:{self.source.port}")
        return client

    async def _read_word(self, client: AsyncModbusTcpClient, tag: ModbusTag, unit: int) -> int:
        """The holding register a bit is set in, read just before writing it back."""
        request = ReadRequest(unit, "holding", tag.address.offset, 1, ())
        try:
            words, _ = await self._read_block(client, request)
        except DeviceError as exc:
            raise DeviceError(
                f"{tag.name} ({tag.address}): cannot read the register to set its bit "
                f"(nothing written): {exc}"
            ) from exc
        return words[0]

    async def _send_write(
        self, client: AsyncModbusTcpClient, where: str, send: Callable[[], Awaitable[ModbusPDU]]
    ) -> None:
        """Await one write request: once, whatever happens; errors say what the device said."""
        src = self.source
        self.writes_sent += 1
        try:
            response = await send()
        except ModbusException as exc:
            if client.connected:
                raise WriteUnconfirmed(
                    f"{where}: no answer to the write in {src.timeout:g} s; it may have been "
                    "applied (read it back)"
                ) from exc
            raise ConnectionLost(
                f"{src.host}:{src.port}: {exc} (writing {where}: it may have been applied)"
            ) from exc
        except OSError as exc:
            raise ConnectionLost(
                f"{src.host}:{src.port}: {exc} (writing {where}: it may have been applied)"
            ) from exc
        if response.isError():
            raise DeviceError(f"{where}: write refused: {exception_text(response)}")

    async def close(self) -> None:
        """Close the connection; never raises."""
        for client in self._clients:
            client.close()
        self._clients = []

    async def _read_block(
        self, client: AsyncModbusTcpClient, request: ReadRequest
    ) -> tuple[Sequence[int], bytes]:
        """One request's registers (or bits) and, for registers, their wire bytes."""
        if not client.connected:
            raise ConnectionLost(f"not connected to {self.source.host}:{self.source.port}")
        read = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[request.table]
        self.requests_sent += 1
        tries = self.source.retries + 1
        for attempt in range(1, tries + 1):
            try:
                response: ModbusPDU = await read(
                    request.start, count=request.count, device_id=request.unit_id
                )
                break
            except ModbusException as exc:
                if not client.connected:
                    raise ConnectionLost(f"{self.source.host}:{self.source.port}: {exc}") from exc
                # A timeout on a live connection: this request failed, not the link. A read
                # changes nothing on the device, so it may be asked again.
                if attempt == tries:
                    raise DeviceError(f"no answer: {exc}") from exc
            except OSError as exc:
                raise ConnectionLost(f"{self.source.host}:{self.source.port}: {exc}") from exc
        if isinstance(response, ExceptionResponse) or response.isError():
            raise DeviceError(exception_text(response))
        if request.table in ("coil", "discrete"):
            return [int(b) for b in response.bits[: request.count]], b""
        assert isinstance(response, REPLIES)  # registered on every client we open
        if response.malformed:
            raise DeviceError(f"malformed reply: {response.malformed}")
        if len(response.registers) < request.count:
            raise DeviceError(
                f"short reply: {len(response.registers)} of {request.count} registers"
            )
        return response.registers, response.wire


if TYPE_CHECKING:  # the contract, checked by mypy
    _connector: type[Connector[ModbusTag, ModbusPlan]] = ModbusConnector
    _writer: type[Writer[ModbusTag]] = ModbusConnector
