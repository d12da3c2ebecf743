"""Processing elements, weight decoders and the ``lanes x simd`` MAC array.

One PE computes one lane's dot product of ``simd`` activations per cycle
(combinational; the array registers it):

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

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.golden._checks import check_int

__all__ = ["BitSerialPE", "CodebookDecoder", "IntDecoder", "MacArray", "MultiplyPE",
           "PotDecoder", "ShiftAddPE", "tree_sum"]


def tree_sum(terms: list) -> object:
    """Sum of ``terms`` as a balanced adder tree (widths grow by one bit per level)."""
    terms = list(terms)
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


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
    """One lane of the shift-add array: ``dot = sum_s +/-(a[s] << (k[s] - 1))``.

    Ports: ``code`` (In, ``simd`` POT codes), ``a`` (In, ``simd`` signed activations),
    ``dot`` (Out, signed, exact).
    """

    def __init__(self, *, simd: int, act_bits: int, weight_bits: int) -> None:
        self.simd = _check(simd, "SIMD width", 1, 256)
        self.act_bits = _check(act_bits, "Activation bit width", 2, 16)
        self.weight_bits = _check(weight_bits, "POT code bit width", 2, 7)
        max_shift = (1 << (weight_bits - 1)) - 2
        self.dot_bits = act_bits + max_shift + max(1, (simd - 1).bit_length()) + 1
        super().__init__({
            "code": In(data.ArrayLayout(unsigned(weight_bits), simd)),
            "a": In(data.ArrayLayout(signed(act_bits), simd)),
            "dot": Out(signed(self.dot_bits)),
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
            terms.append(Mux(nonzero, Mux(neg, ~mag, mag), 0))
            carries.append(nonzero & neg)             # ~x + 1 == -x: the +1 rides here
        m.d.comb += self.dot.eq(tree_sum(terms) + tree_sum(carries))
        return m


class BitSerialPE(wiring.Component):
    """One lane of the bit-serial array: ``dot = +/-(sum_s plane[s] ? a[s] : 0) << shift``."""

    def __init__(self, *, simd: int, act_bits: int) -> None:
        self.simd = _check(simd, "SIMD width", 1, 256)
        self.act_bits = _check(act_bits, "Activation bit width", 2, 16)
        self.dot_bits = act_bits + max(1, (simd - 1).bit_length()) + 8
        super().__init__({
            "plane": In(unsigned(simd)),
            "a": In(data.ArrayLayout(signed(act_bits), simd)),
            "shift": In(unsigned(3)),
            "neg": In(unsigned(1)),
            "dot": Out(signed(self.dot_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        total = Signal(signed(self.act_bits + max(1, (self.simd - 1).bit_length())))
        m.d.comb += total.eq(tree_sum([Mux(self.plane[s], self.a[s], 0)
                                       for s in range(self.simd)]))
        scaled = Signal(signed(self.dot_bits - 1))
        m.d.comb += scaled.eq(total << self.shift)
        m.d.comb += self.dot.eq(Mux(self.neg, -scaled, scaled))
        return m


class MultiplyPE(wiring.Component):
    """One lane of the multiplier array: ``dot = sum_s w[s] * a[s]`` (the baseline)."""

    def __init__(self, *, simd: int, act_bits: int, value_bits: int) -> None:
        self.simd = _check(simd, "SIMD width", 1, 256)
        self.act_bits = _check(act_bits, "Activation bit width", 2, 16)
        self.value_bits = _check(value_bits, "Weight value bit width", 2, 8)
        self.dot_bits = act_bits + value_bits + max(1, (simd - 1).bit_length())
        super().__init__({
            "w": In(data.ArrayLayout(signed(value_bits), simd)),
            "a": In(data.ArrayLayout(signed(act_bits), simd)),
            "dot": Out(signed(self.dot_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.dot.eq(tree_sum([self.w[s] * self.a[s] for s in range(self.simd)]))
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
    no overflow) and the group's ``side``. Two stages: dot products, then accumulate.

    Ports ``table`` and ``fmt`` (multiply only) select codebook decoding for the layer.
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

    def _lane(self, m: Module, lane: int, payload: data.View) -> object:
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
            pe = MultiplyPE(simd=s, act_bits=cfg.act_bits, value_bits=vb)
            m.submodules[f"pe{lane}"] = pe
            m.submodules[f"int{lane}"] = idec = IntDecoder(bits=cfg.weight_bits, count=s)
            m.submodules[f"cb{lane}"] = cdec = CodebookDecoder(
                bits=cfg.weight_bits, table_bits=cfg.table_bits, count=s)
            m.d.comb += cdec.table.eq(self.table)
            for j in range(s):
                m.d.comb += [idec.code[j].eq(codes[j]), cdec.code[j].eq(codes[j]),
                             pe.w[j].eq(Mux(self.fmt, cdec.value[j], idec.value[j]))]
        m.d.comb += pe.a.eq(payload.a)
        return pe.dot

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        # stage A: dot products
        valid_a = Signal()
        glast_a = Signal()
        side_a = Signal(self.side_shape)
        dots = [Signal(signed(cfg.acc_bits), name=f"dot{lane}") for lane in range(cfg.lanes)]
        accs = [Signal(signed(cfg.acc_bits), name=f"acc{lane}") for lane in range(cfg.lanes)]
        lane_dots = [self._lane(m, lane, self.i.payload) for lane in range(cfg.lanes)]
        with m.If(advance):
            m.d.sync += [valid_a.eq(self.i.valid), glast_a.eq(self.i.payload.glast),
                         side_a.eq(self.i.payload.side)]
            m.d.sync += [d.eq(ld) for d, ld in zip(dots, lane_dots, strict=True)]
            # stage B: accumulate; hand the group over at glast
            m.d.sync += self.o.valid.eq(valid_a & glast_a)
            with m.If(valid_a):
                with m.If(glast_a):
                    m.d.sync += [a.eq(0) for a in accs]
                    m.d.sync += [self.o.payload.acc[lane].eq(accs[lane] + dots[lane])
                                 for lane in range(cfg.lanes)]
                    m.d.sync += self.o.payload.side.eq(side_a)
                with m.Else():
                    m.d.sync += [a.eq(a + d) for a, d in zip(accs, dots, strict=True)]
        return m
