"""The core behind the UART host link: what a board runs, and what the link tests simulate.

:class:`LinkedCore` has the UART pins ``rx``/``tx`` and the core's ``irq``. Its
:class:`~hwq.rtl.uart_bridge.UartHostLink` masters the AXI4-Lite register block of an
instance of ``hwq_core``, the module :func:`hwq.rtl.generate.generate` writes (so a board and
the simulator run exactly that Verilog, preloaded or not); the core's AXI-Stream bulk port is
tied off (bulk words go through ``BULK_WDATA``). :func:`linked_verilog` is the Verilog of
the top ``hwq_linked``.
"""

from amaranth.back import rtlil
from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwq.rtl.generate import TOP as CORE_TOP
from hwq.rtl.uart_bridge import UartHostLink

__all__ = ["TOP", "LinkedCore", "linked_verilog"]

#: Top module of :func:`linked_verilog`.
TOP = "hwq_linked"


class LinkedCore(wiring.Component):
    """UART pins → bridge → an instance of ``hwq_core`` (its Verilog supplied separately).

    Parameters
    ----------
    divider : int
        clock cycles per UART bit.
    max_burst : int
        words of the bridge's write buffer.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    irq: Out(1)

    def __init__(self, *, divider: int, max_burst: int = 64) -> None:
        self.link = UartHostLink(divider=divider, max_burst=max_burst)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        bus = link.m_axil
        ports = {f"i_s_axil__{name}": getattr(bus, name) for name in (
            "awaddr", "awvalid", "wdata", "wstrb", "wvalid", "bready", "araddr", "arvalid",
            "rready")}
        ports.update({f"o_s_axil__{name}": getattr(bus, name) for name in (
            "awready", "wready", "bresp", "bvalid", "arready", "rdata", "rresp", "rvalid")})
        m.submodules.core = Instance(
            CORE_TOP, i_clk=ClockSignal(), i_rst=ResetSignal(), i_s_axis__tdata=0,
            i_s_axis__tvalid=0, o_s_axis__tready=Signal(), o_irq=self.irq, **ports)
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx)]
        return m


def linked_verilog(*, divider: int, max_burst: int = 64) -> str:
    """Verilog of the top ``hwq_linked`` (ports ``clk``, ``rst``, ``rx``, ``tx``, ``irq``).

    It instantiates ``hwq_core``: compile it with :func:`hwq.rtl.generate.generate`'s text.
    """
    from hwq.rtl.generate import _yosys  # the core's own Yosys pass: the same Verilog style

    text = rtlil.convert(LinkedCore(divider=divider, max_burst=max_burst), name=TOP,
                         emit_src=False)
    return _yosys(text, shrink=False)
