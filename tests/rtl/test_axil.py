"""The AXI4-Lite register block in Amaranth's simulator: every word of the window answers
OKAY if the register map has a register there and SLVERR otherwise, for reads and writes;
an unmapped write changes nothing, a mapped one still takes effect."""

from amaranth.hdl import Module, Signal

from hwq.layout.regmap import ADDR, ADDR_WIDTH, REGISTERS
from hwq.rtl.axil import OKAY, SLVERR, RegisterBlock, register_width
from hwq.rtl.simulation import axil_read_resp, axil_write

from .streams import run

MAPPED = {r.offset for r in REGISTERS}


def _block():
    """The register block with a register behind each ``rw`` port (as the core keeps them),
    ``ro`` ports reading their own offset + 1 (in their width), and a count of every write strobe fired."""
    m = Module()
    m.submodules.regs = regs = RegisterBlock()
    strobes = Signal(16)
    fired = []
    for r in regs.registers:
        n = r.name.lower()
        if r.access == "rw":
            state = Signal.like(getattr(regs, f"{n}_r"), name=f"{n}_state")
            with m.If(getattr(regs, f"{n}_we")):
                m.d.sync += state.eq(getattr(regs, f"{n}_w"))
            m.d.comb += getattr(regs, f"{n}_r").eq(state)
        elif r.access == "ro":
            m.d.comb += getattr(regs, f"{n}_r").eq(r.offset + 1)
        if r.access in ("rw", "wo"):
            fired.append(getattr(regs, f"{n}_we"))
    m.d.sync += strobes.eq(strobes + sum(fired))
    return m, regs, strobes


def test_unmapped_words_answer_slverr_and_mapped_ones_okay():
    m, regs, strobes = _block()
    seen = {}

    async def tb(ctx):
        bus = regs.s_axil
        for off in range(0, 1 << ADDR_WIDTH, 4):
            before = ctx.get(strobes)
            bresp = await axil_write(ctx, bus, off, 0xFFFF_FFFF)
            seen[off] = (bresp, ctx.get(strobes) - before, *await axil_read_resp(ctx, bus, off))
        # a mapped write after all that still reads back
        seen["layer_sel"] = (await axil_write(ctx, bus, ADDR.LAYER_SEL, 5),
                             *await axil_read_resp(ctx, bus, ADDR.LAYER_SEL))

    run(m, tb)
    by = {r.offset: r for r in REGISTERS}
    for off in range(0, 1 << ADDR_WIDTH, 4):
        bresp, fired, rdata, rresp = seen[off]
        if off not in MAPPED:
            assert (bresp, fired, rdata, rresp) == (SLVERR, 0, 0, SLVERR), hex(off)
        else:
            assert (bresp, rresp) == (OKAY, OKAY), hex(off)
            assert fired == (by[off].access in ("rw", "wo")), hex(off)
            if by[off].access == "ro":
                assert rdata == (off + 1) % (1 << register_width(by[off])), hex(off)
    assert seen[0x2C][0] == SLVERR and seen[0xFC][3] == SLVERR
    assert seen["layer_sel"] == (OKAY, 5, OKAY)
