"""AXI4-Lite slave register block, generated from :mod:`hwq.layout.regmap`.

:func:`axil_signature` is the bus as the master sees it (a slave port is
``In(axil_signature(...))``; Amaranth names its Verilog ports ``s_axil__awaddr`` etc.,
which cocotbext-axi finds with ``AxiLiteBus.from_prefix(dut, "s_axil_")``). No ``awprot``/
``arprot`` (optional in AXI4-Lite and unused here).

:class:`RegisterBlock` holds no register state: for each register it offers the value to
read (``<name>_r``, In, for ``ro``/``rw``), the written value and a write strobe
(``<name>_w``/``<name>_we``, Out, for ``rw``/``wo``; the cycle after the bus handshake, from
registers) and, when asked, a read strobe (``<name>_re``); the core keeps the state. Port
widths are the registers' field widths. Writes honour ``wstrb`` (bytes not enabled keep the
``_r`` value); a write is answered once it has taken effect. A word address that is no
register of ``registers`` is unmapped: a read of it answers SLVERR (``rresp = 0b10``, data
0) and a write SLVERR (``bresp = 0b10``, nothing written); every mapped access answers OKAY
(a read of a ``wo`` register gives 0, a write to a ``ro`` one is ignored). The two low
address bits are not decoded.
"""

from __future__ import annotations

from collections.abc import Iterable

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwq.layout.regmap import ADDR_WIDTH, REGISTERS, Register

__all__ = ["OKAY", "SLVERR", "RegisterBlock", "axil_signature", "register_width"]

#: AXI4-Lite ``bresp``/``rresp`` codes the block answers with.
OKAY, SLVERR = 0b00, 0b10


def axil_signature(*, addr_width: int = ADDR_WIDTH, data_width: int = 32) -> wiring.Signature:
    """AXI4-Lite from the master's side (``Out`` = driven by the master)."""
    return wiring.Signature({
        "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
        "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def register_width(reg: Register) -> int:
    """Bits a register implements: up to its highest field, or all 32."""
    if not reg.fields:
        return 32
    return max(f.lsb + f.width for f in reg.fields)


class RegisterBlock(wiring.Component):
    """The AXI4-Lite slave of ``registers`` (default: the whole register map).

    Parameters
    ----------
    registers : iterable of Register
    read_strobes : iterable of str
        names of registers whose reads have a side effect; they get a ``<name>_re`` port.
    """

    def __init__(self, *, registers: Iterable[Register] = REGISTERS,
                 read_strobes: Iterable[str] = ()) -> None:
        self.registers = tuple(registers)
        names = {r.name for r in self.registers}
        self.read_strobes = tuple(read_strobes)
        for name in self.read_strobes:
            if name not in names:
                raise ValueError(f"Read strobe register must be one of {sorted(names)}, "
                                 f"not {name!r}")
        ports: dict[str, object] = {"s_axil": In(axil_signature())}
        for r in self.registers:
            n, wd = r.name.lower(), register_width(r)
            if r.access in ("ro", "rw"):
                ports[f"{n}_r"] = In(wd)
            if r.access in ("rw", "wo"):
                ports[f"{n}_w"] = Out(wd)
                ports[f"{n}_we"] = Out(1)
            if r.name in self.read_strobes:
                ports[f"{n}_re"] = Out(1)
        super().__init__(ports)

    def mapped(self, word: Value) -> Value:
        """1 when the word address ``word`` (byte address >> 2) is one of the block's
        registers."""
        return Cat(*[word == r.offset >> 2 for r in self.registers]).any()

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil
        # write: take address and data together, answer with one response once the write
        # has taken effect (the strobes fire the cycle after the handshake): OKAY, or
        # SLVERR for an unmapped address
        take_w = Signal()
        wpend = Signal()
        m.d.comb += [take_w.eq(bus.awvalid & bus.wvalid & ~bus.bvalid & ~wpend),
                     bus.awready.eq(take_w), bus.wready.eq(take_w)]
        m.d.sync += wpend.eq(take_w)
        with m.If(take_w):
            m.d.sync += bus.bresp.eq(Mux(self.mapped(bus.awaddr[2:]), OKAY, SLVERR))
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        with m.If(wpend):
            m.d.sync += bus.bvalid.eq(1)
        # the written value and each register's strobe are registered: they take effect the
        # cycle after the handshake, and a strobe is a flip-flop, not a decode of the bus
        mask = Signal(32)
        wdata = Signal(32)
        for b in range(4):
            with m.If(take_w):
                m.d.sync += mask[8 * b:8 * b + 8].eq(bus.wstrb[b].replicate(8))
        with m.If(take_w):
            m.d.sync += wdata.eq(bus.wdata)
        # read: the address is registered when taken, the value sampled two cycles later
        # (the read strobes fire then) and answered the cycle after: the register mux's
        # select comes from a register, not from the bus, and a write's effect (registered,
        # see below) is visible to a read that follows it
        take_r = Signal()
        wait = Signal()
        pending = Signal()
        word_r = Signal(len(bus.araddr) - 2)
        m.d.comb += [take_r.eq(bus.arvalid & ~bus.rvalid & ~wait & ~pending),
                     bus.arready.eq(take_r)]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        m.d.sync += [wait.eq(take_r), pending.eq(wait)]
        with m.If(take_r):
            m.d.sync += word_r.eq(bus.araddr[2:])
        with m.If(pending):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(0),
                         bus.rresp.eq(Mux(self.mapped(word_r), OKAY, SLVERR))]
        word_w = bus.awaddr[2:]
        for r in self.registers:
            n, wd = r.name.lower(), register_width(r)
            index = r.offset >> 2
            if r.access in ("ro", "rw"):
                with m.If(pending & (word_r == index)):
                    m.d.sync += bus.rdata.eq(getattr(self, f"{n}_r"))
            if r.name in self.read_strobes:
                m.d.comb += getattr(self, f"{n}_re").eq(pending & (word_r == index))
            if r.access in ("rw", "wo"):
                old = getattr(self, f"{n}_r") if r.access == "rw" else 0
                we = Signal(name=f"{n}_we_q")
                m.d.sync += we.eq(take_w & (word_w == index))
                m.d.comb += [
                    getattr(self, f"{n}_we").eq(we),
                    getattr(self, f"{n}_w").eq(((wdata & mask) | (old & ~mask))[:wd]),
                ]
        return m
