"""Requantization: ``lanes`` accumulators -> activations (bias, M, S, clamp/ReLU).

Per lane, exactly :func:`hwq.golden.requantize`::

    y = clamp(((acc + bias) * M + 2**(S - 1)) >> S, lo, hi)

with ``>>`` arithmetic, pipelined (:data:`REQUANT_STAGES` registers) so that no stage holds
more than one carry chain or one DSP-sized multiplier. ``lo``/``hi`` are ports (constant per
layer).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.golden.requant import M_BITS
from hwq.hardware import REQUANT_STAGES
from hwq.hardware import REQUANT_SUM_LEVELS as _SUM_LEVELS
from hwq.rtl.dsp import registered_product
from hwq.rtl.pe import register

__all__ = ["REQUANT_STAGES", "Requant", "requant_input_layout", "requant_output_layout"]


def requant_input_layout(config: CoreConfig, side: object) -> data.StructLayout:
    p = config.lanes
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(config.acc_bits), p),
        "bias": data.ArrayLayout(signed(32), p),
        "m": data.ArrayLayout(unsigned(M_BITS), p),
        "s": data.ArrayLayout(unsigned(6), p),
        "side": side,
    })


def requant_output_layout(config: CoreConfig, side: object) -> data.StructLayout:
    return data.StructLayout({
        "y": data.ArrayLayout(signed(config.act_bits), config.lanes),
        "side": side,
    })


class Requant(wiring.Component):
    """Stream component: one beat of ``lanes`` accumulators and their parameters in, one
    beat of ``lanes`` activations out, :data:`REQUANT_STAGES` cycles later (back-pressure
    stalls every stage).

    Pipeline (one register after each step, so no stage holds more than one carry chain,
    one multiplier or three mux levels):

    1. ``t = acc + bias``;
    2. the partial products of ``t`` (17-bit chunks, the top one signed) and ``M`` (17 + 7
       bits): each fits one 18x18 DSP multiplier (:func:`hwq.rtl.dsp.registered_product`:
       registered at its inputs and its output, ``config.dsp`` builds it), then once more;
    3. the partial products summed, one adder level per stage (3 stages: up to 6 partial
       products, accumulators up to 48 bits);
    4. ``q = (t * M) >> (S - 1)`` in two steps (by whole bytes, then by 0..7 bits);
    5. ``r = (q + 1) >> 1``, which equals ``(t * M + 2**(S - 1)) >> S`` exactly (``S >= 1``),
       computed on ``q`` saturated to ``act_bits + 3`` bits (a larger ``|q|`` gives an ``r``
       outside every ``[lo, hi]`` either way, so the clamp is unchanged and narrow);
    6. clamp to ``[lo, hi]``.
    """

    def __init__(self, *, config: CoreConfig, side: object = unsigned(1)) -> None:
        if not isinstance(config, CoreConfig):
            raise TypeError(f"Config must be a CoreConfig, not {config!r}")
        self.config = config
        self.side_shape = side
        super().__init__({
            "i": In(stream.Signature(requant_input_layout(config, side))),
            "o": Out(stream.Signature(requant_output_layout(config, side))),
            "lo": In(signed(config.act_bits)),
            "hi": In(signed(config.act_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        t_bits = max(cfg.acc_bits, 32) + 1
        # q saturates to sat_bits: (q + 1) >> 1 then reaches +/-2**(act_bits + 1), outside
        # every [lo, hi]
        sat_bits = cfg.act_bits + 3
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        def reg(value, name):
            return register(m, value, advance, name)

        valid, side = self.i.valid, self.i.payload.side
        pay = self.i.payload
        n_t = -(-t_bits // _CHUNK)
        # t * M fits prod_bits signed bits: the partial products and their sums are kept
        # modulo 2**prod_bits (exact for the total), not in the widths Amaranth's shifts and
        # adds grow them to (88 bits at acc_bits 32), which made every one a multi-word
        # value in Verilator's C++ and each lane's shifts and adds a library call

        def wrap(value):
            return value[:prod_bits].as_signed()

        prod_bits = t_bits + M_BITS
        for lane in range(cfg.lanes):
            # 1. t = acc + bias
            t = reg(pay.acc[lane] + pay.bias[lane], f"t{lane}")
            mm, s = reg(pay.m[lane], f"m{lane}"), reg(pay.s[lane], f"s{lane}")
            # 2. partial products, one DSP-sized multiplier each, registered at its inputs
            # and output (an ECP5 DSP block sits in its own row: without a register at each
            # end the routing to and from it adds ~6 ns), then once more
            t_parts = [t[i * _CHUNK:(i + 1) * _CHUNK] for i in range(n_t - 1)]
            t_parts.append(t[(n_t - 1) * _CHUNK:].as_signed())
            m_parts = [mm[:_CHUNK], mm[_CHUNK:]]
            terms = []
            for i, tp in enumerate(t_parts):
                for j, mp in enumerate(m_parts):
                    prod = registered_product(m, tp, mp, advance, name=f"pp{lane}_{i}_{j}",
                                              dsp=cfg.dsp)
                    prod = reg(prod, f"pp{lane}_{i}_{j}_q")
                    terms.append(wrap(prod << (_CHUNK * (i + j))))
            s = reg(reg(reg(s, f"s{lane}_m"), f"s{lane}_pp"), f"s{lane}_pq")
            # 3. their sum, one adder level per stage (a plain register when done early)
            for level in range(_SUM_LEVELS):
                pairs = [wrap(terms[k] + terms[k + 1]) for k in range(0, len(terms) - 1, 2)]
                terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
                terms = [reg(x, f"sum{lane}_{level}_{k}") for k, x in enumerate(terms)]
                s = reg(s, f"s{lane}_sum{level}")
            assert len(terms) == 1
            prod = terms[0]
            # 4. q = prod >> (S - 1): by whole bytes, then by 0..7 bits
            s1 = s - 1
            q8 = reg(prod >> Cat(Const(0, 3), s1[3:6]), f"q8_{lane}")
            s_lo = reg(s1[:3], f"s_lo{lane}")
            q = reg(q8 >> s_lo, f"q{lane}")
            # 5. round: (q + 1) >> 1, on the low bits of q saturated to ``sat_bits``: a q
            # beyond them rounds beyond [lo, hi] either way, and the clamp is then narrow
            low = q[:sat_bits].as_signed()
            top = q[sat_bits - 1:]
            fits = top.all() | ~top.any()
            limit = 1 << (sat_bits - 2)
            r = reg(Mux(fits, (low + 1) >> 1, Mux(q[-1], -limit, limit)), f"r{lane}")
            # 6. clamp
            y = Mux(r < self.lo, self.lo, Mux(r > self.hi, self.hi, r))
            with m.If(advance):
                m.d.sync += self.o.payload.y[lane].eq(y)
        for i in range(REQUANT_STAGES - 1):
            valid, side = reg(valid, f"valid_d{i}"), reg(side, f"side_d{i}")
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(valid), self.o.payload.side.eq(side)]
        return m


#: Chunk width of the partial products (an ECP5 MULT18X18D takes 18x18 signed operands).
_CHUNK = 17
