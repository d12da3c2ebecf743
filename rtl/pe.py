"""Processing elements, weight decoders and the ``lanes x simd`` MAC array.

One PE computes one lane's dot product of ``simd`` activations per cycle, pipelined over
:data:`DOT_STAGES` registers (every adder-tree level registered at ``simd <= 8``, so Yosys
maps each adder to a carry chain instead of merging the tree into one ``$macc``):

* :class:`ShiftAddPE`: POT codes, ``sum_s +/-(a[s] << (k[s] - 1))``, no multiplier. The
  sign is folded into the adder: a negative term is ``~(a << (k-1))`` plus a carry-in of 1.
* :class:`BitSerialPE`: one weight bit-plane ``p``: ``+/-(sum_s p[s] ? a[s] : 0) << shift``
  (the MSB plane of a tile negative), activations bit-parallel.
* :class:`MultiplyPE`: decoded signed weight values, ``sum_s w[s] * a[s]``.

Decoders: :class:`PotDecoder` (code -> sign, shift field), :class:`IntDecoder`
(two's complement code -> value), :class:`CodebookDecoder` (index -> table entry).
:class:`MacArray` is the stream component of ``lanes`` PEs and their accumulators.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import DSP_KINDS, CoreConfig
from hwq.golden._checks import check_int
from hwq.hardware import DOT_STAGES
from hwq.rtl.dsp import registered_product

__all__ = ["DOT_STAGES", "BitSerialPE", "CodebookDecoder", "IntDecoder", "MacArray",
           "MultiplyPE", "MultiplyPairPE", "PotDecoder", "ShiftAddPE", "add_carry",
           "pair_shift", "register", "tree_stages"]


def register(m: Module, value: object, en: object, name: str) -> Signal:
    """``value`` registered in ``sync`` when ``en`` (a pipeline register of the datapath)."""
    value = Value.cast(value)
    reg = Signal(value.shape(), name=name)
    with m.If(en):
        m.d.sync += reg.eq(value)
    return reg


def add_carry(a: object, b: object, c: object) -> Value:
    """``a + b + c`` (``c`` one bit) as one two-operand adder: ``c`` rides in its carry-in.

    ``((2a + 1) + (2b + c)) >> 1 == a + b + c``: the low bits ``1 + c`` carry exactly ``c``
    into bit 1, and Yosys maps a plain two-operand ``$alu`` (a CCU2C chain), not a ``$macc``.
    """
    s = Cat(Const(1, 1), a).as_signed() + Cat(c, b).as_signed()
    return s[1:].as_signed()


def tree_stages(m: Module, terms: list, carries: list, *, stages: int,
                en: object) -> tuple[object, list]:
    """Sum of ``terms`` and the 1-bit ``carries`` as an adder tree of ``stages`` registers.

    The ``ceil(log2(len(terms)))`` levels are spread over the stages (front first; a stage
    with no level is a plain register). Each adder takes one pending carry as its carry-in.
    Returns ``(sum, carries left)``: ``sum + sum(carries left) == sum(terms) + sum(carries)``.
    """
    terms, carries = list(terms), list(carries)
    levels = max(0, (len(terms) - 1).bit_length())
    per_stage = [levels // stages + (i < levels % stages) for i in range(stages)]
    for i, n in enumerate(per_stage):
        for _ in range(n):
            pairs = []
            for j in range(0, len(terms) - 1, 2):
                pairs.append(add_carry(terms[j], terms[j + 1], carries.pop()) if carries
                             else terms[j] + terms[j + 1])
            terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
        terms = [register(m, t, en, f"sum{i}_{j}") for j, t in enumerate(terms)]
        carries = [register(m, c, en, f"cin{i}_{j}") for j, c in enumerate(carries)]
    return terms[0], carries


def _check(value: object, name: str, lo: int, hi: int) -> int:
    return check_int(value, name, lo, hi)


class PotDecoder(wiring.Component):
    """``count`` POT(``bits``) codes -> sign and exponent field ``k`` (0 = zero weight).

    Ports: ``code`` (In, array of unsigned(bits)), ``negative`` (Out, array of 1 bit),
    ``k`` (Out, array of unsigned(bits-1)).
    """

    def __init__(self, *, bits: int, count: int) -> None:
        self.bits = _check(bits, "POT code bit width", 2, 7)
        self.count = _check(count, "Decoder count", 1, 1 << 16)
        super().__init__({
            "code": In(data.ArrayLayout(unsigned(bits), count)),
            "negative": Out(data.ArrayLayout(unsigned(1), count)),
            "k": Out(data.ArrayLayout(unsigned(bits - 1), count)),
        })

    def elaborate(self, platform):
        m = Module()
        for i in range(self.count):
            m.d.comb += [self.negative[i].eq(self.code[i][self.bits - 1]),
                         self.k[i].eq(self.code[i][:self.bits - 1])]
        return m


class IntDecoder(wiring.Component):
    """``count`` INT(``bits``) two's complement codes -> signed values."""

    def __init__(self, *, bits: int, count: int) -> None:
        self.bits = _check(bits, "INT code bit width", 2, 8)
        self.count = _check(count, "Decoder count", 1, 1 << 16)
        super().__init__({
            "code": In(data.ArrayLayout(unsigned(bits), count)),
            "value": Out(data.ArrayLayout(signed(bits), count)),
        })

    def elaborate(self, platform):
        m = Module()
        for i in range(self.count):
            m.d.comb += self.value[i].eq(self.code[i].as_signed())
        return m


