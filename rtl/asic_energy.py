"""Power and energy per inference of a core with toggle rates measured on real inputs.

:func:`energy_report` joins three cached steps:

1. the ASIC report of the core (:func:`hwq.rtl.asic.asic_report`), keeping its mapped netlist,
   whose flip-flops are named after the register bit they hold (``dut.mac.acc0[3]_reg``);
2. the toggle counts of every register bit of the core over a run of N inputs on the
   Verilated core (:func:`hwq.sim.activity.measure_toggles`): rate = toggles / cycles;
3. OpenSTA's ``report_power`` with those rates (:func:`power_with_rates`).

OpenSTA 2.0.17 reads no VCD or SAIF, ignores every pin activity while a ``-global`` one is
set, and re-propagates the activity of a register's output from its data input (its
``set_power_activity -pins`` is also broken: it calls a missing ``get_pins_error``). So the
rates enter where its propagation starts: each measured flip-flop's data pin is rewired to a
new input port of the power netlist (``hwq_act_<k>``) whose activity is the measured rate
(``sta::set_power_input_port_activity``, duty 0.5). OpenSTA then gives that flip-flop's
output the same rate and propagates it through the logic it drives. The flip-flop's own data
net loses one load (a pin capacitance) in the power netlist; timing is not run on it.
Flip-flops whose name matches no counted register bit (merged or renamed by synthesis) and
all combinational nets get OpenSTA's propagated activity, the design's inputs the default
(``set_power_activity -input``). The harness's input shift register and output registers
take the rates of the core port bits they hold.

Energy per inference = total power x (cycles of the run / inputs) x clock period: the
power averaged over the whole inference phase (inputs written, compute, outputs read), of the
logic and the harness registers; the memory macros are black boxes without a power model, so
SRAM reads and writes are not in it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from hwq.config import CoreConfig
from hwq.errors import ToolchainError
from hwq.rtl.liberty import Cell

__all__ = ["ACT_PORT", "FORMAT", "energy_report", "flop_rates", "format_energy",
           "measured_netlist", "power_script", "power_with_rates"]

#: Name prefix of the power netlist's input ports that carry measured rates.
ACT_PORT = "hwq_act_"
#: Bump when the result or the method changes.
FORMAT = 1
#: The core's instance in the harness (:func:`hwq.rtl.harness.register_harness`).
DUT = "dut"

_INSTANCE = re.compile(r"^  (\w+) (\\\S+ |\w+)\s*\((.*?)\);", re.M | re.S)
_HARNESS_IN = re.compile(r"\.\\(\S+) \(chain\[(\d+):(\d+)\]\)")
_HARNESS_OUT = re.compile(r"\.\\(\S+) \((\w+)_w\)")
_WIRE = re.compile(r"^  wire \[(\d+):0\] (\w+)_w;", re.M)


def _bits(name: str, width: int) -> list[str]:
    return [name] if width == 1 else [f"{name}[{i}]" for i in range(width)]


def flop_rates(toggles: dict[str, int], cycles: int, harness: str, root: str
               ) -> dict[str, float]:
    """Toggle rate (toggles / ``cycles``) per netlist register bit.

    ``toggles`` keys are Verilator's (``<root>.mac.acc0[3]``); a core signal maps to
    ``dut.mac.acc0[3]``; the harness's ``chain[k]`` to the core input port bit it feeds and
    ``<port>_q[i]`` to output port bit ``i`` (from the ``harness`` Verilog's connections).
    """
    if cycles <= 0:
        raise ValueError(f"Cycles must be positive, not {cycles!r}")
    rates = {}
    prefix = root + "."
    for key, count in toggles.items():
        if key.startswith(prefix):
            rates[f"{DUT}.{key[len(prefix):]}"] = count / cycles
    widths = {local: int(hi) + 1 for hi, local in _WIRE.findall(harness)}
    for port, hi, lo in _HARNESS_IN.findall(harness):
        width = int(hi) - int(lo) + 1
        for i, bit in enumerate(_bits(f"{prefix}{port}", width)):
            if bit in toggles:
                rates[f"chain[{int(lo) + i}]"] = toggles[bit] / cycles
    for port, local in _HARNESS_OUT.findall(harness):
        width = widths.get(local, 1)
        for i, bit in enumerate(_bits(f"{prefix}{port}", width)):
            if bit in toggles:
                rates[f"{local}_q[{i}]"] = toggles[bit] / cycles
    return rates


def _unescape(name: str) -> str:
    return name[1:].rstrip() if name.startswith("\\") else name


def measured_netlist(netlist: str, top: str, rates: dict[str, float], cells: dict[str, Cell]
                     ) -> tuple[str, list[tuple[str, str, float]], dict[str, int]]:
    """The power netlist: each flip-flop ``<bit>_reg`` with a rate in ``rates`` gets its data
    pin from a new input port of ``top``.

    Returns
    -------
    tuple
        (netlist text, ``[(port, flip-flop instance, rate), ...]``, counts: ``flops``,
        ``measured``, ``unmatched`` (no counted bit of that name), ``no_data_pin`` (a cell
        whose Liberty data input is not one pin)).
    """
    ports: list[tuple[str, str, float]] = []
    counts = {"flops": 0, "measured": 0, "unmatched": 0, "no_data_pin": 0}

    def rewire(m: re.Match) -> str:
        cell = cells.get(m.group(1))
        if cell is None or not cell.sequential:
            return m.group(0)
        counts["flops"] += 1
        inst = _unescape(m.group(2))
        rate = rates.get(inst[:-len("_reg")]) if inst.endswith("_reg") else None
        if rate is None:
            counts["unmatched"] += 1
            return m.group(0)
        if cell.data_pin is None:
            counts["no_data_pin"] += 1
            return m.group(0)
        port = f"{ACT_PORT}{len(ports)}"
        body, n = re.subn(rf"(\.{cell.data_pin}\()[^()]*(\))", rf"\g<1>{port}\g<2>", m.group(3))
        if n != 1:
            raise ToolchainError(f"Flip-flop {inst} ({cell.name}) has no .{cell.data_pin}() "
                                 "connection in the netlist")
        ports.append((port, inst, rate))
        counts["measured"] += 1
        return f"  {m.group(1)} {m.group(2)}({body});"

    text = _INSTANCE.sub(rewire, netlist)
    if ports:
        header = re.search(rf"^module {re.escape(top)}\((.*?)\);", text, re.M | re.S)
        if header is None:
            raise ToolchainError(f"Module {top} not found in the netlist")
        names = ", ".join(p for p, _, _ in ports)
        decls = "".join(f"  input {p};\n" for p, _, _ in ports)
        text = (text[:header.start(1)] + header.group(1) + ", " + names + ");\n" + decls
                + text[header.end():].lstrip("\n"))
    return text, ports, counts


def power_script(*, liberty: Path, netlist: Path, top: str, clock_ns: float,
                 activity: float, ports: list[tuple[str, str, float]]) -> str:
    """OpenSTA script: the clock, the default input activity, each port's measured rate,
    ``report_power``."""
    lines = [f"read_liberty {{{liberty}}}", f"read_verilog {{{netlist}}}", f"link_design {top}",
             f"create_clock -name clk -period {clock_ns:g} [get_ports clk]",
             f"set_power_activity -input -activity {activity:g} -duty 0.5"]
    lines += [f"sta::set_power_input_port_activity [get_ports {p}] {rate:.9g} 0.5"
              for p, _, rate in ports]
    lines += ["report_power -digits 6", "exit"]
    return "\n".join(lines) + "\n"


def power_with_rates(*, netlist: str, top: str, liberty: Path, cells: dict[str, Cell],
                     rates: dict[str, float], clock_ns: float, activity: float,
                     timeout: float | None = None) -> dict[str, Any]:
    """OpenSTA power of ``netlist`` (Verilog text) with ``rates`` applied
    (:func:`measured_netlist`).

    Returns
    -------
    dict
        ``power`` (group -> ``internal``, ``switching``, ``leakage``, ``total`` in mW),
        ``flops``, ``measured``, ``unmatched``, ``no_data_pin`` (counts), ``rate_mean`` (of
        the measured flip-flops), ``sta_seconds``.
    """
    from hwq.rtl.asic_tools import find_sta, parse_sta

    text, ports, counts = measured_netlist(netlist, top, rates, cells)
    with tempfile.TemporaryDirectory(prefix="hwq-energy-") as tmp:
        work = Path(tmp)
        (work / "power.v").write_text(text)
        script = power_script(liberty=liberty, netlist=work / "power.v", top=top,
                              clock_ns=clock_ns, activity=activity, ports=ports)
        (work / "power.tcl").write_text(script)
        t = time.monotonic()
        try:
            proc = subprocess.run([find_sta(), "-no_splash", "-exit", "power.tcl"], cwd=work,
                                  capture_output=True, text=True, errors="replace",
                                  check=False, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ToolchainError(f"OpenSTA did not finish within {timeout:g} s") from exc
        out = proc.stdout + proc.stderr
    power = parse_sta(out, clock_ns)["power_w"]
    if proc.returncode != 0 or "Error" in out or not power:
        errors = [line for line in out.splitlines() if "Error" in line][:3]
        raise ToolchainError(f"OpenSTA power with measured activity failed (exit "
                             f"{proc.returncode}): {'; '.join(errors) or out.strip()[-300:]}")
    return {"power": {g: {k: v * 1e3 for k, v in row.items()} for g, row in power.items()},
            **counts,
            "rate_mean": (round(sum(r for _, _, r in ports) / len(ports), 6) if ports
                          else None),
            "sta_seconds": round(time.monotonic() - t, 2)}


def energy_report(config: CoreConfig, program: Any, x: Any, *, liberty: str | Path | None = None,
                  clock_ns: float = 10.0, activity: float = 0.2, cache: bool = True,
                  cache_dir: str | Path | None = None, timeout: float | None = None,
                  progress: Any = None, sram_um2_per_bit_override: float | None = None
                  ) -> dict[str, Any]:
    """The ASIC report of ``config``'s core with power and energy per inference from the
    toggle rates of inputs ``x`` run through ``program`` (see the module doc).

    Returns
    -------
    dict
        the :func:`~hwq.rtl.asic.asic_report` result plus ``energy``: ``images``,
        ``cycles`` (of the run), ``cycles_per_inference``, ``compute_cycles_per_inference``
        (CYCLES register), ``power`` (mW, measured activity), ``energy_per_inference_nj``
        (= total mW x cycles per inference x clock ns / 1000), the counts of flip-flops
        with measured and default activity, ``cached``.
    """
    from hwq.rtl.asic import _stderr, asic_report
    from hwq.rtl.harness import HARNESS_TOP
    from hwq.rtl.liberty import read_cells
    from hwq.rtl.reportcache import cache_path, load, locked, store
    from hwq.sim.activity import measure_toggles

    say = progress if progress is not None else _stderr
    program.check_config(config)
    result = asic_report(config, liberty=liberty, clock_ns=clock_ns, activity=activity,
                         cache=cache, cache_dir=cache_dir, timeout=timeout, progress=say,
                         keep_netlist=True,
                         sram_um2_per_bit_override=sram_um2_per_bit_override)
    toggles = measure_toggles(program, x, cache_dir=cache_dir, cache=cache,
                              progress=say)
    key = hashlib.sha256(json.dumps({"format": FORMAT, "report": result["key"],
                                     "toggles": toggles["key"]}).encode()).hexdigest()[:24]
    path = cache_path(f"energy-{key}", cache_dir)
    with locked(path, cache):
        energy = load(path) if cache else None
        if energy is not None:
            say(f"energy cached: {path}")
            energy["cached"] = True
        else:
            from hwq.rtl.asic import cached_design

            harness = cached_design(config, cache_dir=cache_dir)[1]
            lib = Path(result["liberty"])
            rates = flop_rates(toggles["toggles"], toggles["cycles"], harness, toggles["root"])
            netlist = gzip.decompress(Path(result["netlist_file"]).read_bytes()).decode()
            say(f"OpenSTA power with the toggle rates of {toggles['images']} inputs ...")
            power = power_with_rates(netlist=netlist, top=HARNESS_TOP, liberty=lib,
                                     cells=read_cells(lib), rates=rates, clock_ns=clock_ns,
                                     activity=activity, timeout=timeout)
            images, cycles = toggles["images"], toggles["cycles"]
            per = cycles / images
            total = power["power"]["total"]["total"]
            energy = {"images": images, "cycles": cycles, "cycles_per_inference": per,
                      "compute_cycles_per_inference": toggles["compute_cycles"] / images,
                      "clock_ns": clock_ns, "default_activity": activity, **power,
                      "power_unit": "mW",
                      "energy_per_inference_nj": total * per * clock_ns / 1000,
                      "signal_bits_counted": len(toggles["toggles"]),
                      "toggle_seconds": toggles["seconds"], "key": key}
            if cache:
                store(path, energy)
            energy["cached"] = False
    result["energy"] = energy
    return result


def format_energy(result: dict[str, Any]) -> str:
    """Text lines of :func:`energy_report`'s ``energy``."""
    e = result["energy"]
    t = e["power"]["total"]
    default = e["flops"] - e["measured"]
    return "\n".join([
        f"  measured  {e['images']} inputs, {e['cycles']} cycles ({e['cycles_per_inference']:.0f}"
        f" per inference, {e['compute_cycles_per_inference']:.0f} of them computing); "
        f"toggle rates of {e['measured']} of {e['flops']} flip-flops (mean "
        f"{e['rate_mean'] or 0:.4f} per cycle), OpenSTA's propagated activity on the other "
        f"{default} flip-flops ({e['unmatched']} with no counted register bit of their name) "
        f"and on all combinational nets, default {e['default_activity']:g} at the inputs",
        f"  power     {t['total']:.3f} mW at {1000 / e['clock_ns']:g} MHz with measured "
        f"activity: internal {t['internal']:.3f}, switching {t['switching']:.3f}, leakage "
        f"{t['leakage'] * 1e3:.3f} uW",
        f"  energy    {e['energy_per_inference_nj']:.2f} nJ per inference (= {t['total']:.3f} mW"
        f" x {e['cycles_per_inference']:.0f} cycles x {e['clock_ns']:g} ns; logic and harness "
        "registers, the memory macros have no power model)"
        + (" [cached]" if e.get("cached") else ""),
    ])
