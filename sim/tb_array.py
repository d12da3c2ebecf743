"""cocotb testbench of the MAC array (:class:`hwq.rtl.pe.MacArray`) and its weight decoders.

One transaction is a *group*: a dot product of ``K = tiles * simd`` activations with
``lanes`` rows of weight codes, streamed in as input beats (one per tile; on the bit-serial
array one per tile and weight bit-plane, LSB plane first, the MSB plane negative) and
answered by one output beat with the ``lanes`` accumulators and the group's ``side`` tag.

* :class:`GroupStimulus`: constrained-random groups (1..``max_tiles`` tiles, a quarter of
  them one tile long; a share of all-extreme activations and weights; codes over the whole
  code space, POT "negative zero" included), never able to overflow the accumulator.
* :class:`MacArrayDriver`: group -> input beats, through the RTL's own payload layout; feeds
  every group it sends to its callbacks (the model).
* :class:`MacArrayModel`: the expected accumulators from :mod:`hwq.golden` --
  ``shift_add_linear`` on POT codes, ``bitserial_linear`` on INT (or codebook values
  expanded to ``table_bits`` planes), ``linear`` on INT/CODEBOOK-decoded values.
* :class:`MacArrayTestbench`: driver -> DUT -> sink (monitor) -> in-order scoreboard.

Parameters come from :data:`hwq.sim.tb_common.PARAMS_ENV` (JSON)::

    {"config": CoreConfig.to_dict(), "format": "pot" | "int" | "codebook",
     "groups": 40, "max_tiles": 6, "side_bits": 8}

Formats per PE: ``shift_add`` takes ``pot``; ``bit_serial`` ``int`` or ``codebook`` (expanded
to INT bit-planes of ``table_bits``, as the compiler does); ``multiply`` ``int`` or
``codebook`` (decoded by the array through its ``table`` port, ``fmt`` = 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cocotb
import numpy as np
from amaranth.hdl import unsigned

from hwq.config import CoreConfig
from hwq.golden._checks import signed_range
from hwq.golden.bitserial import bitplanes, bitserial_linear, shift_add_linear
from hwq.golden.formats import CodebookFormat, IntFormat, PotFormat, WeightFormat
from hwq.golden.ops import check_accumulator, linear
from hwq.hardware import PES
from hwq.rtl.pe import MacArray

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

__all__ = ["FORMATS", "Group", "GroupStimulus", "MacArrayDriver", "MacArrayModel",
           "MacArrayTestbench", "array_params", "make_component", "mac_array"]

#: Weight formats each PE type is tested with: every one it takes (:data:`hwq.hardware.PES`).
FORMATS: dict[str, tuple[str, ...]] = {pe: kind.formats for pe, kind in PES.items()}
#: Transaction whose expected value is perturbed when the golden is deliberately broken.
BREAK_INDEX = 2


def array_params(config: CoreConfig, fmt: str, *, groups: int = 40, max_tiles: int = 6,
                 side_bits: int = 8) -> dict[str, Any]:
    """The testbench parameters (JSON-serializable) for ``config`` and weight format ``fmt``.

    Raises
    ------
    ValueError
        If the PE type does not take ``fmt``, or a count is not positive.
    """
    if fmt not in FORMATS[config.pe]:
        raise ValueError(f"Weight format for the {config.pe} PE must be one of "
                         f"{', '.join(FORMATS[config.pe])}, not {fmt!r}")
    for name, value in (("Groups", groups), ("Max tiles", max_tiles), ("Side bits", side_bits)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return {"config": config.to_dict(), "format": fmt, "groups": groups,
            "max_tiles": max_tiles, "side_bits": side_bits}


def make_component(params: Mapping[str, Any]) -> MacArray:
    """The :class:`MacArray` the parameters describe (the DUT, and its payload layouts)."""
    config = CoreConfig.from_dict(dict(params["config"]))
    return MacArray(config=config, side=unsigned(int(params["side_bits"])))


def random_codebook(rng: np.random.Generator, bits: int, table_bits: int) -> CodebookFormat:
    """A full ``2**bits``-entry table of ``table_bits``-bit entries with a zero and both
    extremes of the entry range."""
    lo, hi = signed_range(table_bits)
    table = rng.integers(lo, hi + 1, size=1 << bits)
    slots = rng.permutation(table.size)
    table[slots[0]] = 0
    if table.size >= 3:
        table[slots[1]], table[slots[2]] = lo, hi
    return CodebookFormat(bits, table=tuple(int(v) for v in table), table_bits=table_bits)


def weight_format(config: CoreConfig, fmt: str, rng: np.random.Generator) -> WeightFormat:
    """The :mod:`hwq.golden.formats` format of the weight codes (a random table for codebook)."""
    if fmt == "pot":
        return PotFormat(config.weight_bits)
    if fmt == "int":
        return IntFormat(config.weight_bits)
    return random_codebook(rng, config.weight_bits, config.table_bits)


@dataclass(frozen=True)
class Group:
    """One transaction: ``acc[c] = sum_k x[k] * value(codes[c, k])``.

    Attributes
    ----------
    x : int64 array (K,)
        Signed activations, ``K`` a multiple of ``simd``.
    codes : int64 array (lanes, K)
        Weight codes in the weight format.
    side : int
        Tag carried through the array.
    """

    x: np.ndarray
    codes: np.ndarray
    side: int


class GroupStimulus:
    """Constrained-random groups for one array and weight format.

    Parameters
    ----------
    config : CoreConfig
    fmt : WeightFormat
    max_tiles : int
        Longest group, in tiles of ``simd`` inputs.
    side_bits : int
    """

    def __init__(self, config: CoreConfig, fmt: WeightFormat, *, max_tiles: int,
                 side_bits: int) -> None:
        self.config = config
        self.fmt = fmt
        self.max_tiles = max_tiles
        self.side_bits = side_bits

    def _extreme_codes(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        fmt = self.fmt
        if isinstance(fmt, PotFormat):  # largest magnitude, random sign
            sign = rng.integers(0, 2, size=shape) << (fmt.bits - 1)
            return sign | ((1 << (fmt.bits - 1)) - 1)
        if isinstance(fmt, IntFormat):  # the most negative value, or the largest
            return rng.choice([1 << (fmt.bits - 1), (1 << (fmt.bits - 1)) - 1], size=shape)
        table = fmt.table_array
        return rng.choice([int(np.argmin(table)), int(np.argmax(table))], size=shape)

    def group(self, rng: np.random.Generator, index: int) -> Group:
        """Group number ``index`` (its ``side`` is ``index`` modulo ``2**side_bits``)."""
        cfg = self.config
        tiles = 1 if rng.random() < 0.25 else int(rng.integers(1, self.max_tiles + 1))
        k = tiles * cfg.simd
        a_lo, a_hi = signed_range(cfg.act_bits)
        corner = rng.random()
        if corner < 0.1:
            x = np.full(k, a_lo, dtype=np.int64)
        elif corner < 0.2:
            x = np.full(k, a_hi, dtype=np.int64)
        else:
            x = rng.integers(a_lo, a_hi + 1, size=k)
            edge = rng.random(k) < 0.1
            x[edge] = rng.choice([a_lo, a_hi, 0, -1, 1], size=int(edge.sum()))
        shape = (cfg.lanes, k)
        if rng.random() < 0.15:
            codes = self._extreme_codes(rng, shape)
        else:
            codes = rng.integers(0, 1 << self.fmt.bits, size=shape)
        side = index % (1 << self.side_bits)
        return Group(x=x.astype(np.int64), codes=np.asarray(codes, dtype=np.int64), side=side)


def _plane_bits(config: CoreConfig, fmt: WeightFormat) -> int:
    """Bit-planes per weight on the bit-serial array: INT bits, or codebook entry bits."""
    return fmt.table_bits if isinstance(fmt, CodebookFormat) else fmt.bits


class MacArrayDriver:
    """Send groups to the array as input beats; feed each group to the callbacks (the model).

    Parameters
    ----------
    source : StreamSource
        On the array's ``i`` stream.
    config : CoreConfig
    fmt : WeightFormat
    """

    def __init__(self, source: StreamSource, config: CoreConfig, fmt: WeightFormat) -> None:
        self.source = source
        self.config = config
        self.fmt = fmt
        self.groups_sent = 0
        self.beats_sent = 0
        self._callbacks: list[Callable[[Group], None]] = []

    def add_callback(self, callback: Callable[[Group], None]) -> None:
        """Call ``callback(group)`` for every group sent."""
        self._callbacks.append(callback)

    def beats(self, group: Group) -> list[dict[str, Any]]:
        """The input beats of ``group`` as payload dicts of the array's input layout."""
        cfg = self.config
        s = cfg.simd
        tiles = group.x.size // s
        if cfg.pe == "bit_serial":
            bits = _plane_bits(cfg, self.fmt)
            planes = bitplanes(self.fmt.decode(group.codes), bits)  # (bits, lanes, K)
            steps = [(t, i) for t in range(tiles) for i in range(bits)]
        else:
            bits, planes = 0, None
            steps = [(t, 0) for t in range(tiles)]
        out = []
        for n, (t, i) in enumerate(steps):
            cols = slice(t * s, (t + 1) * s)
            w = group.codes[:, cols] if planes is None else planes[i][:, cols]
            out.append({
                "w": w.reshape(-1).tolist(),  # lane major: w[lane * simd + j]
                "a": group.x[cols].tolist(),
                "shift": i,
                "neg": int(planes is not None and i == bits - 1),
                "glast": int(n == len(steps) - 1),
                "side": group.side,
            })
        return out

    def send(self, group: Group) -> None:
        """Queue the beats of ``group`` on the source."""
        beats = self.beats(group)
        for beat in beats:
            self.source.send_nowait(beat)
        self.groups_sent += 1
        self.beats_sent += len(beats)
        for callback in self._callbacks:
            callback(group)


