"""cocotb testbench of the requant block (:class:`hwq.rtl.requant.Requant`).

One transaction is one beat: ``lanes`` accumulators with their bias, multiplier ``M`` and
shift ``S`` in, ``lanes`` activations out, ``y = clamp(((acc + bias) * M + 2**(S-1)) >> S,
lo, hi)`` per lane, as :func:`hwq.golden.requant.requantize` defines it.

* :class:`RequantStimulus`: constrained-random beats. ``acc`` over the accumulator range
  (with its extremes, 0 and +/-1), ``bias`` over int32 (with its extremes), ``M`` over
  1..2**24-1 (with 1, the maximum and powers of two), ``S`` mostly chosen so that the
  result lands near the clamp range (otherwise uniform over 1..62), a share of exact
  rounding ties (``(acc + bias) * M`` an odd multiple of ``2**(S-1)``); ``|acc + bias| * M``
  stays below 2**63 (the golden model's and the compiler's bound).
* :class:`RequantModel`: the expected activations, from :func:`~hwq.golden.requant.requantize`.
* :class:`RequantTestbench`: source -> DUT -> sink (monitor) -> in-order scoreboard.

Parameters come from :data:`hwq.sim.tb_common.PARAMS_ENV` (JSON)::

    {"config": CoreConfig.to_dict(), "beats": 60, "side_bits": 8}

The clamp bounds ``lo``/``hi`` are ports, constant per layer: the test is parametrized over
a full signed range, ReLU and a narrow asymmetric range.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import cocotb
import numpy as np
from amaranth.hdl import unsigned

from hwq.config import CoreConfig
from hwq.golden._checks import signed_range
from hwq.golden.requant import M_MAX, S_MAX, S_MIN, requantize
from hwq.rtl.requant import Requant

from .tb_common import (
    TRAFFIC,
    Scoreboard,
    StreamSink,
    StreamSource,
    break_golden,
    load_params,
    record_counts,
    reset_dut,
    seeded_rng,
    start_clock,
    to_bits,
    traffic_generators,
    wait_for_transactions,
)

__all__ = ["CLAMPS", "RequantModel", "RequantStimulus", "RequantTestbench", "make_component",
           "requant", "requant_params"]

#: Clamp bounds the test runs with, as (lo, hi) relative to the activation range:
#: "full" is the whole signed range, "relu" 0..max, "narrow" an asymmetric inner range.
CLAMPS = ("full", "relu", "narrow")
#: Transaction whose expected value is perturbed when the golden is deliberately broken.
BREAK_INDEX = 2
_INT64_MAX = (1 << 63) - 1


def requant_params(config: CoreConfig, *, beats: int = 60, side_bits: int = 8
                   ) -> dict[str, Any]:
    """The testbench parameters (JSON-serializable) for ``config``.

    Raises
    ------
    ValueError
        If a count is not positive.
    """
    for name, value in (("Beats", beats), ("Side bits", side_bits)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return {"config": config.to_dict(), "beats": beats, "side_bits": side_bits}


def make_component(params: Mapping[str, Any]) -> Requant:
    """The :class:`Requant` block the parameters describe (the DUT, and its payload layouts)."""
    config = CoreConfig.from_dict(dict(params["config"]))
    return Requant(config=config, side=unsigned(int(params["side_bits"])))


def clamp_bounds(name: str, act_bits: int) -> tuple[int, int]:
    """``(lo, hi)`` of clamp setting ``name`` (one of :data:`CLAMPS`) for ``act_bits``."""
    lo, hi = signed_range(act_bits)
    if name == "full":
        return lo, hi
    if name == "relu":
        return 0, hi
    if name == "narrow":
        return lo * 3 // 4, hi * 2 // 3
    raise ValueError(f"Clamp must be one of {', '.join(CLAMPS)}, not {name!r}")


class RequantStimulus:
    """Constrained-random requant beats (see the module docstring).

    Parameters
    ----------
    config : CoreConfig
    side_bits : int
    """

    def __init__(self, config: CoreConfig, *, side_bits: int) -> None:
        self.config = config
        self.side_bits = side_bits
        self.acc_lo, self.acc_hi = signed_range(config.acc_bits)

    def _lane(self, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """One lane's ``(acc, bias, M, S)``."""
        cfg = self.config
        if rng.random() < 0.15:
            return self._tie(rng)
        pick = rng.random()
        if pick < 0.15:
            acc = int(rng.choice([self.acc_lo, self.acc_hi, 0, -1, 1]))
        elif pick < 0.6:  # small magnitudes, as real layers mostly have
            acc = int(rng.integers(max(self.acc_lo, -(1 << 16)), min(self.acc_hi, 1 << 16)))
        else:
            acc = int(rng.integers(self.acc_lo, self.acc_hi + 1))
        pick = rng.random()
        if pick < 0.1:
            bias = int(rng.choice([-(1 << 31), (1 << 31) - 1, 0]))
        elif pick < 0.7:
            bias = int(rng.integers(-(1 << 12), 1 << 12))
        else:
            bias = int(rng.integers(-(1 << 31), 1 << 31))
        pick = rng.random()
        if pick < 0.1:
            m = int(rng.choice([1, M_MAX]))
        elif pick < 0.2:
            m = 1 << int(rng.integers(0, 24))
        else:
            m = int(rng.integers(1, M_MAX + 1))
        t = acc + bias
        if abs(t) * m > _INT64_MAX:  # constraint: the product fits 64 bits
            m = max(1, _INT64_MAX // abs(t))
        if rng.random() < 0.7:  # land near the output range: S ~ bits of |t*M| - act_bits
            size = (abs(t) * m).bit_length()
            s = size - int(rng.integers(-2, cfg.act_bits + 2))
        else:
            s = int(rng.integers(S_MIN, S_MAX + 1))
        return acc, bias, m, min(max(s, S_MIN), S_MAX)

    def _tie(self, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """A lane whose ``(acc + bias) * M`` is ``q * 2**S + 2**(S-1)``: rounds half up."""
        acc_bits = self.config.acc_bits
        d = int(rng.integers(1, max(2, min(21, acc_bits - 10))))  # S - j
        j = int(rng.integers(0, 24))  # M = 2**j
        q = int(rng.integers(-(1 << 8), 1 << 8))
        t = (q << d) + (1 << (d - 1))  # t * 2**j == q * 2**S + 2**(S-1) with S = d + j
        spread = 1 << min(12, acc_bits - 3)  # keeps acc = t - bias in the accumulator range
        bias = int(rng.integers(-spread, spread))
        return t - bias, bias, 1 << j, d + j

    def beat(self, rng: np.random.Generator, index: int) -> dict[str, Any]:
        """Beat number ``index`` as a payload dict of the block's input layout."""
        lanes = [self._lane(rng) for _ in range(self.config.lanes)]
        acc, bias, m, s = (list(column) for column in zip(*lanes, strict=True))
        return {"acc": acc, "bias": bias, "m": m, "s": s,
                "side": index % (1 << self.side_bits)}


class RequantModel:
    """Expected output of each beat, from :func:`hwq.golden.requant.requantize`.

    Parameters
    ----------
    lo, hi : int
        Clamp bounds.
    break_index : int, optional
        Add 1 to lane 0 of this transaction's expected value (a deliberately broken golden).
    """

    def __init__(self, lo: int, hi: int, *, break_index: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        self.break_index = break_index
        self.predicted = 0

    def predict(self, beat: Mapping[str, Any]) -> dict[str, Any]:
        """The expected output transaction: ``{"y": [lanes ints], "side": int}``."""
        y = requantize(np.asarray([beat["acc"]], dtype=np.int64), beat["bias"], beat["m"],
                       beat["s"], lo=self.lo, hi=self.hi)[0]
        out = [int(v) for v in y]
        if self.predicted == self.break_index:
            out[0] += 1
        self.predicted += 1
        return {"y": out, "side": int(beat["side"])}


class RequantTestbench:
    """Source -> requant block -> sink (monitor); model fed by the source; in-order scoreboard.

    Parameters
    ----------
    dut : cocotb handle of the block's top module
    params : mapping
        From :func:`requant_params`.
    clamp : str
        One of :data:`CLAMPS`.
    traffic : str
        A :data:`hwq.sim.tb_common.TRAFFIC` profile.
    rng : numpy.random.Generator
    """

    def __init__(self, dut: Any, params: Mapping[str, Any], clamp: str, traffic: str,
                 rng: np.random.Generator) -> None:
        self.dut = dut
        component = make_component(params)
        self.config = cfg = component.config
        self.lo, self.hi = clamp_bounds(clamp, cfg.act_bits)
        stall, backpressure = traffic_generators(traffic, rng)
        self.source = StreamSource(dut, "i", component.i.payload.shape(), stall)
        self.sink = StreamSink(dut, "o", component.o.payload.shape(), backpressure)
        self.stimulus = RequantStimulus(cfg, side_bits=int(params["side_bits"]))
        self.model = RequantModel(self.lo, self.hi,
                                  break_index=BREAK_INDEX if break_golden() else None)
        self.scoreboard = Scoreboard(f"requant, clamp {clamp} [{self.lo}, {self.hi}], {traffic}",
                                     dut._log)
        self.sent = 0
        self._callbacks: list[Callable[[Mapping[str, Any]], None]] = [
            lambda beat: self.scoreboard.expect(self.model.predict(beat))]
        self.sink.add_callback(lambda beat: self.scoreboard.observe(
            {"y": [int(v) for v in beat.y], "side": int(beat.side)}))
        dut.lo.value = to_bits(component.lo.shape(), self.lo)
        dut.hi.value = to_bits(component.hi.shape(), self.hi)

    def send(self, beat: Mapping[str, Any]) -> None:
        """Queue ``beat`` on the source and feed it to the model."""
        self.source.send_nowait(beat)
        self.sent += 1
        for callback in self._callbacks:
            callback(beat)

    async def start(self) -> None:
        """Start the clock, reset the block, start the source and the sink."""
        start_clock(self.dut)
        await reset_dut(self.dut)
        self.source.start()
        self.sink.start()


@cocotb.test()
@cocotb.parametrize(clamp=list(CLAMPS), traffic=list(TRAFFIC))
async def requant(dut: Any, clamp: str, traffic: str) -> None:
    """Random beats under a clamp setting and a traffic profile; every activation exact."""
    params = load_params()
    rng = seeded_rng("requant", clamp, traffic)
    tb = RequantTestbench(dut, params, clamp, traffic, rng)
    await tb.start()
    for index in range(int(params["beats"])):
        tb.send(tb.stimulus.beat(rng, index))
    await wait_for_transactions(dut, tb.scoreboard, tb.sent, max_cycles=20 * tb.sent + 100)
    record_counts(f"requant/clamp={clamp}/traffic={traffic}", sent=tb.sent,
                  taken=tb.source.count, observed=tb.scoreboard.compared,
                  matched=tb.scoreboard.matched, stall_cycles=tb.source.stall_cycles)
    assert tb.source.count == tb.sent, f"the block took {tb.source.count} of {tb.sent} beats"
    tb.scoreboard.check(tb.sent)
    if traffic == "smooth":  # output always ready: one beat per cycle
        assert tb.source.stall_cycles == 0, (
            f"the block stalled its input for {tb.source.stall_cycles} cycles with its output "
            "always ready")
