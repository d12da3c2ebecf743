"""Requantization: ``lanes`` accumulators -> activations (bias, M, S, clamp/ReLU).

Per lane, exactly :func:`hwq.golden.requantize`::

    y = clamp(((acc + bias) * M + 2**(S - 1)) >> S, lo, hi)

with ``>>`` arithmetic. Two pipeline stages: the product ``(acc + bias) * M`` (exact, no
rounding), then round, shift and clamp. ``lo``/``hi`` are ports (constant per layer).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.golden.requant import M_BITS, S_MAX

__all__ = ["Requant", "requant_input_layout", "requant_output_layout"]


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
    beat of ``lanes`` activations out, two cycles later (back-pressure stalls both stages).
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
        p_bits = t_bits + M_BITS + 1
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        valid1 = Signal()
        side1 = Signal(self.side_shape)
        prods = [Signal(signed(p_bits), name=f"prod{lane}") for lane in range(cfg.lanes)]
        shifts = [Signal(6, name=f"s{lane}") for lane in range(cfg.lanes)]
        ys = []
        for lane in range(cfg.lanes):
            s = shifts[lane]
            # wide enough for the rounding constant 2**(S-1) at S = S_MAX whatever acc_bits
            rounded = Signal(signed(max(p_bits, S_MAX) + 2), name=f"rounded{lane}")
            shifted = Signal(signed(max(p_bits, S_MAX) + 2), name=f"shifted{lane}")
            m.d.comb += [rounded.eq(prods[lane] + ((Const(1, 1) << s) >> 1)),
                         shifted.eq(rounded >> s)]
            ys.append(Mux(shifted < self.lo, self.lo, Mux(shifted > self.hi, self.hi, shifted)))
        with m.If(advance):
            m.d.sync += [valid1.eq(self.i.valid), side1.eq(self.i.payload.side),
                         self.o.valid.eq(valid1), self.o.payload.side.eq(side1)]
            for lane in range(cfg.lanes):
                t = self.i.payload.acc[lane] + self.i.payload.bias[lane]
                m.d.sync += [prods[lane].eq(t * self.i.payload.m[lane]),
                             shifts[lane].eq(self.i.payload.s[lane]),
                             self.o.payload.y[lane].eq(ys[lane])]
        return m
