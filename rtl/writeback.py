"""Write-back: a group's ``lanes`` activations into the activation memory.

With ``lanes >= simd`` a group fills ``lanes / simd`` whole words, one per cycle; the group is
taken from the stream at its first word (so the stream never waits more than the
``lanes / simd`` cycles the compiler spaces groups by) and words past the layer's
``out_ct`` channel tiles are not written. With ``lanes < simd`` it fills one
``lanes``-element slot of a word, using the memory's per-element write enables.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.layout.words import core_words
from hwq.rtl.fetch import group_side_layout
from hwq.rtl.requant import requant_output_layout

__all__ = ["Writeback"]


class Writeback(wiring.Component):
    """Stream component: ``{y, side}`` beats in, memory writes out.

    Ports: ``i`` (requant output stream, ``side`` = :func:`group_side_layout`), ``out_ct``
    (In, output channel tiles of the layer), ``wr_addr``/``wr_data``/``wr_en`` (Out, a write
    port with ``simd`` element enables), ``done`` (Out, strobe: the layer's last write).
    """

    def __init__(self, *, config: CoreConfig) -> None:
        if not isinstance(config, CoreConfig):
            raise TypeError(f"Config must be a CoreConfig, not {config!r}")
        self.config = config
        w = core_words(config)
        super().__init__({
            "i": In(stream.Signature(requant_output_layout(config, group_side_layout(config)))),
            "out_ct": In(w.dim_bits),
            "wr_addr": Out(w.act_addr_bits),
            "wr_data": Out(unsigned(config.simd * config.act_bits)),
            "wr_en": Out(config.simd),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        p, s = cfg.lanes, cfg.simd
        y, side = self.i.payload.y, self.i.payload.side
        if p >= s:
            # beat 0 straight from the input (which is taken at once), beats 1.. from `hold`
            beats = p // s
            j = Signal(range(beats))
            hold = Signal.like(self.i.payload)
            src = Mux(j == 0, self.i.payload.as_value(), hold.as_value())
            src = self.i.payload.shape()(src)
            words = [Cat(*[src.y[lane].as_unsigned() for lane in range(k * s, (k + 1) * s)])
                     for k in range(beats)]
            data_mux = words[0]
            for k in range(1, beats):
                data_mux = Mux(j == k, words[k], data_mux)
            active = Mux(j == 0, self.i.valid, 1)
            ct = src.side.wct + j
            m.d.comb += [
                self.wr_addr.eq(src.side.out + ct),
                self.wr_data.eq(data_mux),
                self.wr_en.eq(Mux(active & (ct < self.out_ct), (1 << s) - 1, 0)),
                self.i.ready.eq(j == 0),
                self.done.eq(active & (j == beats - 1) & src.side.llast),
            ]
            if beats > 1:
                with m.If(j != 0):
                    m.d.sync += j.eq(Mux(j == beats - 1, 0, j + 1))
                with m.Elif(self.i.valid):
                    m.d.sync += [j.eq(1), hold.eq(self.i.payload)]
        else:
            r = s // p
            en = Signal(s)
            for k in range(r):
                m.d.comb += en[k * p:(k + 1) * p].eq(Mux(self.i.valid & (side.wslot == k),
                                                         (1 << p) - 1, 0))
            m.d.comb += [
                self.wr_addr.eq(side.out + side.wct),
                self.wr_data.eq(Cat(*([y[lane].as_unsigned() for lane in range(p)] * r))),
                self.wr_en.eq(en),
                self.i.ready.eq(1),
                self.done.eq(self.i.valid & side.llast),
            ]
        return m
