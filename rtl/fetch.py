"""Memory fetch stages between the address generator and the MAC array / max pool.

Both are pipeline stages on streams around a synchronous memory read port (``*_addr``/
``*_en`` out, ``*_data`` in): :class:`ActFetch` registers the addresses it computes (3
registers), then both read and register the read data (2), so neither an address
computation nor any logic after a RAM output shares a cycle with the RAM. The read port's
enable is the stages' common advance, so back-pressure holds the read data.

:class:`WeightFetch` reads the weight micro-op of each op. :class:`ActFetch` adds the
micro-op's offset to the position address, tests the tap against the padding (out of
bounds reads as zero, or as the most negative value in a max pool), counts groups within
a position (the parameter address and the output channel tile of the group) and reads the
activation word and the group's requant parameters.

K packing (``config.pack``, :mod:`hwq.layout.kpack`): the activation fetch also reads a
second word B at ``pos + off2`` on a second read port (its tap ``u2``, ``v2`` tested
against the padding on its own: out of bounds reads as 0) and, in one stage more
(:data:`hwq.hardware.PACK_STAGES`), forms ``a[j] = A[j]`` for ``split == 0`` or
``j < split``, else ``B[j - split]``. The lanes above a packed micro-op's channels see
B's padding channels and whatever the word after them holds: their weights are 0, so
those activations never reach a sum. A pool beat has ``split`` 0.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.layout.words import KIND_POOL, core_words
from hwq.rtl.addrgen import op_layout
from hwq.rtl.words import struct_layout

__all__ = ["ActFetch", "WeightFetch", "fetched_layout", "group_side_layout"]


def _check(config: object) -> CoreConfig:
    if not isinstance(config, CoreConfig):
        raise TypeError(f"Config must be a CoreConfig, not {config!r}")
    return config


class WeightFetch(wiring.Component):
    """``op`` in; ``{op, word}`` out two cycles later, ``word`` the weight micro-op (the
    memory read, then its data registered)."""

    def __init__(self, *, config: CoreConfig) -> None:
        self.config = _check(config)
        self.words = core_words(config)
        wl = struct_layout(self.words.weight)
        super().__init__({
            "i": In(stream.Signature(op_layout(config))),
            "o": Out(stream.Signature(data.StructLayout({"op": op_layout(config),
                                                         "word": wl}))),
            "rd_addr": Out(self.words.weight_addr_bits),
            "rd_en": Out(1),
            "rd_data": In(wl),
        })

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        valid_a = Signal()
        op_a = Signal(op_layout(self.config))
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance),
                     self.rd_en.eq(advance), self.rd_addr.eq(self.i.payload.w_addr)]
        with m.If(advance):
            # stage A: the read; stage B: the read data registered (no logic after the RAM)
            m.d.sync += [valid_a.eq(self.i.valid), op_a.eq(self.i.payload),
                         self.o.valid.eq(valid_a), self.o.payload.op.eq(op_a),
                         self.o.payload.word.eq(self.rd_data)]
        return m


def group_side_layout(config: CoreConfig) -> data.StructLayout:
    """What travels with a group to the write-back: where its outputs go."""
    w = core_words(config)
    fields = {
        "out": unsigned(w.act_addr_bits),      # output position address
        "wct": unsigned(w.dim_bits),           # first output channel tile of the group
        "wslot": unsigned(max(1, (max(1, config.simd // config.lanes) - 1).bit_length())),
        "llast": unsigned(1),                  # the layer's last group
    }
    if config.pool_words:                      # a fused pool's window: first and last tap
        fields.update(tfirst=unsigned(1), tlast=unsigned(1))
    return data.StructLayout(fields)


def fetched_layout(config: CoreConfig) -> data.StructLayout:
    """Payload of :class:`ActFetch`'s output: a MAC beat or a pool beat."""
    w = core_words(config)
    wl = w.weight
    return data.StructLayout({
        "w": struct_layout(wl)["w"].shape,
        "shift": unsigned(3),
        "neg": unsigned(1),
        "glast": unsigned(1),
        "a": struct_layout(w.act)["a"].shape,
        "param": struct_layout(w.param),
        "group": group_side_layout(config),
        "pool_first": unsigned(1),
        "pool_last": unsigned(1),
        **({"dw": unsigned(1)} if config.depthwise else {}),
    })