class MacArrayModel:
    """Expected output of each group, from :mod:`hwq.golden`.

    Refuses (``ValueError``) a group whose weights could overflow ``acc_bits`` for some
    activations: the layout compiler never gives the array such a layer.

    Parameters
    ----------
    config : CoreConfig
    fmt : WeightFormat
    break_index : int, optional
        Add 1 to lane 0 of this transaction's expected value (a deliberately broken golden).
    """

    def __init__(self, config: CoreConfig, fmt: WeightFormat, *,
                 break_index: int | None = None) -> None:
        self.config = config
        self.fmt = fmt
        self.break_index = break_index
        self.predicted = 0

    def accumulators(self, group: Group) -> np.ndarray:
        """``lanes`` accumulators of ``group``, int64, computed the way the PE type does."""
        cfg = self.config
        values = self.fmt.decode(group.codes)
        check_accumulator(values, cfg.act_bits, cfg.acc_bits)
        x = group.x[None, :]
        if cfg.pe == "shift_add":
            return shift_add_linear(x, group.codes, self.fmt.bits)[0]
        if cfg.pe == "bit_serial":
            return bitserial_linear(x, values, _plane_bits(cfg, self.fmt))[0]
        return linear(x, values, act_bits=cfg.act_bits)[0]

    def predict(self, group: Group) -> dict[str, Any]:
        """The expected output transaction: ``{"acc": [lanes ints], "side": int}``."""
        acc = [int(v) for v in self.accumulators(group)]
        if self.predicted == self.break_index:
            acc[0] += 1
        self.predicted += 1
        return {"acc": acc, "side": group.side}