class CodebookDecoder(wiring.Component):
    """``count`` ``bits``-bit indices -> entries of a ``2**bits``-entry table (signed).

    The table is a port (the core drives it from the layer descriptor), so every index of
    a tile is looked up in the same cycle.
    """

    def __init__(self, *, bits: int, table_bits: int, count: int) -> None:
        self.bits = _check(bits, "Codebook index bit width", 1, 8)
        self.table_bits = _check(table_bits, "Codebook table entry bit width", 2, 8)
        self.count = _check(count, "Decoder count", 1, 1 << 16)
        super().__init__({
            "table": In(data.ArrayLayout(signed(table_bits), 1 << bits)),
            "code": In(data.ArrayLayout(unsigned(bits), count)),
            "value": Out(data.ArrayLayout(signed(table_bits), count)),
        })

    def elaborate(self, platform):
        m = Module()
        for i in range(self.count):
            m.d.comb += self.value[i].eq(self.table[self.code[i]])
        return m


class ShiftAddPE(wiring.Component):
    """One lane of the shift-add array: ``dot + carry = sum_s +/-(a[s] << (k[s] - 1))``.

    Pipelined, :data:`DOT_STAGES` registers (enable ``en``): the signed terms, then the
    adder tree (one level per stage; a last stage without a level registers the sum). The
    sign is folded into the adders: a negative term is ``~(a << (k-1))`` and its ``+1`` rides
    in a tree adder's carry-in (one per adder); the last one is left over as ``carry`` for
    the accumulator. ``dot`` is signed and exact.
    """

    def __init__(self, *, simd: int, act_bits: int, weight_bits: int) -> None:
        self.simd = _check(simd, "SIMD width", 1, 256)
        self.act_bits = _check(act_bits, "Activation bit width", 2, 16)
        self.weight_bits = _check(weight_bits, "POT code bit width", 2, 7)
        max_shift = (1 << (weight_bits - 1)) - 2
        self.dot_bits = act_bits + max_shift + max(1, (simd - 1).bit_length()) + 1
        super().__init__({
            "en": In(1),
            "code": In(data.ArrayLayout(unsigned(weight_bits), simd)),
            "a": In(data.ArrayLayout(signed(act_bits), simd)),
            "dot": Out(signed(self.dot_bits)),
            "carry": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = dec = PotDecoder(bits=self.weight_bits, count=self.simd)
        m.d.comb += dec.code.eq(self.code)
        terms, carries = [], []
        for s in range(self.simd):
            k, neg = dec.k[s], dec.negative[s]
            mag = Signal(signed(self.act_bits + (1 << (self.weight_bits - 1)) - 1),
                         name=f"mag{s}")
            m.d.comb += mag.eq((self.a[s] << k) >> 1)   # a << (k - 1) for k >= 1
            nonzero = k != 0
            terms.append(register(m, Mux(nonzero, Mux(neg, ~mag, mag), 0), self.en, f"term{s}"))
            carries.append(register(m, nonzero & neg, self.en, f"neg{s}"))  # ~x + 1 == -x
        dot, left = tree_stages(m, terms, carries, stages=DOT_STAGES - 1, en=self.en)
        m.d.comb += [self.dot.eq(dot), self.carry.eq(left[0] if left else 0)]
        return m


class BitSerialPE(wiring.Component):
    """One lane of the bit-serial array: ``dot + carry = +/-(sum_s plane[s] ? a[s] : 0) << shift``.

    Pipelined, :data:`DOT_STAGES` registers (enable ``en``): the adder tree (one level per
    stage, then the sum registered), then the shift and the one's complement; the ``+1`` of
    a negative plane is ``carry``.
    """

    def __init__(self, *, simd: int, act_bits: int) -> None:
        self.simd = _check(simd, "SIMD width", 1, 256)
        self.act_bits = _check(act_bits, "Activation bit width", 2, 16)
        self.dot_bits = act_bits + max(1, (simd - 1).bit_length()) + 8
        super().__init__({
            "en": In(1),
            "plane": In(unsigned(simd)),
            "a": In(data.ArrayLayout(signed(act_bits), simd)),
            "shift": In(unsigned(3)),
            "neg": In(unsigned(1)),
            "dot": Out(signed(self.dot_bits)),
            "carry": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        stages = DOT_STAGES - 1
        total, _ = tree_stages(m, [Mux(self.plane[s], self.a[s], 0) for s in range(self.simd)],
                               [], stages=stages, en=self.en)
        shift, neg = self.shift, self.neg
        for i in range(stages):
            shift = register(m, shift, self.en, f"shift_d{i}")
            neg = register(m, neg, self.en, f"neg_d{i}")
        scaled = Signal(signed(self.dot_bits - 1))
        m.d.comb += scaled.eq(total << shift)
        m.d.comb += [self.dot.eq(register(m, Mux(neg, ~scaled, scaled), self.en, "scaled")),
                     self.carry.eq(register(m, neg, self.en, "carry"))]
        return m


class MultiplyPE(wiring.Component):
    """One lane of the multiplier array: ``dot = sum_s w[s] * a[s]`` (the baseline).

    Pipelined, :data:`DOT_STAGES` registers (enable ``en``): the decoded weights and the
    activations (multiplier inputs), the products (multiplier outputs), then the adder tree.
    ``dsp`` builds the multipliers (:func:`hwq.rtl.dsp.registered_product`); with ``"ecp5"``
    the operands are registered once more in the fabric before the block, and the tree
    has one stage less.
    ``carry`` is always 0.
    """

    def __init__(self, *, simd: int, act_bits: int, value_bits: int,
                 dsp: str = "inferred") -> None:
        if dsp not in DSP_KINDS:
            raise ValueError(f"DSP kind must be one of {', '.join(DSP_KINDS)}, not {dsp!r}")
        self.dsp = dsp
        self.simd = _check(simd, "SIMD width", 1, 256)
        self.act_bits = _check(act_bits, "Activation bit width", 2, 16)
        self.value_bits = _check(value_bits, "Weight value bit width", 2, 8)
        self.dot_bits = act_bits + value_bits + max(1, (simd - 1).bit_length())
        super().__init__({
            "en": In(1),
            "w": In(data.ArrayLayout(signed(value_bits), simd)),
            "a": In(data.ArrayLayout(signed(act_bits), simd)),
            "dot": Out(signed(self.dot_bits)),
            "carry": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w, a, tree = [self.w[s] for s in range(self.simd)], list(self.a), DOT_STAGES - 2
        if self.dsp == "ecp5":
            # the weight decode (codebook table, format mux) and the routing into the DSP
            # row get a cycle each: decoded operands registered in the fabric, then in the
            # block; the adder tree gives up a stage (two levels in its first one)
            w = [register(m, w[s], self.en, f"w{s}") for s in range(self.simd)]
            a = [register(m, a[s], self.en, f"a{s}") for s in range(self.simd)]
            tree -= 1
        products = [registered_product(m, w[s], a[s], self.en, name=f"prod{s}", dsp=self.dsp)
                    for s in range(self.simd)]
        dot, _ = tree_stages(m, products, [], stages=tree, en=self.en)
        m.d.comb += [self.dot.eq(dot), self.carry.eq(0)]
        return m


def pair_shift(act_bits: int, value_bits: int) -> int | None:
    """Bit offset ``k`` of the second weight when one 18x18 DSP multiplies an activation by
    two weights (:class:`MultiplyPairPE`), or None when the operands are too wide.

    A product ``a * w`` needs ``act_bits + value_bits`` bits (signed), and the packed
    operand ``w1 + w2 * 2**k`` must fit the block's signed 18 bits.
    """
    k = act_bits + value_bits
    return k if k + value_bits < 18 else None


class MultiplyPairPE(wiring.Component):
    """Two lanes of the multiplier array on one set of ECP5 DSP blocks: ``dot1 = sum_s
    w1[s] * a[s]`` and ``dot2 = sum_s w2[s] * a[s]``.

    The lanes share the activations, so each block computes ``P = a * (w1 + w2 * 2**k)``
    (``k`` from :func:`pair_shift`): ``L = P mod 2**k`` read as signed is ``a * w1``, and
    ``a * w2 = (P >> k) + P[k - 1]`` (the borrow of a negative ``L``). The borrows ride in
    the second tree's carry-ins; the one left over is ``carry2``. The packed operand's high
    field is ``w2 - [w1 < 0]`` (a small subtract after the fabric registers). Pipeline as
    :class:`MultiplyPE` with ``dsp="ecp5"``: :data:`DOT_STAGES` registers. ``carry1`` is 0.
    """

    def __init__(self, *, simd: int, act_bits: int, value_bits: int) -> None:
        self.simd = _check(simd, "SIMD width", 1, 256)
        self.act_bits = _check(act_bits, "Activation bit width", 2, 16)
        self.value_bits = _check(value_bits, "Weight value bit width", 2, 8)
        self.shift = pair_shift(act_bits, value_bits)
        if self.shift is None:
            raise ValueError(f"Two {value_bits}-bit weights and a {act_bits}-bit activation "
                             "(packed: act + 2 * weight + 1 bits) do not fit one 18x18 DSP "
                             "multiplier")
        self.dot_bits = act_bits + value_bits + max(1, (simd - 1).bit_length())
        super().__init__({
            "en": In(1),
            "w1": In(data.ArrayLayout(signed(value_bits), simd)),
            "w2": In(data.ArrayLayout(signed(value_bits), simd)),
            "a": In(data.ArrayLayout(signed(act_bits), simd)),
            "dot1": Out(signed(self.dot_bits)),
            "dot2": Out(signed(self.dot_bits)),
            "carry1": Out(1),
            "carry2": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        k, vb, en = self.shift, self.value_bits, self.en
        lows, highs, borrows = [], [], []
        for s in range(self.simd):
            # the decoded operands registered in the fabric (as MultiplyPE with ecp5)
            w1 = register(m, self.w1[s], en, f"w1_{s}")
            w2 = register(m, self.w2[s], en, f"w2_{s}")
            a = register(m, self.a[s], en, f"a{s}")
            low = Signal(signed(k), name=f"b_lo{s}")
            high = Signal(signed(vb + 1), name=f"b_hi{s}")
            m.d.comb += [low.eq(w1), high.eq(w2 - w1[vb - 1])]
            packed = Cat(low, high).as_signed()             # == w1 + w2 * 2**k
            prod = registered_product(m, packed, a, en, name=f"prod{s}", dsp="ecp5")
            lows.append(prod[:k].as_signed())
            highs.append(prod[k:].as_signed())
            borrows.append(prod[k - 1])
        tree = DOT_STAGES - 3
        dot1, _ = tree_stages(m, lows, [], stages=tree, en=en)
        dot2, left = tree_stages(m, highs, borrows, stages=tree, en=en)
        assert len(left) == 1
        m.d.comb += [self.dot1.eq(dot1), self.dot2.eq(dot2), self.carry1.eq(0),
                     self.carry2.eq(left[0])]
        return m


def mac_input_layout(config: CoreConfig, side: object) -> data.StructLayout:
    """Payload of :class:`MacArray`'s input stream."""
    p, s = config.lanes, config.simd
    code = unsigned(1) if config.pe == "bit_serial" else unsigned(config.weight_bits)
    return data.StructLayout({
        "w": data.ArrayLayout(code, p * s),
        "a": data.ArrayLayout(signed(config.act_bits), s),
        "shift": unsigned(3),
        "neg": unsigned(1),
        "glast": unsigned(1),
        "side": side,
        **({"dw": unsigned(1), "al": data.ArrayLayout(data.ArrayLayout(
            signed(config.act_bits), s), p)} if config.depthwise else {}),
    })


def mac_output_layout(config: CoreConfig, side: object) -> data.StructLayout:
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(config.acc_bits), config.lanes),
        "side": side,
    })


class MacArray(wiring.Component):
    """``lanes x simd`` PEs with their accumulators; one stream beat in per cycle.

    Input beat: the weight payload ``w`` (``lanes*simd`` codes, lane major), the activation
    word ``a`` (``simd`` values), ``shift``/``neg`` (bit_serial plane), ``glast`` (last beat of
    a group) and ``side`` (opaque, latched at ``glast``). Output beat, one per group: the
    ``lanes`` accumulators (``acc_bits``, two's complement; the layout compiler guarantees
    no overflow) and the group's ``side``. Latency ``DOT_STAGES + 1``: the PEs' pipelined
    dot products, then accumulate; the whole pipeline holds while the output is refused.

    With ``dsp="ecp5"`` and narrow enough values (:func:`pair_shift`) the multiply lanes
    share their DSP blocks two by two (:class:`MultiplyPairPE`; an odd last lane has its own).

    A core with ``depthwise`` adds ``dw`` and ``al`` to the input beat: with ``dw`` lane
    ``l`` multiplies ``al[l]`` instead of ``a`` (:mod:`hwq.layout.dwmode`); lanes that share
    DSP blocks (:meth:`paired`) share one activation word, so the mode refuses them.

    Ports ``table`` and ``fmt`` (multiply only) select codebook decoding for the layer. They
    are constant during a layer and registered once per lane: set them at least one cycle
    before the first beat that uses them.
    """

    def __init__(self, *, config: CoreConfig, side: object = unsigned(1)) -> None:
        if not isinstance(config, CoreConfig):
            raise TypeError(f"Config must be a CoreConfig, not {config!r}")
        self.config = config
        self.side_shape = side
        ports = {
            "i": In(stream.Signature(mac_input_layout(config, side))),
            "o": Out(stream.Signature(mac_output_layout(config, side))),
        }
        if config.pe == "multiply":
            ports["table"] = In(data.ArrayLayout(signed(config.table_bits),
                                                 1 << config.weight_bits))
            ports["fmt"] = In(1)
        super().__init__(ports)

    def _lane(self, m: Module, lane: int, payload: data.View,
              en: object) -> tuple[object, object]:
        cfg = self.config
        s = cfg.simd
        codes = [payload.w[lane * s + j] for j in range(s)]
        if cfg.pe == "shift_add":
            pe = ShiftAddPE(simd=s, act_bits=cfg.act_bits, weight_bits=cfg.weight_bits)
            m.submodules[f"pe{lane}"] = pe
            m.d.comb += [pe.code[j].eq(codes[j]) for j in range(s)]
        elif cfg.pe == "bit_serial":
            pe = BitSerialPE(simd=s, act_bits=cfg.act_bits)
            m.submodules[f"pe{lane}"] = pe
            m.d.comb += [pe.plane[j].eq(codes[j]) for j in range(s)]
            m.d.comb += [pe.shift.eq(payload.shift), pe.neg.eq(payload.neg)]
        else:
            vb = max(cfg.weight_bits, cfg.table_bits)
            pe = MultiplyPE(simd=s, act_bits=cfg.act_bits, value_bits=vb, dsp=cfg.dsp)
            m.submodules[f"pe{lane}"] = pe
            m.d.comb += [pe.w[j].eq(v) for j, v in enumerate(self._decoded(m, lane, payload))]
        if cfg.depthwise:   # the depthwise mode: the lane's own activations (a 2:1 mux)
            m.d.comb += [pe.a[j].eq(Mux(payload.dw, payload.al[lane][j], payload.a[j]))
                         for j in range(s)]
        else:
            m.d.comb += pe.a.eq(payload.a)
        m.d.comb += pe.en.eq(en)
        return pe.dot, pe.carry

    def _decoded(self, m: Module, lane: int, payload: data.View) -> list[Value]:
        """Multiply: lane ``lane``'s weight values, INT or CODEBOOK decoded (``fmt``)."""
        cfg = self.config
        s = cfg.simd
        m.submodules[f"int{lane}"] = idec = IntDecoder(bits=cfg.weight_bits, count=s)
        m.submodules[f"cb{lane}"] = cdec = CodebookDecoder(
            bits=cfg.weight_bits, table_bits=cfg.table_bits, count=s)
        # a copy of the layer's table and format per lane: each decoder reads a register
        # near it (one register would fan out to every decoder of the array)
        table = Signal.like(self.table.as_value(), name=f"table{lane}", reset_less=True)
        fmt = Signal(name=f"fmt{lane}", reset_less=True)
        m.d.sync += [table.eq(self.table.as_value()), fmt.eq(self.fmt)]
        m.d.comb += cdec.table.eq(table)
        for j in range(s):
            m.d.comb += [idec.code[j].eq(payload.w[lane * s + j]),
                         cdec.code[j].eq(payload.w[lane * s + j])]
        return [Mux(fmt, cdec.value[j], idec.value[j]) for j in range(s)]

    def paired(self) -> bool:
        """Whether lanes share DSP blocks two by two (:class:`MultiplyPairPE`): multiply with
        ``dsp="ecp5"``, two lanes or more, and narrow enough weights and activations."""
        cfg = self.config
        vb = max(cfg.weight_bits, cfg.table_bits)
        return (cfg.pe == "multiply" and cfg.dsp == "ecp5" and cfg.lanes >= 2
                and pair_shift(cfg.act_bits, vb) is not None)

    def _pairs(self, m: Module, payload: data.View, en: object) -> list[tuple[object, object]]:
        cfg = self.config
        vb = max(cfg.weight_bits, cfg.table_bits)
        out = []
        for lane in range(0, cfg.lanes - 1, 2):
            pe = MultiplyPairPE(simd=cfg.simd, act_bits=cfg.act_bits, value_bits=vb)
            m.submodules[f"pair{lane // 2}"] = pe
            m.d.comb += [pe.w1[j].eq(v) for j, v in enumerate(self._decoded(m, lane, payload))]
            m.d.comb += [pe.w2[j].eq(v)
                         for j, v in enumerate(self._decoded(m, lane + 1, payload))]
            m.d.comb += [pe.a.eq(payload.a), pe.en.eq(en)]
            out += [(pe.dot1, pe.carry1), (pe.dot2, pe.carry2)]
        if cfg.lanes % 2:
            out.append(self._lane(m, cfg.lanes - 1, payload, en))
        return out

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        # stage A: dot products, DOT_STAGES registers inside the PEs
        if self.paired() and cfg.depthwise:
            raise ValueError("The depthwise mode needs a word of activations per lane; lanes "
                             "that share DSP blocks (dsp='ecp5') share one")
        if self.paired():
            lanes = self._pairs(m, self.i.payload, advance)
        else:
            lanes = [self._lane(m, lane, self.i.payload, advance) for lane in range(cfg.lanes)]
        valid_a, glast_a, side_a = self.i.valid, self.i.payload.glast, self.i.payload.side
        for i in range(DOT_STAGES):
            valid_a = register(m, valid_a, advance, f"valid_d{i}")
            glast_a = register(m, glast_a, advance, f"glast_d{i}")
            side_a = register(m, side_a, advance, f"side_d{i}")
        accs = [Signal(signed(cfg.acc_bits), name=f"acc{lane}") for lane in range(cfg.lanes)]
        # stage B: accumulate (the PE's carry rides in the adder's carry-in); hand the group
        # over at glast
        sums = [Signal(signed(cfg.acc_bits), name=f"sum{lane}") for lane in range(cfg.lanes)]
        m.d.comb += [s.eq(add_carry(a, dot, carry))
                     for s, a, (dot, carry) in zip(sums, accs, lanes, strict=True)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(valid_a & glast_a)
            with m.If(valid_a):
                with m.If(glast_a):
                    m.d.sync += [a.eq(0) for a in accs]
                    m.d.sync += [self.o.payload.acc[lane].eq(sums[lane])
                                 for lane in range(cfg.lanes)]
                    m.d.sync += self.o.payload.side.eq(side_a)
                with m.Else():
                    m.d.sync += [a.eq(s) for a, s in zip(accs, sums, strict=True)]
        return m
