"""Address generation: the layer loops of the core, one micro-op address per cycle.

:class:`AddressGenerator` walks a layer descriptor (:func:`hwq.layout.words.core_words`):

* matmul (conv2d, linear): for each output position (row-major), every weight micro-op
  ``w_base .. w_last``. Each op carries the position's base address ``pos`` (the input
  word of kernel tap (0, 0), channel tile 0, possibly in the padding), its top-left input
  coordinates ``ih0``/``iw0`` for the padding test, and the output position's address. The
  micro-op's own offset and tap are added after the weight fetch (:mod:`hwq.rtl.fetch`).
  All updates are additions (row and column steps precomputed by the compiler).
* pool: for each output position and channel tile, the four input words of the window.

:class:`WeightFetch` and :class:`ActFetch` then read the memories.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.layout.words import KIND_POOL, core_words
from hwq.rtl.layouts import struct_layout

__all__ = ["AddressGenerator", "op_layout"]


def op_layout(config: CoreConfig) -> data.StructLayout:
    """Payload of the address generator's stream (one micro-op)."""
    w = core_words(config)
    return data.StructLayout({
        "w_addr": unsigned(w.weight_addr_bits),
        "pos": signed(w.pos_bits),
        "ih0": signed(w.dim_bits + 1),
        "iw0": signed(w.dim_bits + 1),
        "out": unsigned(w.act_addr_bits),
        "pfirst": unsigned(1),
        "llast": unsigned(1),
        "pool_first": unsigned(1),
        "pool_last": unsigned(1),
    })


class AddressGenerator(wiring.Component):
    """Emits the micro-ops of the layer ``desc`` after a ``start`` strobe.

    Ports: ``desc`` (In, the descriptor, stable while ``busy``), ``start`` (In), ``busy``
    (Out: ops remain to be emitted), ``o`` (Out stream of :func:`op_layout`; the last op of
    the layer has ``llast``).
    """

    def __init__(self, *, config: CoreConfig) -> None:
        if not isinstance(config, CoreConfig):
            raise TypeError(f"Config must be a CoreConfig, not {config!r}")
        self.config = config
        self.words = core_words(config)
        super().__init__({
            "desc": In(struct_layout(self.words.desc)),
            "start": In(1),
            "busy": Out(1),
            "o": Out(stream.Signature(op_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.words
        d = self.desc
        pool = d.kind == KIND_POOL
        running = Signal()
        w_addr = Signal(w.weight_addr_bits)
        oh = Signal(w.dim_bits)
        ow = Signal(w.dim_bits)
        ct = Signal(w.dim_bits)
        tap = Signal(2)
        row_pos = Signal(signed(w.pos_bits))
        pos = Signal(signed(w.pos_bits))
        ih0 = Signal(signed(w.dim_bits + 1))
        iw0 = Signal(signed(w.dim_bits + 1))
        out_pos = Signal(w.act_addr_bits)

        last_col = ow == d.out_w - 1
        last_row = oh == d.out_h - 1
        end_word = w_addr == d.w_last
        end_ct = ct == d.in_ct - 1
        end_pos = Mux(pool, (tap == 3) & end_ct, end_word)
        tap_off = Mux(tap[0], d.dx_step, 0) + Mux(tap[1], d.dy_step, 0)
        p = self.o.payload
        m.d.comb += [
            self.busy.eq(running),
            self.o.valid.eq(running),
            p.w_addr.eq(w_addr),
            p.pos.eq(Mux(pool, pos + ct + tap_off, pos)),
            p.ih0.eq(ih0),
            p.iw0.eq(iw0),
            p.out.eq(Mux(pool, out_pos + ct, out_pos)),
            p.pfirst.eq(w_addr == d.w_base),
            p.llast.eq(end_pos & last_col & last_row),
            p.pool_first.eq(tap == 0),
            p.pool_last.eq(tap == 3),
        ]
        with m.If(self.start):
            m.d.sync += [running.eq(1), w_addr.eq(d.w_base), oh.eq(0), ow.eq(0), ct.eq(0),
                         tap.eq(0), row_pos.eq(d.pos0), pos.eq(d.pos0), ih0.eq(-d.pad),
                         iw0.eq(-d.pad), out_pos.eq(d.out_base)]
        with m.Elif(self.o.valid & self.o.ready):
            with m.If(pool):
                m.d.sync += tap.eq(tap + 1)
                with m.If(tap == 3):
                    m.d.sync += ct.eq(Mux(end_ct, 0, ct + 1))
            with m.Else():
                m.d.sync += w_addr.eq(Mux(end_word, d.w_base, w_addr + 1))
            with m.If(end_pos):                     # next output position
                m.d.sync += out_pos.eq(out_pos + d.out_ct)
                with m.If(last_col):
                    m.d.sync += [ow.eq(0), iw0.eq(-d.pad)]
                    with m.If(last_row):
                        m.d.sync += running.eq(0)
                    with m.Else():
                        m.d.sync += [oh.eq(oh + 1), ih0.eq(ih0 + d.stride),
                                     row_pos.eq(row_pos + d.row_step),
                                     pos.eq(row_pos + d.row_step)]
                with m.Else():
                    m.d.sync += [ow.eq(ow + 1), iw0.eq(iw0 + d.stride),
                                 pos.eq(pos + d.col_step)]
        return m
