"""Write-back: a group's ``lanes`` activations into the activation memory.

With ``lanes >= simd`` a group fills ``lanes / simd`` whole words, one per cycle; the group is
taken from the stream at its first word (so the stream never waits more than the
``lanes / simd`` cycles the compiler spaces groups by) and words past the layer's
``out_ct`` channel tiles are not written. With ``lanes < simd`` it fills one
``lanes``-element slot of a word, using the memory's per-element write enables.

Fused max pool (cores with ``pool_words``, a layer with ``fuse``): the groups of one conv
position arrive with ``tfirst``/``tlast``, whether the position is the first or the last of
its pool window. The running maximum of each output word lives in a buffer of
``pool_words`` words (indexed by the word's channel tile, read without a clock): the first
position's values are stored, each later one stores the element-wise maximum with the
buffer, and only the last writes the maximum to the activation memory (at the pooled
output's address). The comparison ends at a register
(:data:`~hwq.hardware.FUSED_WRITE_STAGES`), which writes both the buffer and the activation
memory a cycle later: no comparison feeds a memory's input. So a fused layer's writes, and
its ``done``, come one cycle later, and a word's running maximum is in the buffer two cycles
after the read it was made from: the compiler fuses only matmuls whose positions take two
cycles or more (two groups or more, :func:`hwq.layout.compiler._fusable`), so the same word
is never read in consecutive cycles. Measured on the 8x8 shift_add core (LFE5U-45F, seed
1): with the comparison writing the buffer in its own cycle the read-compare-write loop was
the critical path, 97.3 MHz against 117.6 MHz without the buffer.
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
    port with ``simd`` element enables), ``done`` (Out, strobe: the layer's last write); with
    ``pool_words``: ``fuse`` (In, the layer's pool is fused) and the pool buffer's ports
    ``pool_raddr`` (Out, read without a clock), ``pool_rdata`` (In), ``pool_waddr``,
    ``pool_wdata``, ``pool_wen`` (Out, written at the clock, ``simd`` element enables).
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
            **({"fuse": In(1), "pool_raddr": Out(range(config.pool_words)),
                "pool_waddr": Out(range(config.pool_words)),
                "pool_rdata": In(unsigned(config.simd * config.act_bits)),
                "pool_wdata": Out(unsigned(config.simd * config.act_bits)),
                "pool_wen": Out(config.simd)} if config.pool_words else {}),
        })

    def _pooled(self, m: Module, index, addr, data, en, done, tfirst, tlast):
        """``(addr, data, en, done)`` of the activation memory write: unchanged without the
        buffer; with it, in a fused layer, the running maximum of the window, written on its
        last tap through a register, which also writes the buffer (the comparison stays off
        both memories' inputs)."""
        cfg = self.config
        if not cfg.pool_words:
            return addr, data, en, done
        ab, s = cfg.act_bits, cfg.simd
        keep = self.fuse & ~tfirst
        best = []
        for e in range(s):
            y = data[e * ab:(e + 1) * ab].as_signed()
            b = self.pool_rdata[e * ab:(e + 1) * ab].as_signed()
            best.append(Mux(keep & (b > y), b, y).as_unsigned())
        pooled = Cat(*best)
        r_addr, r_data = Signal.like(self.wr_addr), Signal.like(self.wr_data)
        r_en, r_done = Signal.like(self.wr_en), Signal()
        r_index, r_keep = Signal.like(self.pool_waddr), Signal.like(self.pool_wen)
        m.d.comb += [self.pool_raddr.eq(index), self.pool_waddr.eq(r_index),
                     self.pool_wdata.eq(r_data), self.pool_wen.eq(r_keep)]
        m.d.sync += [r_addr.eq(addr), r_data.eq(pooled), r_en.eq(Mux(tlast, en, 0)),
                     r_done.eq(done), r_index.eq(index), r_keep.eq(Mux(self.fuse, en, 0))]
        return (Mux(self.fuse, r_addr, addr), Mux(self.fuse, r_data, data),
                Mux(self.fuse, r_en, en), Mux(self.fuse, r_done, done))

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
            ct = Signal(len(self.out_ct) + 1)
            m.d.comb += ct.eq(src.side.wct + j)
            wr_addr, wr_data, wr_en, done = self._pooled(
                m, ct, src.side.out + ct, data_mux,
                Mux(active & (ct < self.out_ct), (1 << s) - 1, 0),
                active & (j == beats - 1) & src.side.llast,
                *((src.side.tfirst, src.side.tlast) if cfg.pool_words else (0, 0)))
            m.d.comb += [
                self.wr_addr.eq(wr_addr),
                self.wr_data.eq(wr_data),
                self.wr_en.eq(wr_en),
                self.i.ready.eq(j == 0),
                self.done.eq(done),
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
            wr_addr, wr_data, wr_en, done = self._pooled(
                m, side.wct, side.out + side.wct,
                Cat(*([y[lane].as_unsigned() for lane in range(p)] * r)), en,
                self.i.valid & side.llast,
                *((side.tfirst, side.tlast) if cfg.pool_words else (0, 0)))
            m.d.comb += [
                self.wr_addr.eq(wr_addr),
                self.wr_data.eq(wr_data),
                self.wr_en.eq(wr_en),
                self.i.ready.eq(1),
                self.done.eq(done),
            ]
        return m
