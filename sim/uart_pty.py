"""A pseudo-terminal wired to a simulated UART: a host program talks to simulated pins.

:class:`PtyUart` opens a pseudo-terminal; a host opens :attr:`PtyUart.port` with pyserial
(``SerialDevice(pty.port)``), and the simulation calls :meth:`PtyUart.step` once per bit
period (every ``divider`` clock cycles): it samples the design's ``tx`` pin and returns the
level to drive on its ``rx`` pin for the next bit period. Bytes are 8N1, one bit per call,
so the simulated link runs at ``clock / divider`` in simulated time whatever the pty's baud.

Faults for tests: ``drop``/``corrupt`` name byte indices (counted from 0 in each direction,
``"to_device"`` or ``"to_host"``) to leave out or to flip a bit of.
"""

from __future__ import annotations

import os
import tty
from collections import deque
from collections.abc import Iterable, Mapping

__all__ = ["PtyUart"]


class PtyUart:
    """Bytes between a pseudo-terminal and a UART's pins, one bit per :meth:`step`.

    Parameters
    ----------
    drop, corrupt : mapping of {"to_device", "to_host"} to iterable of int
        indices of bytes to drop, or to XOR with ``0x10``, in that direction.
    """

    def __init__(self, *, drop: Mapping[str, Iterable[int]] | None = None,
                 corrupt: Mapping[str, Iterable[int]] | None = None) -> None:
        directions = ("to_device", "to_host")
        for name, faults in (("drop", drop), ("corrupt", corrupt)):
            for key in faults or {}:
                if key not in directions:
                    raise ValueError(f"{name} direction must be one of {directions}, not {key!r}")
        self._drop = {d: set((drop or {}).get(d, ())) for d in directions}
        self._corrupt = {d: set((corrupt or {}).get(d, ())) for d in directions}
        self._count = dict.fromkeys(directions, 0)
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        #: path of the terminal the host opens
        self.port = os.ttyname(self._slave)
        self._bits: deque[int] = deque()
        self._rx: list[int] | None = None
        self._pending = b""
        #: bytes the host sent / received (after faults), for tests
        self.sent = bytearray()
        self.received = bytearray()

    def _fault(self, direction: str, byte: int) -> int | None:
        i = self._count[direction]
        self._count[direction] = i + 1
        if i in self._drop[direction]:
            return None
        return byte ^ 0x10 if i in self._corrupt[direction] else byte

    def step(self, tx: int) -> int:
        """One bit period: sample the design's ``tx``; return the level for its ``rx``."""
        if self._rx is None:
            if not tx:
                self._rx = []  # a start bit
        else:
            self._rx.append(int(tx))
            if len(self._rx) == 9:
                if self._rx[8]:  # a stop bit: a byte
                    value = sum(b << i for i, b in enumerate(self._rx[:8]))
                    out = self._fault("to_host", value)
                    if out is not None:
                        self._pending += bytes([out])
                        self.received.append(out)
                self._rx = None
        if self._pending:
            try:
                self._pending = self._pending[os.write(self.master, self._pending):]
            except BlockingIOError:
                pass
        if not self._bits:
            try:
                data = os.read(self.master, 64)
            except (BlockingIOError, OSError):
                data = b""
            for value in data:
                out = self._fault("to_device", value)
                if out is not None:
                    self.sent.append(out)
                    self._bits.extend([0, *((out >> i) & 1 for i in range(8)), 1])
        return self._bits.popleft() if self._bits else 1

    @property
    def busy(self) -> bool:
        """Bits in flight in either direction."""
        return bool(self._bits) or self._rx is not None or bool(self._pending)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
