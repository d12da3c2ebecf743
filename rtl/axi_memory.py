"""An AXI4 read memory for Amaranth's simulator: the external memory on a core's ``m_axi``.

Timing (the model of :mod:`hwq.golden.memory`): a read address is accepted in the cycle
it is offered (``arready`` high), and its burst's first beat comes ``latency`` cycles
later at the earliest, one beat per cycle, bursts in order. With ``stall > 0`` each cycle
independently drops ``arready`` or withholds a beat with that probability (seeded), so
the core meets back-pressure on both channels. Beats past the end of the memory read
``SLVERR`` with zero data.
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["AxiReadMemory"]


class AxiReadMemory:
    """Bytes from address ``base`` on, served on an AXI4 read bus by :meth:`testbench`.

    Parameters
    ----------
    bus : the core's ``m_axi`` port (:func:`hwq.rtl.dma.axi4_read_signature`).
    data_bits : int
        the bus width.
    latency : int
        cycles from an accepted read address to its first beat, at least 1.
    stall : float
        probability, per cycle and channel, of a stall (0: none).
    seed : int
        seed of the stall pattern.
    """

    def __init__(self, bus, *, data_bits: int, latency: int = 4, stall: float = 0.0,
                 seed: int = 0, base: int = 0x1000_0000) -> None:
        if latency < 1:
            raise ValueError(f"Memory latency must be at least 1 cycle, not {latency!r}")
        if not 0 <= stall < 1:
            raise ValueError(f"Stall probability must be in [0, 1), not {stall!r}")
        self.bus, self.bytes = bus, data_bits // 8
        self.latency, self.stall, self.base = latency, stall, base
        self.rng = np.random.default_rng(seed)
        self.data = bytearray()
        self.beats = 0
        self.requests: list[tuple[int, int]] = []   # (address, beats) of every burst

    def load(self, image: np.ndarray) -> int:
        """Hold ``image`` (uint32 chunks, little-endian) from ``base``; returns ``base``."""
        self.data = bytearray(np.ascontiguousarray(image, dtype="<u4").tobytes())
        return self.base

    def _beat(self, addr: int) -> tuple[int, int]:
        off = addr - self.base
        if off < 0 or off + self.bytes > len(self.data):
            return 0, 2
        return int.from_bytes(self.data[off:off + self.bytes], "little"), 0

    def _check(self, addr: int, beats: int, size: int, burst: int) -> None:
        """AXI4's rules for the bursts the core asks for: INCR, full-width beats, aligned,
        within one 4 KB page."""
        self.requests.append((addr, beats))
        if burst != 1 or 1 << size != self.bytes or addr % self.bytes:
            raise AssertionError(f"m_axi: a read burst must be INCR of {self.bytes}-byte "
                                 f"aligned beats, not arburst={burst} arsize={size} "
                                 f"araddr={addr:#x}")
        if addr // 4096 != (addr + beats * self.bytes - 1) // 4096:
            raise AssertionError(f"m_axi: a read burst of {beats} beats from {addr:#x} "
                                 "crosses a 4 KB boundary")

    async def testbench(self, ctx) -> None:
        """Serve the bus forever (an Amaranth ``add_testbench`` coroutine, ``background``)."""
        bus = self.bus
        bursts: deque[list[int]] = deque()       # [next address, beats left, first cycle]
        cycle = 0
        while True:
            ar_ready = not (self.stall and self.rng.random() < self.stall)
            ctx.set(bus.arready, ar_ready)
            head = bursts[0] if bursts else None
            give = (head is not None and head[2] <= cycle
                    and not (self.stall and self.rng.random() < self.stall))
            if give:
                data, resp = self._beat(head[0])
                ctx.set(bus.rdata, data)
                ctx.set(bus.rresp, resp)
                ctx.set(bus.rlast, head[1] == 1)
            ctx.set(bus.rvalid, give)
            take_ar = ar_ready and ctx.get(bus.arvalid)
            if take_ar:
                request = [ctx.get(bus.araddr), ctx.get(bus.arlen) + 1,
                           cycle + self.latency]
                self._check(request[0], request[1], ctx.get(bus.arsize), ctx.get(bus.arburst))
            taken = give and ctx.get(bus.rready)
            await ctx.tick()
            cycle += 1
            if taken:
                self.beats += 1
                head[0] += self.bytes
                head[1] -= 1
                if head[1] == 0:
                    bursts.popleft()
            if take_ar:
                bursts.append(request)