class MacArrayTestbench:
    """Driver -> MAC array -> sink (monitor); model fed by the driver; in-order scoreboard.

    Parameters
    ----------
    dut : cocotb handle of the array's top module
    params : mapping
        From :func:`array_params`.
    traffic : str
        A :data:`hwq.sim.tb_common.TRAFFIC` profile.
    rng : numpy.random.Generator
    """

    def __init__(self, dut: Any, params: Mapping[str, Any], traffic: str,
                 rng: np.random.Generator) -> None:
        self.dut = dut
        component = make_component(params)
        self.config = cfg = component.config
        self.fmt = weight_format(cfg, params["format"], rng)
        stall, backpressure = traffic_generators(traffic, rng)
        self.source = StreamSource(dut, "i", component.i.payload.shape(), stall)
        self.sink = StreamSink(dut, "o", component.o.payload.shape(), backpressure)
        self.stimulus = GroupStimulus(cfg, self.fmt, max_tiles=int(params["max_tiles"]),
                                      side_bits=int(params["side_bits"]))
        self.driver = MacArrayDriver(self.source, cfg, self.fmt)
        self.model = MacArrayModel(cfg, self.fmt,
                                   break_index=BREAK_INDEX if break_golden() else None)
        self.scoreboard = Scoreboard(f"{cfg.pe} array, {params['format']}, {traffic}",
                                     dut._log)
        self.driver.add_callback(lambda group: self.scoreboard.expect(self.model.predict(group)))
        self.sink.add_callback(lambda beat: self.scoreboard.observe(
            {"acc": [int(v) for v in beat.acc], "side": int(beat.side)}))
        if cfg.pe == "multiply":
            codebook = isinstance(self.fmt, CodebookFormat)
            table = list(self.fmt.table) if codebook else [0] * (1 << cfg.weight_bits)
            dut.fmt.value = int(codebook)
            _port(dut, "table").value = to_bits(component.table.shape(), table)

    async def start(self) -> None:
        """Start the clock, reset the array, start the source and the sink."""
        start_clock(self.dut)
        await reset_dut(self.dut)
        self.source.start()
        self.sink.start()


def _port(dut: Any, name: str) -> Any:
    """Top port ``name``; Verilog keywords (``table``) are escaped identifiers in Yosys output."""
    try:
        return getattr(dut, name)
    except AttributeError:
        return dut[f"\\{name} "]


@cocotb.test()
@cocotb.parametrize(traffic=list(TRAFFIC))
async def mac_array(dut: Any, traffic: str) -> None:
    """Random groups under a traffic profile; every accumulator exact, every group checked."""
    params = load_params()
    rng = seeded_rng("mac_array", traffic)
    tb = MacArrayTestbench(dut, params, traffic, rng)
    await tb.start()
    groups = [tb.stimulus.group(rng, index) for index in range(int(params["groups"]))]
    for group in groups:
        tb.driver.send(group)
    await wait_for_transactions(dut, tb.scoreboard, len(groups),
                                max_cycles=20 * tb.driver.beats_sent + 100)
    record_counts(f"mac_array/traffic={traffic}", sent=len(groups),
                  beats=tb.driver.beats_sent, taken=tb.source.count,
                  observed=tb.scoreboard.compared, matched=tb.scoreboard.matched,
                  stall_cycles=tb.source.stall_cycles)
    assert tb.source.count == tb.driver.beats_sent, (
        f"the array took {tb.source.count} of {tb.driver.beats_sent} input beats")
    tb.scoreboard.check(len(groups))
    if traffic == "smooth":  # output always ready: one input beat per cycle
        assert tb.source.stall_cycles == 0, (
            f"the array stalled its input for {tb.source.stall_cycles} cycles with its "
            "output always ready")
