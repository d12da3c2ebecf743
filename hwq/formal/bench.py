"""The frame every proof harness is built in: a clock, free inputs, delay lines.

A :class:`Bench` is an Amaranth module with its own ``sync`` domain (reset held low, so the
registers start from their init values: the reset state) and named free inputs
(``AnySeq``: any value each cycle; ``AnyConst``: any value, the same every cycle). The
names are what a counterexample trace reports and what :mod:`hwq.formal.replay` drives.
"""

from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import ClockDomain, Module, ResetSignal, Signal, Value

__all__ = ["Bench"]


class Bench:
    """A harness under construction: ``m`` (the module), ``inputs`` (name -> Signal)."""

    def __init__(self) -> None:
        self.m = Module()
        self.m.domains.sync = self.domain = ClockDomain("sync")
        self.m.d.comb += ResetSignal("sync").eq(0)
        self.inputs: dict[str, Signal] = {}

    def seq(self, name: str, shape: object) -> Signal:
        """A free input that takes any value each cycle."""
        return self._free(name, shape, AnySeq)

    def const(self, name: str, shape: object) -> Signal:
        """A free input that takes any value, the same in every cycle."""
        return self._free(name, shape, AnyConst)

    def _free(self, name: str, shape: object, kind: type) -> Signal:
        if name in self.inputs:
            raise ValueError(f"Free input name must be new, not {name!r}")
        sig = Signal(shape, name=name)
        sub = Module()
        sub.d.comb += sig.eq(kind(sig.shape()))
        self.m.submodules += sub
        self.inputs[name] = sig
        return sig

    def delay(self, value: object, cycles: int, name: str, en: object = 1) -> Value:
        """``value`` ``cycles`` enabled cycles ago (registers enabled by ``en``, init 0)."""
        value = Value.cast(value)
        # a module of its own: the registers load whatever `If` the caller is inside
        sub = Module()
        for i in range(cycles):
            reg = Signal(value.shape(), name=f"{name}_d{i}")
            with sub.If(en):
                sub.d.sync += reg.eq(value)
            value = reg
        self.m.submodules += sub
        return value

    def reg(self, shape: object, name: str, init: int = 0) -> Signal:
        """A harness register (init ``init``)."""
        return Signal(shape, name=name, init=init)

    def ports(self) -> list[Signal]:
        """Ports of the converted design: the clock only."""
        return [self.domain.clk]
