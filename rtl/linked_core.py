"""The core behind the UART host link: what a board runs, and what the link tests simulate.

:class:`LinkedCore` has the UART pins ``rx``/``tx`` and the core's ``irq``; the
:class:`~hwq.rtl.uart_bridge.UartHostLink` masters the core's AXI4-Lite register block and
the core's AXI-Stream bulk port is tied off (bulk words go through ``BULK_WDATA``).
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.layout.program import Program
from hwq.rtl.core import Core
from hwq.rtl.uart_bridge import UartHostLink

__all__ = ["LinkedCore"]


class LinkedCore(wiring.Component):
    """UART pins → bridge → :class:`~hwq.rtl.core.Core`.

    Parameters
    ----------
    config : CoreConfig
    divider : int
        clock cycles per UART bit.
    max_burst : int
        words of the bridge's write buffer.
    program : Program, optional
        preloaded into the core's memories.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    irq: Out(1)

    def __init__(self, *, config: CoreConfig, divider: int, max_burst: int = 64,
                 program: Program | None = None) -> None:
        self.config = config
        self.link = UartHostLink(divider=divider, max_burst=max_burst)
        self.core = Core(config=config, program=program)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.core = core = self.core
        wiring.connect(m, link.m_axil, core.s_axil)
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx), self.irq.eq(core.irq),
                     core.s_axis.tvalid.eq(0), core.s_axis.tdata.eq(0)]
        return m
