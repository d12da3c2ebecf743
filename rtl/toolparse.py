"""Reading what the FPGA tools report: Yosys cell counts, nextpnr's report, the parts' capacities.

Also the per-MAC throughput figures (see :mod:`hwq.rtl.report` for their definitions).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hwq.config import CoreConfig
from hwq.rtl.harness import HARNESS_TOP

__all__ = ["DEVICES", "TARGETS", "Device", "count_cells", "critical_path", "find_device",
           "fit_shortfall", "nextpnr_shortfall", "parse_nextpnr_report", "resources",
           "throughput"]

TARGETS: tuple[str, ...] = ("ecp5", "ice40")


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


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"Target must be one of {', '.join(TARGETS)}, not {target!r}")



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
