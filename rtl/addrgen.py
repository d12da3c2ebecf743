"""Address generation: the layer loops of the core, one micro-op address per cycle.

:class:`AddressGenerator` walks a layer descriptor (:func:`hwq.layout.words.core_words`):

* matmul (conv2d, linear): for each output position (row-major), every weight micro-op
  ``w_base .. w_last``. Each op carries the position's base address ``pos`` (the input
  word of kernel tap (0, 0), channel tile 0, possibly in the padding), its top-left input
  coordinates ``ih0``/``iw0`` for the padding test, and the output position's address. The
  micro-op's own offset and tap are added after the weight fetch (:mod:`hwq.rtl.fetch`).
  All updates are additions (row and column steps precomputed by the compiler).
* pool: for each output position and channel tile, the ``kernel_h x kernel_w`` input words
  of the window, row by row; each op carries the tap's input row and column (``ih0``,
  ``iw0``) for the padding test (a tap in the padding is not read and never wins).
* fused matmul (``fuse``, cores with ``pool_words``): for each pooled output position
  (row-major), for each of the ``kernel_h x kernel_w`` conv positions of its pool window
  (row by row), every weight micro-op; ``pool_first``/``pool_last`` mark the window's
  first and last conv position, ``out`` is the pooled output's address.
* depthwise matmul (``dw``, cores with ``depthwise``, :mod:`hwq.layout.dwmode`): as a
  matmul, but the micro-ops ``w_base .. w_last`` at the first position of each output row
  (``rfirst``) and ``w_base2 .. w_last2`` at the others.

Timing: no comparator sits between the loop counters and the enables and muxes of the
position registers. The loop-end tests (last weight micro-op or pool tap of a position,
last column, last row, last channel tile) and ``pfirst`` are registers computed one op
ahead, each against a next-to-last value registered at ``start`` (the descriptor is stable
while ``busy``). The op stream is the same op for op and cycle for cycle as testing the
counters directly (:mod:`hwq.golden.cycles` models it).

:class:`WeightFetch` and :class:`ActFetch` then read the memories.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.layout.words import KIND_POOL, core_words
from hwq.rtl.words import struct_layout

__all__ = ["AddressGenerator", "op_layout"]


def op_layout(config: CoreConfig) -> data.StructLayout:
    """Payload of the address generator's stream (one micro-op)."""
    w = core_words(config)
    extra = {"rfirst": unsigned(1)} if config.depthwise else {}
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
        **extra,
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
        running = Signal()
        w_addr = Signal(w.weight_addr_bits)
        oh = Signal(w.dim_bits)
        ow = Signal(w.dim_bits)
        ct = Signal(w.dim_bits)
        tu = Signal(w.dim_bits)                     # pool window row
        tv = Signal(w.dim_bits)                     # pool window column
        tap_off = Signal(w.pos_bits)                # tu * dy_step + tv * dx_step
        row_off = Signal(w.pos_bits)                # tu * dy_step
        fusing = bool(self.config.pool_words)
        if fusing:
            tap_ih = Signal(w.dim_bits)             # tu * tap_sh (pool: tu)
            tap_iw = Signal(w.dim_bits)             # tv * tap_sw (pool: tv)
            fuse = Signal()                         # d.fuse (a matmul with its pool)
        else:
            tap_ih, tap_iw, fuse = tu, tv, 0
        row_pos = Signal(signed(w.pos_bits))
        pos = Signal(signed(w.pos_bits))
        ih0 = Signal(signed(w.dim_bits + 1))
        iw0 = Signal(signed(w.dim_bits + 1))
        out_pos = Signal(w.act_addr_bits)

        # Loop flags: registers holding, for the op now on the output, the test written beside
        # them, so that no comparator feeds the enables and muxes below. ``start`` loads them
        # from the descriptor; when a counter steps, its flag takes the test of the counter's
        # next value: if the counter wraps to its first value, whether the loop has one
        # iteration (``one_*``), else whether the counter is now at its next-to-last value
        # (``*_pen``, registered at ``start``). ``end_pos`` marks the last op of an output
        # position: its last weight micro-op (matmul), or the last window tap of the last
        # channel tile (pool).
        pool = Signal()                             # d.kind == KIND_POOL
        pfirst = Signal()                           # w_addr == d.w_base
        end_pos = Signal()                          # w_addr == d.w_last; pool: taps & end_ct
        tap_first = Signal()                        # tu == 0 and tv == 0
        tv_last = Signal()                          # tv == d.kernel_w - 1
        tu_last = Signal()                          # tu == d.kernel_h - 1
        end_ct = Signal()                           # ct == d.in_ct - 1
        last_col = Signal()                         # ow == d.out_w - 1
        last_row = Signal()                         # oh == d.out_h - 1
        w_pen = Signal(w.weight_addr_bits)          # d.w_last - 1, wrapping like w_addr
        kw_pen = Signal(signed(w.dim_bits + 1))     # d.kernel_w - 2
        kh_pen = Signal(signed(w.dim_bits + 1))     # d.kernel_h - 2
        ct_pen = Signal(signed(w.dim_bits + 1))     # d.in_ct - 2
        col_pen = Signal(signed(w.dim_bits + 1))    # d.out_w - 2
        row_pen = Signal(signed(w.dim_bits + 1))    # d.out_h - 2
        one_word = d.w_base == d.w_last
        dwm = bool(self.config.depthwise)
        if dwm:
            # the depthwise mode: w_base .. w_last at a row's first position, w_base2 ..
            # w_last2 at the others (``rowp``: this position is a row's first; ``w_penr``:
            # the next-to-last micro-op of this position's range)
            dwl = Signal()                          # d.dw (a matmul)
            rowp = Signal()                         # ow == 0
            w_pen2 = Signal(w.weight_addr_bits)     # d.w_last2 - 1
            w_penr = Signal(w.weight_addr_bits)     # w_pen or w_pen2
            one_word2 = Signal()                    # d.w_base2 == d.w_last2
        one_kw = d.kernel_w == 1
        one_kh = d.kernel_h == 1
        one_ct = d.in_ct == 1
        one_col = d.out_w == 1
        one_row = d.out_h == 1

        # the last op of an output position: ``end_pos`` (pool, matmul) and, in a fused
        # matmul, the pool window's last conv position (a conjunction of flag registers)
        taps_last = tv_last & tu_last
        pos_end = end_pos & (taps_last | ~fuse) if fusing else end_pos
        windowed = pool | fuse if fusing else pool

        p = self.o.payload
        m.d.comb += [
            self.busy.eq(running),
            self.o.valid.eq(running),
            p.w_addr.eq(w_addr),
            p.pos.eq(Mux(windowed, pos + ct + tap_off, pos)),
            p.ih0.eq(ih0 + Mux(windowed, tap_ih, 0)),
            p.iw0.eq(iw0 + Mux(windowed, tap_iw, 0)),
            p.out.eq(Mux(pool, out_pos + ct, out_pos)),
            p.pfirst.eq(pfirst),
            p.llast.eq(pos_end & last_col & last_row),
            p.pool_first.eq(tap_first),
            p.pool_last.eq(taps_last),
        ]
        if dwm:
            m.d.comb += p.rfirst.eq(rowp)
        with m.If(self.start):
            kind_pool = d.kind == KIND_POOL
            m.d.sync += [running.eq(1), w_addr.eq(d.w_base), oh.eq(0), ow.eq(0), ct.eq(0),
                         tu.eq(0), tv.eq(0), tap_off.eq(0), row_off.eq(0),
                         row_pos.eq(d.pos0), pos.eq(d.pos0), ih0.eq(-d.pad_t),
                         iw0.eq(-d.pad_l), out_pos.eq(d.out_base)]
            if fusing:
                m.d.sync += [tap_ih.eq(0), tap_iw.eq(0), fuse.eq(~kind_pool & d.fuse)]
            m.d.sync += [pool.eq(kind_pool), pfirst.eq(1), tap_first.eq(1),
                         end_pos.eq(Mux(kind_pool, one_kw & one_kh & one_ct, one_word)),
                         tv_last.eq(one_kw), tu_last.eq(one_kh), end_ct.eq(one_ct),
                         last_col.eq(one_col), last_row.eq(one_row), w_pen.eq(d.w_last - 1),
                         kw_pen.eq(d.kernel_w - 2), kh_pen.eq(d.kernel_h - 2),
                         ct_pen.eq(d.in_ct - 2), col_pen.eq(d.out_w - 2),
                         row_pen.eq(d.out_h - 2)]
            if dwm:
                m.d.sync += [dwl.eq(~kind_pool & d.dw), rowp.eq(1), w_pen2.eq(d.w_last2 - 1),
                             w_penr.eq(d.w_last - 1), one_word2.eq(d.w_base2 == d.w_last2)]
        with m.Elif(self.o.valid & self.o.ready):
            def step_taps():
                """Window taps: tv fastest, then tu; back to (0, 0) after the last."""
                m.d.sync += tap_first.eq(taps_last)
                with m.If(~tv_last):
                    m.d.sync += [tv.eq(tv + 1), tv_last.eq(tv == kw_pen),
                                 tap_off.eq(tap_off + d.dx_step)]
                    if fusing:
                        m.d.sync += tap_iw.eq(tap_iw + Mux(pool, 1, d.tap_sw))
                with m.Elif(~tu_last):
                    m.d.sync += [tv.eq(0), tv_last.eq(one_kw), tu.eq(tu + 1),
                                 tu_last.eq(tu == kh_pen), row_off.eq(row_off + d.dy_step),
                                 tap_off.eq(row_off + d.dy_step)]
                    if fusing:
                        m.d.sync += [tap_iw.eq(0), tap_ih.eq(tap_ih + Mux(pool, 1, d.tap_sh))]
                with m.Else():
                    m.d.sync += [tv.eq(0), tv_last.eq(one_kw), tu.eq(0), tu_last.eq(one_kh),
                                 tap_off.eq(0), row_off.eq(0)]
                    if fusing:
                        m.d.sync += [tap_iw.eq(0), tap_ih.eq(0)]

            with m.If(pool):
                # window taps, then the channel tile ct
                step_taps()
                with m.If(~tv_last):
                    m.d.sync += end_pos.eq((tv == kw_pen) & tu_last & end_ct)
                with m.Elif(~tu_last):
                    m.d.sync += end_pos.eq(one_kw & (tu == kh_pen) & end_ct)
                with m.Else():
                    next_end_ct = Mux(end_ct, one_ct, ct == ct_pen)
                    m.d.sync += [ct.eq(Mux(end_ct, 0, ct + 1)), end_ct.eq(next_end_ct),
                                 end_pos.eq(one_kw & one_kh & next_end_ct)]
            with m.Else():
                # weight micro-ops; in a fused matmul, then the window's conv positions
                if dwm:     # the next position's range: a row's first, or the others
                    steady = dwl & ~last_col
                    m.d.sync += [w_addr.eq(Mux(end_pos, Mux(steady, d.w_base2, d.w_base),
                                               w_addr + 1)),
                                 pfirst.eq(end_pos),
                                 end_pos.eq(Mux(end_pos, Mux(steady, one_word2, one_word),
                                                w_addr == w_penr))]
                    with m.If(end_pos):
                        m.d.sync += [rowp.eq(last_col),
                                     w_penr.eq(Mux(steady, w_pen2, w_pen))]
                else:
                    m.d.sync += [w_addr.eq(Mux(end_pos, d.w_base, w_addr + 1)),
                                 pfirst.eq(end_pos),
                                 end_pos.eq(Mux(end_pos, one_word, w_addr == w_pen))]
                if fusing:
                    with m.If(fuse & end_pos):
                        step_taps()
            with m.If(pos_end):                     # next output position
                m.d.sync += out_pos.eq(out_pos + d.out_ct)
                with m.If(last_col):
                    m.d.sync += [ow.eq(0), iw0.eq(-d.pad_l), last_col.eq(one_col)]
                    with m.If(last_row):
                        m.d.sync += running.eq(0)
                    with m.Else():
                        m.d.sync += [oh.eq(oh + 1), ih0.eq(ih0 + d.stride_h),
                                     row_pos.eq(row_pos + d.row_step),
                                     pos.eq(row_pos + d.row_step),
                                     last_row.eq(oh == row_pen)]
                with m.Else():
                    m.d.sync += [ow.eq(ow + 1), iw0.eq(iw0 + d.stride_w),
                                 pos.eq(pos + d.col_step), last_col.eq(ow == col_pen)]
        return m
