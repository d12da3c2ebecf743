"""2x2 max pool: the running element-wise maximum of four activation words."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig

__all__ = ["MaxPool"]


class MaxPool(wiring.Component):
    """Stream component: beats ``{a, first, last, side}`` in; at each ``last`` one beat
    ``{y, side}`` out with ``y`` the element-wise maximum of the ``a`` since ``first``.

    The core sends the four words of a 2x2 window, ``first`` on the first and ``last`` on the
    fourth; ``side`` (the write address) is taken from the ``last`` beat.
    """

    def __init__(self, *, config: CoreConfig, side: object = unsigned(1)) -> None:
        if not isinstance(config, CoreConfig):
            raise TypeError(f"Config must be a CoreConfig, not {config!r}")
        self.config = config
        self.side_shape = side
        vec = data.ArrayLayout(signed(config.act_bits), config.simd)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "a": vec, "first": unsigned(1), "last": unsigned(1), "side": side}))),
            "o": Out(stream.Signature(data.StructLayout({"y": vec, "side": side}))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        run = Signal(data.ArrayLayout(signed(cfg.act_bits), cfg.simd))
        best = []
        for s in range(cfg.simd):
            a = self.i.payload.a[s]
            best.append(Mux(self.i.payload.first | (a > run[s]), a, run[s]))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(self.i.valid & self.i.payload.last)
            with m.If(self.i.valid):
                m.d.sync += [run[s].eq(best[s]) for s in range(cfg.simd)]
                with m.If(self.i.payload.last):
                    m.d.sync += [self.o.payload.y[s].eq(best[s]) for s in range(cfg.simd)]
                    m.d.sync += self.o.payload.side.eq(self.i.payload.side)
        return m
