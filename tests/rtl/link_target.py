"""A small AXI4-Lite slave for the UART bridge tests: plain registers and a bulk FIFO.

Offsets follow the core's register map where the link cares: ``BULK_ADDR`` sets a pointer,
``BULK_WDATA`` writes the word at the pointer and ``BULK_RDATA`` reads it (both advance it),
``ID`` reads :data:`hwq.layout.regmap.CORE_ID`; every other offset is a plain 32-bit register.
``writes`` counts executed writes, so a test sees a write executed twice.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hwq.layout.regmap import ADDR, ADDR_WIDTH, CORE_ID
from hwq.rtl.axil import axil_signature

BULK_DEPTH = 64


class LinkTarget(wiring.Component):
    s_axil: In(axil_signature())
    writes: Out(16)

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil
        m.submodules.regs = regs = memory.Memory(shape=32, depth=1 << (ADDR_WIDTH - 2), init=[])
        m.submodules.bulk = bulk = memory.Memory(shape=32, depth=BULK_DEPTH, init=[])
        rw, rr = regs.write_port(), regs.read_port(domain="comb")
        bw, br = bulk.write_port(), bulk.read_port(domain="comb")
        ptr = Signal(range(BULK_DEPTH))
        m.d.comb += [bus.awready.eq(0), bus.wready.eq(0), bus.arready.eq(0),
                     rw.addr.eq(bus.awaddr[2:]), rw.data.eq(bus.wdata), bw.addr.eq(ptr),
                     bw.data.eq(bus.wdata), rr.addr.eq(bus.araddr[2:]), br.addr.eq(ptr)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        with m.If(bus.awvalid & bus.wvalid & ~bus.bvalid):
            m.d.comb += [bus.awready.eq(1), bus.wready.eq(1)]
            m.d.sync += [bus.bvalid.eq(1), self.writes.eq(self.writes + 1)]
            with m.Switch(bus.awaddr):
                with m.Case(ADDR.BULK_ADDR):
                    m.d.sync += ptr.eq(bus.wdata)
                with m.Case(ADDR.BULK_WDATA):
                    m.d.comb += bw.en.eq(1)
                    m.d.sync += ptr.eq(ptr + 1)
                with m.Default():
                    m.d.comb += rw.en.eq(1)
        with m.If(bus.arvalid & ~bus.rvalid):
            m.d.comb += bus.arready.eq(1)
            m.d.sync += bus.rvalid.eq(1)
            with m.Switch(bus.araddr):
                with m.Case(ADDR.ID):
                    m.d.sync += bus.rdata.eq(CORE_ID)
                with m.Case(ADDR.BULK_RDATA):
                    m.d.sync += [bus.rdata.eq(br.data), ptr.eq(ptr + 1)]
                with m.Default():
                    m.d.sync += bus.rdata.eq(rr.data)
        return m


def run_link(design, link, host, *, divider: int, pty=None, probe=None) -> dict:
    """Simulate ``design`` (Amaranth) whose UART pins are ``link.rx``/``link.tx`` while
    ``host(port)`` (a coroutine function) runs in a thread against a :class:`PtyUart`.

    Returns ``{"result": host's return value, "cycles": simulated cycles, "probe": the value
    of ``probe`` at the end}``; an exception in ``host`` is raised here.
    """
    import asyncio
    import threading

    from amaranth.sim import Simulator

    from hwq.sim.uart_pty import PtyUart

    pty = pty or PtyUart()
    out: dict = {}

    def thread() -> None:
        try:
            out["result"] = asyncio.run(host(pty.port))
        except BaseException as exc:  # re-raised in the test
            out["error"] = exc

    worker = threading.Thread(target=thread)
    sim = Simulator(design)
    sim.add_clock(1e-8)

    async def testbench(ctx) -> None:
        worker.start()
        cycles = 0
        while worker.is_alive():
            ctx.set(link.rx, pty.step(ctx.get(link.tx)))
            await ctx.tick().repeat(divider)
            cycles += divider
        out["cycles"] = cycles
        if probe is not None:
            out["probe"] = ctx.get(probe)

    sim.add_testbench(testbench)
    try:
        sim.run()
    finally:
        worker.join()
        pty.close()
    if "error" in out:
        raise out["error"]
    return out
