"""An AXI4 memory for Amaranth's simulator: the external memory on a core's ``m_axi``.

Timing (the model of :mod:`hwq.golden.memory`): a read address is accepted in the cycle
it is offered (``arready`` high), and its burst's first beat comes ``latency`` cycles
later at the earliest, one beat per cycle, bursts in order. Write addresses and data are
accepted in the cycle they are offered (data may come before its address) and a write
burst's response comes ``latency`` cycles after both its address and its last beat at the
earliest, in order. With ``stall > 0`` each cycle independently drops ``arready``,
``awready`` or ``wready`` or withholds a read beat or a response with that probability
(seeded), so the core meets back-pressure on every channel. Beats past the end of the
memory read ``SLVERR`` with zero data; writes there are dropped and answered ``SLVERR``.
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["AxiMemory"]


class AxiMemory:
    """Bytes from address ``base`` on, served on an AXI4 bus by :meth:`testbench`.

    Parameters
    ----------
    bus : the core's ``m_axi`` port (:func:`hwq.rtl.dma.axi4_signature`).
    data_bits : int
        the bus width.
    latency : int
        cycles from an accepted read address to its first beat, and from a write burst's
        address and last beat to its response; at least 1.
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
        self.requests: list[tuple[int, int]] = []   # (address, beats) of every read burst
        self.writes: list[tuple[int, int]] = []     # (address, beats) of every write burst

    def load(self, image: np.ndarray) -> int:
        """Hold ``image`` (uint32 chunks, little-endian) from ``base``; returns ``base``."""
        self.data = bytearray(np.ascontiguousarray(image, dtype="<u4").tobytes())
        return self.base

    def _beat(self, addr: int) -> tuple[int, int]:
        off = addr - self.base
        if off < 0 or off + self.bytes > len(self.data):
            return 0, 2
        return int.from_bytes(self.data[off:off + self.bytes], "little"), 0

    def _check(self, addr: int, beats: int, size: int, burst: int, kind: str = "read"
               ) -> None:
        """AXI4's rules for the bursts the core asks for: INCR, full-width beats, aligned,
        within one 4 KB page."""
        (self.requests if kind == "read" else self.writes).append((addr, beats))
        if burst != 1 or 1 << size != self.bytes or addr % self.bytes:
            raise AssertionError(f"m_axi: a {kind} burst must be INCR of {self.bytes}-byte "
                                 f"aligned beats, not burst={burst} size={size} "
                                 f"addr={addr:#x}")
        if addr // 4096 != (addr + beats * self.bytes - 1) // 4096:
            raise AssertionError(f"m_axi: a {kind} burst of {beats} beats from {addr:#x} "
                                 "crosses a 4 KB boundary")

    def _put(self, burst: list[int], data: int, strobe: int, cycle: int) -> None:
        """Write one data beat of ``burst`` ([address, beats, got, ready, inside])."""
        off = burst[0] + burst[2] * self.bytes - self.base
        if 0 <= off and off + self.bytes <= len(self.data):
            raw = data.to_bytes(self.bytes, "little")
            for i in range(self.bytes):
                if strobe >> i & 1:
                    self.data[off + i] = raw[i]
        else:
            burst[4] = False
        burst[2] += 1
        burst[3] = max(burst[3], cycle)

    def _stalls(self) -> bool:
        return bool(self.stall) and self.rng.random() < self.stall

    async def testbench(self, ctx) -> None:
        """Serve the bus forever (an Amaranth ``add_testbench`` coroutine, ``background``)."""
        bus = self.bus
        bursts: deque[list[int]] = deque()       # [next address, beats left, first cycle]
        writes: deque[list] = deque()            # [address, beats, got, ready, inside]
        early: deque[tuple[int, int, int]] = deque()   # data beats ahead of their address
        cycle = 0
        while True:
            aw_ready, w_ready = not self._stalls(), not self._stalls()
            ctx.set(bus.awready, aw_ready)
            ctx.set(bus.wready, w_ready)
            front = writes[0] if writes else None
            respond = (front is not None and front[2] == front[1]
                       and front[3] + self.latency <= cycle and not self._stalls())
            ctx.set(bus.bvalid, respond)
            if respond:
                ctx.set(bus.bresp, 0 if front[4] else 2)
            take_aw = aw_ready and ctx.get(bus.awvalid)
            if take_aw:
                aw = [ctx.get(bus.awaddr), ctx.get(bus.awlen) + 1, 0, cycle, True]
                self._check(aw[0], aw[1], ctx.get(bus.awsize), ctx.get(bus.awburst), "write")
            take_w = w_ready and ctx.get(bus.wvalid)
            if take_w:
                beat = (ctx.get(bus.wdata), ctx.get(bus.wstrb), cycle)
            responded = respond and ctx.get(bus.bready)
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
            if responded:
                writes.popleft()
            if take_aw:
                writes.append(aw)
                while early and aw[2] < aw[1]:
                    self._put(aw, *early.popleft())
            if take_w:
                self.beats += 1
                target = next((b for b in writes if b[2] < b[1]), None)
                if target is None:
                    early.append(beat)
                else:
                    self._put(target, *beat)