def window_layout(config: CoreConfig) -> data.ArrayLayout:
    """The depthwise mode's per-lane activations: ``lanes`` arrays of ``simd`` values."""
    return data.ArrayLayout(data.ArrayLayout(signed(config.act_bits), config.simd),
                            config.lanes)


class ActFetch(wiring.Component):
    """``{op, word}`` in; the activation word, the parameters and the group's write-back
    facts out three cycles later (see the module docstring).

    Ports ``kind`` and ``p_base`` come from the layer descriptor; ``in_h``/``in_w`` too
    (and ``dw``, ``stride_w`` on a core with ``depthwise``, whose output ``al`` holds the
    per-lane activations of the beat on the output, :mod:`hwq.layout.dwmode`).
    """

    def __init__(self, *, config: CoreConfig) -> None:
        self.config = _check(config)
        self.words = w = core_words(config)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "op": op_layout(config), "word": struct_layout(w.weight)}))),
            "o": Out(stream.Signature(fetched_layout(config))),
            "kind": In(1),
            "p_base": In(w.param_addr_bits),
            "in_h": In(w.dim_bits),
            "in_w": In(w.dim_bits),
            "act_addr": Out(w.act_addr_bits),
            "act_en": Out(1),
            "act_data": In(struct_layout(w.act)),
            **({"act_addr2": Out(w.act_addr_bits), "act_data2": In(struct_layout(w.act))}
               if config.pack else {}),
            "param_addr": Out(w.param_addr_bits),
            "param_en": Out(1),
            "param_data": In(struct_layout(w.param)),
            **({"dw": In(1), "stride_w": In(w.dim_bits), "al": Out(window_layout(config))}
               if config.depthwise else {}),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, w = self.config, self.words
        p, s = cfg.lanes, cfg.simd
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        op, word = self.i.payload.op, self.i.payload.word
        pool = self.kind == KIND_POOL

        # group counters: reset at the first micro-op of each output position
        side = group_side_layout(cfg)
        g = Signal(w.param_addr_bits)
        wct = Signal(side["wct"].shape)
        wslot = Signal(side["wslot"].shape)
        g_cur = Mux(op.pfirst, 0, g)
        wct_cur = Mux(op.pfirst, 0, wct)
        wslot_cur = Mux(op.pfirst, 0, wslot)
        with m.If(advance & self.i.valid & ~pool):
            m.d.sync += g.eq(g_cur + word.glast)
            if p >= s:
                m.d.sync += [wct.eq(wct_cur + Mux(word.glast, p // s, 0)), wslot.eq(0)]
            else:
                wrap = wslot_cur == s // p - 1
                m.d.sync += [wct.eq(wct_cur + (word.glast & wrap)),
                             wslot.eq(Mux(word.glast, Mux(wrap, 0, wslot_cur + 1), wslot_cur))]

        ih = Signal(signed(w.dim_bits + 2))
        iw = Signal(signed(w.dim_bits + 2))
        addr = Signal(signed(w.pos_bits + 1))
        m.d.comb += [ih.eq(op.ih0 + Mux(pool, 0, word.u)), iw.eq(op.iw0 + Mux(pool, 0, word.v)),
                     addr.eq(op.pos + Mux(pool, 0, word.off))]
        inb = (ih >= 0) & (ih < self.in_h) & (iw >= 0) & (iw < self.in_w)
        if cfg.pack:        # the second word: its own tap, its own padding test
            ih2 = Signal(signed(w.dim_bits + 2))
            iw2 = Signal(signed(w.dim_bits + 2))
            addr2 = Signal(signed(w.pos_bits + 1))
            m.d.comb += [ih2.eq(op.ih0 + word.u2), iw2.eq(op.iw0 + word.v2),
                         addr2.eq(op.pos + word.off2)]
            inb2 = (ih2 >= 0) & (ih2 < self.in_h) & (iw2 >= 0) & (iw2 < self.in_w)

        # stage 0: the addresses registered (``keep0`` holds what goes along); stage A: the
        # reads; stage B: the read data registered, out-of-bounds taps zeroed (with ``pack``:
        # stage C, the two words merged)
        keep_layout = data.StructLayout({
            "w": fetched_layout(cfg)["w"].shape, "shift": unsigned(3), "neg": unsigned(1),
            "glast": unsigned(1), "group": side, "pool_first": unsigned(1),
            "pool_last": unsigned(1)})
        valid0, inb0, keep0 = Signal(), Signal(), Signal(keep_layout)
        act_addr0 = Signal(w.act_addr_bits)
        param_addr0 = Signal(w.param_addr_bits)
        m.d.comb += [self.act_addr.eq(act_addr0), self.act_en.eq(advance),
                     self.param_en.eq(advance)]
        if not cfg.pack:
            m.d.comb += self.param_addr.eq(param_addr0)
        valid_a, inb_a, keep = Signal(), Signal(), Signal(keep_layout)
        if cfg.pack:
            # stage B registers both words (each zeroed in the padding) and the split; a
            # stage C merges them (PACK_STAGES): no lane shifter after a RAM output
            o, o_valid = Signal(fetched_layout(cfg)), Signal()
            split_bits = w.weight["split"].width
            inb2_0, split0 = Signal(), Signal(split_bits)
            inb2_a, split_a = Signal(), Signal(split_bits)
            word_b, split_b = Signal(struct_layout(w.act)["a"].shape), Signal(split_bits)
            act_addr2_0 = Signal(w.act_addr_bits)
            # the parameter read one cycle later, so its data meets stage C straight from the
            # RAM (one address register instead of a second register of the parameter word)
            param_addr_a = Signal(w.param_addr_bits)
            m.d.comb += [self.act_addr2.eq(act_addr2_0), self.param_addr.eq(param_addr_a)]
            with m.If(advance):
                m.d.sync += [inb2_0.eq(inb2), act_addr2_0.eq(Mux(inb2, addr2, 0)),
                             split0.eq(Mux(pool, 0, word.split)),
                             inb2_a.eq(inb2_0), split_a.eq(split0), split_b.eq(split_a),
                             word_b.eq(Mux(inb2_a, self.act_data2.a, 0)),
                             param_addr_a.eq(param_addr0),
                             self.o.valid.eq(o_valid), self.o.payload.eq(o),
                             self.o.payload.param.eq(self.param_data)]
                # a[j] = A[j] for split == 0 or j < split, else B[j - split]
                for j in range(s):
                    lane = o.a[j]
                    for sp in range(1, j + 1):
                        lane = Mux(split_b == sp, word_b[j - sp], lane)
                    m.d.sync += self.o.payload.a[j].eq(lane)
        else:
            o, o_valid = self.o.payload, self.o.valid
        if cfg.depthwise:
            self._window(m, advance, op, word, pool, o, o_valid, word_b)
        with m.If(advance):
            m.d.sync += [valid0.eq(self.i.valid), inb0.eq(inb),
                         act_addr0.eq(Mux(inb, addr, 0)),
                         param_addr0.eq(self.p_base + g_cur),
                         keep0.w.eq(word.w), keep0.glast.eq(word.glast),
                         keep0.group.out.eq(op.out), keep0.group.wct.eq(wct_cur),
                         keep0.group.wslot.eq(wslot_cur), keep0.group.llast.eq(op.llast),
                         keep0.pool_first.eq(op.pool_first), keep0.pool_last.eq(op.pool_last)]
            if cfg.pool_words:
                m.d.sync += [keep0.group.tfirst.eq(op.pool_first),
                             keep0.group.tlast.eq(op.pool_last)]
            if cfg.pe == "bit_serial":
                m.d.sync += [keep0.shift.eq(word.shift), keep0.neg.eq(word.neg)]
            m.d.sync += [valid_a.eq(valid0), inb_a.eq(inb0), keep.eq(keep0)]
            m.d.sync += [o_valid.eq(valid_a),
                         o.w.eq(keep.w), o.shift.eq(keep.shift), o.neg.eq(keep.neg),
                         o.glast.eq(keep.glast), o.group.eq(keep.group),
                         o.pool_first.eq(keep.pool_first), o.pool_last.eq(keep.pool_last)]
            if not cfg.pack:
                m.d.sync += o.param.eq(self.param_data)
            # a tap in the padding reads as 0 for a matmul and as the most negative value
            # (it never wins) for a max pool
            pad_value = Mux(pool, -(1 << (cfg.act_bits - 1)), 0)
            m.d.sync += [o.a[j].eq(Mux(inb_a, self.act_data.a[j], pad_value)) for j in range(s)]
        return m

    def _window(self, m: Module, advance: object, op: object, word: object, pool: object,
                o: object, o_valid: object, word_b: object) -> None:
        """The depthwise mode's window register file (:mod:`hwq.layout.dwmode`): 9 slots of
        one word, updated when a beat moves from stage B (words A ``o.a`` and B ``word_b``
        registered there) to the output, so that the output beat's ``al`` is wiring from it:
        lane ``l``, SIMD ``j`` = element ``l`` of slot ``j`` (SIMD 0: slot 8 with ``hi``)."""
        cfg = self.config
        s, cols = cfg.simd, 3
        # per slot, decided at stage 0 and registered along: whether the beat changes it
        # (``ld``), clears it (``zero``: a row's first position, or a shift past column 2;
        # a write wins) and else which source it takes (``src``: 0 word B, 1 word A, 2 the
        # slot one column right, 3 two columns right), so that the update is a small
        # multiplexer behind the flip-flops' enable and synchronous reset
        flags = data.StructLayout({"ld": unsigned(9), "zero": unsigned(9),
                                   "src": data.ArrayLayout(unsigned(2), 9),
                                   "hi": unsigned(1), "dw": unsigned(1)})
        f0, fa, fb = Signal(flags), Signal(flags), Signal(flags)
        hi_c = Signal()
        sw1 = self.stride_w == 1
        sw2 = self.stride_w == 2
        first, row = op.pfirst, op.rfirst
        dw = self.dw & ~pool
        with m.If(advance):
            for r in range(cols):
                for c in range(cols):
                    j = r * cols + c
                    wa = (word.u == r) & (word.v == c)
                    wb = (word.u2 == r) & (word.v2 == c)
                    shift1 = sw1 if c + 1 < cols else 0
                    shift2 = sw2 if c + 2 < cols else 0
                    m.d.sync += [
                        f0.ld[j].eq(wa | wb | first),
                        f0.zero[j].eq(~wa & ~wb & first & (row | ~(shift1 | shift2))),
                        f0.src[j].eq(Mux(wb, 0, Mux(wa, 1, Mux(shift1, 2, 3))))]
            m.d.sync += [f0.hi.eq(word.hi), f0.dw.eq(dw), fa.eq(f0), fb.eq(fa),
                         self.o.payload.dw.eq(fb.dw)]
        word_a = o.a
        win = [Signal(data.ArrayLayout(signed(cfg.act_bits), s), name=f"win{j}")
               for j in range(9)]
        with m.If(advance & o_valid & fb.dw):
            m.d.sync += hi_c.eq(fb.hi)
            for r in range(cols):
                for c in range(cols):
                    j = r * cols + c
                    srcs = [word_b.as_value(), word_a.as_value()]
                    srcs += [win[j + 1].as_value()] if c + 1 < cols else []
                    srcs += [win[j + 2].as_value()] if c + 2 < cols else []
                    sel = fb.src[j]
                    value = srcs[0]
                    for k in range(1, len(srcs)):
                        value = Mux(sel == k, srcs[k], value)
                    with m.If(fb.ld[j]):
                        with m.If(fb.zero[j]):
                            m.d.sync += win[j].eq(0)
                        with m.Else():
                            m.d.sync += win[j].eq(value)
        for lane in range(cfg.lanes):
            for j in range(s):
                if j == 0:
                    v = Mux(hi_c, win[8][lane], win[0][lane])
                elif j < 9:
                    v = win[j][lane]
                else:
                    v = 0
                m.d.comb += self.al[lane][j].eq(v)
