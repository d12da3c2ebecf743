"""``SerialDevice``: a core on a board, through the UART → AXI4-Lite bridge (pyserial).

The link's frames are :mod:`hwq.layout.link`'s; :class:`hwq.rtl.uart_bridge.UartBridge` is the
other end. ``Runtime(SerialDevice("/dev/ttyUSB0"))`` runs a program on the board unchanged.

Every command is checked (CRC-16, sequence number, length). A failed command is repeated
where that is safe, after the line has gone quiet: every write (the bridge skips a write it
has already executed, by its sequence number), every read of a register without a side
effect, and a bulk read of the activation memory (re-addressed with ``BULK_ADDR`` first).
A single ``BULK_RDATA`` read is not repeated. What still fails raises :class:`LinkError`
naming the port, the command and the last reason.

The calls block (pyserial) inside the async API: one device per process or thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwq.host.device import (
    Device,
    DeviceError,
    _check_words,
    _memory_id,
    check_offset,
    check_read,
    check_value,
)
from hwq.layout import link
from hwq.layout.link import BusResponseError, FrameError, Op
from hwq.layout.regmap import ADDR, MEM

__all__ = ["LinkError", "SerialDevice"]

#: Registers whose reads have a side effect (the core's read strobes, ``hwq.rtl.core``).
READ_SIDE_EFFECTS = frozenset({ADDR.BULK_RDATA})


class LinkError(DeviceError):
    """The serial link failed: no reply, a damaged reply, or a damaged request refused."""


class SerialDevice(Device):
    """A core behind the UART bridge on ``port``.

    Parameters
    ----------
    port : str
        a serial port (``/dev/ttyUSB0``, ``COM3``) or a pyserial URL.
    baud : int
        bits per second; the bridge's (clock / divider), 3 Mbaud on the ULX3S build.
    timeout_s : float
        seconds to wait for a whole reply.
    retries : int
        times a failed command is repeated where safe (0..100).
    settle_s : float
        quiet time on the line before a retry (the bridge drops a partial frame after
        ``FRAME_TIMEOUT_BITS`` bit times and answers it).

    Raises
    ------
    LinkError
        no hwq bridge answers ``HELLO`` on ``port``.
    """

    name = "serial"

    def __init__(self, port: str, *, baud: int = 3_000_000, timeout_s: float = 0.5,
                 retries: int = 3, settle_s: float = 0.02) -> None:
        import serial  # pyserial: only a board needs it

        if not isinstance(baud, int) or baud <= 0:
            raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
        if not timeout_s > 0:
            raise ValueError(f"Timeout must be a positive number of seconds, not {timeout_s!r}")
        if not isinstance(retries, int) or not 0 <= retries <= 100:
            raise ValueError(f"Retries must be an integer in 0..100, not {retries!r}")
        if not settle_s > 0:
            raise ValueError(f"Settle time must be a positive number of seconds, "
                             f"not {settle_s!r}")
        self.port = port
        self.retries = retries
        self.timeout_s = float(timeout_s)
        self.settle_s = float(settle_s)
        self._serial_errors: tuple[type[BaseException], ...] = (serial.SerialException, OSError)
        try:
            self._ser = serial.serial_for_url(port, baudrate=baud, timeout=self.timeout_s,
                                              write_timeout=self.timeout_s)
        except self._serial_errors as exc:
            raise LinkError(f"Cannot open serial port {port}: {exc}") from None
        self._seq = 0
        #: counts of commands and of repeated ones (for reports)
        self.stats = {"commands": 0, "retries": 0}
        #: why each failed attempt failed, oldest first (the last 100)
        self.failures: list[str] = []
        self.max_burst = 1
        try:
            (word,) = self._command(Op.HELLO, 0, count=1, retry=True)
        except LinkError as exc:
            self._ser.close()
            raise LinkError(f"No hwq UART bridge answers on {port} at {baud} baud: {exc}") from None
        self.hello = link.parse_hello(word)
        if self.hello["version"] != link.PROTOCOL_VERSION:
            self._ser.close()
            raise LinkError(f"The bridge on {port} speaks link protocol version "
                            f"{self.hello['version']}, this host {link.PROTOCOL_VERSION}")
        self.max_burst = self.hello["max_burst"]

    # -- one command --------------------------------------------------------------------
    def _settle(self) -> None:
        """Wait until the line has been quiet for ``settle_s``, dropping what arrives."""
        old = self._ser.timeout
        self._ser.timeout = self.settle_s
        try:
            while self._ser.read(4096):
                pass
        finally:
            self._ser.timeout = old

    def _attempt(self, op: Op, seq: int, addr: int, count: int, data: Any) -> list[int]:
        try:
            self._ser.write(link.encode_request(op, seq, addr, count=count, data=data))
            self._ser.flush()
            head = self._ser.read(3)
            if len(head) == 3 and head[0] == link.SYNC_REPLY and head[1] == link.Status.OK:
                rest = link.reply_length(op, count) - 3
            else:
                rest = link.REPLY_OVERHEAD - 3
            frame = head + (self._ser.read(rest) if len(head) == 3 else b"")
        except self._serial_errors as exc:
            raise FrameError(f"serial port error: {exc}") from None
        return link.decode_reply(frame, op, seq, count)

    def _command(self, op: Op, addr: int, *, count: int = 1, data: Any = (),
                 retry: bool) -> list[int]:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        self.stats["commands"] += 1
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            try:
                return self._attempt(op, seq, addr, count, data)
            except BusResponseError as exc:
                raise DeviceError(f"{op.name} at {addr:#04x}: {exc}") from None
            except FrameError as exc:
                last = exc
                self.failures = [*self.failures[-99:], f"{op.name} seq {seq}: {exc}"]
                self._settle()
                if attempt + 1 < attempts:
                    self.stats["retries"] += 1
        how = (f"after {attempts} attempt(s)" if retry
               else "and was not repeated (a read with a side effect)")
        what = "HELLO" if op == Op.HELLO else f"{op.name} of {count} word(s) at {addr:#04x}"
        raise LinkError(f"Serial link {self.port}: {what} failed {how}: {last}")

    # -- the Device interface -------------------------------------------------------------
    async def read_reg(self, offset: int) -> int:
        off = check_offset(offset)
        return self._command(Op.READ, off, retry=off not in READ_SIDE_EFFECTS)[0]

    async def write_reg(self, offset: int, value: int) -> None:
        self._command(Op.WRITE, check_offset(offset), data=[check_value(value)], retry=True)

    async def write_words(self, memory: str, base: int, words: np.ndarray) -> None:
        """The bulk write as bursts to ``BULK_WDATA`` (each repeated safely on a link error)."""
        chunks = _check_words(words).reshape(-1).tolist()
        await self.write_reg(ADDR.BULK_SEL, _memory_id(memory))
        await self.write_reg(ADDR.BULK_ADDR, check_value(base))
        for i in range(0, len(chunks), self.max_burst):
            self._command(Op.WRITE, ADDR.BULK_WDATA, data=chunks[i:i + self.max_burst],
                          retry=True)

    async def read_words(self, memory: str, base: int, count: int, chunks: int) -> np.ndarray:
        """The bulk read as bursts from ``BULK_RDATA``, each re-addressed before a retry."""
        check_read(memory, count, chunks)
        per_burst = max(1, self.max_burst // chunks)
        if per_burst * chunks > self.max_burst:
            raise DeviceError(f"A word of {chunks} chunks does not fit the bridge's bursts of "
                              f"{self.max_burst}")
        await self.write_reg(ADDR.BULK_SEL, MEM.act)
        out: list[int] = []
        for first in range(0, count, per_burst):
            n = min(per_burst, count - first) * chunks
            for attempt in range(self.retries + 1):
                await self.write_reg(ADDR.BULK_ADDR, check_value(base + first))
                try:
                    out += self._command(Op.READ, ADDR.BULK_RDATA, count=n, retry=False)
                    break
                except LinkError as exc:
                    if attempt == self.retries:
                        raise LinkError(f"Serial link {self.port}: bulk read of {n} chunk(s) "
                                        f"from act word {base + first} failed after "
                                        f"{attempt + 1} attempt(s), each re-addressed: "
                                        f"{str(exc).rpartition(': ')[2]}") from None
                    self.stats["retries"] += 1
        return np.array(out, dtype=np.uint32).reshape(count, chunks)

    async def close(self) -> None:
        self._ser.close()

    def __repr__(self) -> str:
        return f"SerialDevice({self.port!r}, max_burst={self.max_burst})"
