"""Hardware benchmark: the three PE types side by side on ECP5 (area, Fmax, throughput per LUT).

Arrays (:class:`~hwq.rtl.pe.MacArray`, inputs and outputs registered) at equal shapes
``lanes x simd`` and weight widths, and whole cores at 8x8, through :func:`hwq.rtl.report.report`:

* ``multiply`` with DSPs (Yosys maps ``*``: ``multiply+dsp``; MULT18X18D instances with
  their own registers: ``multiply+ecp5``) and without (``-nodsp``); ``table_bits =
  weight_bits`` so the multipliers are ``weight_bits x act_bits`` (the core default
  ``table_bits = 8`` would make every multiply array 8 x 8 bits, whatever the weight width).
* ``shift_add``: POT codes; 8-bit weights map to POT(7), the widest code it takes (sign +
  6-bit exponent field, shifts up to 62).
* ``bit_serial``: one 1-bit weight plane per cycle; its array does not depend on
  ``weight_bits`` (one synthesis serves all widths); figures per binary op
  (``lanes * simd * act_bits`` 1 x 1-bit products per cycle), to compare with BISMO's
  published ~0.9 LUT6 per binary op per cycle.

Writes ``hw.json``, ``hw.md`` (table) and ``hw.png`` (area vs throughput). Every point is
cached (``<cache>/reports``), so a rerun costs only what changed. Measured cost of a cold
point on a 2-core machine (single-threaded wasm tools; ``jobs`` runs points side by side):
arrays 10 s (4x4) to 5 minutes (8x8 multiply without DSPs), 16x16 shift_add 3 minutes; an
8x8 core 4-6 minutes of nextpnr (LFE5U-45F), the multiply core about 11. Designs too large
for every part (16x16 ``multiply+dsp``: 256 DSPs) stop after Yosys with "does not fit"; the
16x16 ``multiply+ecp5`` array (lanes sharing blocks: 128 DSPs) fits an LFE5U-85F but takes
over 10 minutes of nextpnr.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hwq.bench import bits_label, cell, save_figure
from hwq.config import CoreConfig
from hwq.errors import ToolchainError
from hwq.rtl.report import Progress, _stderr_progress, report
from hwq.serialize import atomic_write

__all__ = ["BENCH_CORE_DEPTHS", "CORE_VARIANTS", "VARIANTS", "bench_config", "bench_hw",
           "format_table", "plot"]

#: (name, PE type, DSPs allowed, :attr:`~hwq.config.CoreConfig.dsp`) of the arrays. The
#: array of ``multiply+dsp`` has Yosys map its multipliers to DSP blocks (registers in the
#: fabric); ``multiply+ecp5`` instantiates MULT18X18D blocks with their own registers.
#: shift_add and bit_serial have no multiplier in the array.
VARIANTS: tuple[tuple[str, str, bool, str], ...] = (
    ("multiply+dsp", "multiply", True, "inferred"),
    ("multiply+ecp5", "multiply", True, "ecp5"),
    ("multiply-nodsp", "multiply", False, "inferred"),
    ("shift_add", "shift_add", True, "inferred"),
    ("bit_serial", "bit_serial", True, "inferred"),
)
#: The benchmarked 8x8 cores: variant -> (:attr:`~hwq.config.CoreConfig.dsp`, nextpnr router).
#: Every core's multipliers are MULT18X18D blocks with their own registers (the requant's
#: partial products; with inferred ones the shift_add and bit_serial cores measured 106.9
#: and 104.0 MHz, with the blocks 112.4 and 117.7). The multiply core takes 64 blocks (its
#: lanes share them two by two) and routes on an LFE5U-45F; with one block per product (96,
#: an LFE5U-85F) router1 never converged and router2 reached 70-79 MHz. The router is a
#: per-core setting for such cases.
CORE_VARIANTS: dict[str, tuple[str, str]] = {
    "multiply+ecp5": ("ecp5", "router1"),
    "shift_add": ("ecp5", "router1"),
    "bit_serial": ("ecp5", "router1"),
}
#: Memory depths of the benchmarked cores (the defaults' 16384-word weight memory alone
#: needs more block RAM than an LFE5U-85F has).
BENCH_CORE_DEPTHS = {"act_depth": 2048, "weight_depth": 1024, "param_depth": 512,
                     "desc_depth": 32}


def bench_config(pe: str, size: int, weight_bits: int, *, core: bool = False,
                 dsp: str = "inferred") -> CoreConfig:
    """The CoreConfig of one benchmark point (``size x size``; see the module docstring)."""
    bits = min(weight_bits, 7) if pe == "shift_add" else weight_bits
    extra: dict[str, int] = dict(BENCH_CORE_DEPTHS) if core else {}
    if pe == "multiply":
        extra["table_bits"] = max(2, weight_bits)
    return CoreConfig(pe=pe, lanes=size, simd=size, weight_bits=bits, dsp=dsp, **extra)


def _check_jobs(jobs: int | None) -> int:
    if jobs is None:
        return max(1, min(4, os.cpu_count() or 1))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 64:
        raise ValueError(f"Parallel jobs must be an integer in 1..64, not {jobs!r}")
    return jobs


def _row(name: str, result: dict[str, Any], requested_bits: int) -> dict[str, Any]:
    cfg, res, thr = result["config"], result["resources"], result["throughput"]
    fmax = result["fmax_mhz"]
    return {
        "variant": name, "scope": result["scope"], "pe": cfg["pe"],
        "shape": f"{cfg['lanes']}x{cfg['simd']}", "weight_bits": requested_bits,
        "weight_bits_used": cfg["weight_bits"], "device": result["device"],
        "fits": result["fits"], "error": result.get("error"),
        "lut4": res["lut4"], "ccu2c": res["carry"], "lut4_eq": res["lut4_eq"],
        "ff": res["ff"], "dsp": res["dsp"], "bram": res["bram"], "fmax_mhz": fmax,
        "macs_per_cycle": thr["macs_per_cycle"],
        "binary_ops_per_cycle": thr["binary_ops_per_cycle"],
        "full_macs_per_cycle": thr["full_macs_per_cycle"],
        "lut4_eq_per_mac": thr["lut4_eq_per_mac"], "lut4_eq_per_op": thr["lut4_eq_per_op"],
        "op_unit": thr["op_unit"], "peak_gops": thr["peak_gops"],
        "peak_full_gmacs": round(thr["full_macs_per_cycle"] * fmax / 1e3, 3) if fmax else None,
        "critical_path_ns": (result.get("critical_path") or {}).get("delay_ns"),
        "critical_path": _path_ends(result.get("critical_path")),
        "dsp_kind": cfg["dsp"], "router": result.get("router", "router1"),
        "cached": result.get("cached", False), "seconds": result.get("seconds"),
    }


def _failed_row(name: str, config: CoreConfig, core: bool, requested_bits: int,
                error: str) -> dict[str, Any]:
    """A row for a point whose tools failed or ran out of time: no figures, the reason."""
    figures = ("device", "lut4", "ccu2c", "lut4_eq", "ff", "dsp", "bram", "fmax_mhz",
               "macs_per_cycle", "binary_ops_per_cycle", "full_macs_per_cycle",
               "lut4_eq_per_mac", "lut4_eq_per_op", "peak_gops", "peak_full_gmacs",
               "critical_path_ns", "critical_path", "seconds")
    row: dict[str, Any] = dict.fromkeys(figures)
    row.update(variant=name, scope="core" if core else "array", pe=config.pe,
               shape=f"{config.lanes}x{config.simd}", weight_bits=requested_bits,
               weight_bits_used=config.weight_bits, fits=None, error=error,
               op_unit="binary op" if config.pe == "bit_serial" else "MAC", cached=False)
    return row


def _path_ends(path: dict[str, Any] | None) -> str | None:
    """``start -> end`` of a critical path, as the hierarchical names before nextpnr's cell
    suffixes (``dut.requant.t3 -> dut.requant.pp3_0_0``)."""
    if not path:
        return None

    def name(cell: str) -> str:
        cell = cell.replace("$flatten\\", "")
        base = re.split(r"_TRELLIS_|_LUT4_|_CCU2C_|_PFUMX_|_L6MUX21_|\$", cell)[0]
        return base.rstrip(".") or cell

    return f"{name(path['from'].rsplit('.', 1)[0])} -> {name(path['to'].rsplit('.', 1)[0])}"


def bench_hw(*, quick: bool = True, shapes: Iterable[int] | None = None,
             weight_bits: Iterable[int] | None = None, cores: bool = True,
             variants: Iterable[str] | None = None, target: str = "ecp5",
             out: str | Path | None = "bench-results", cache: bool = True,
             jobs: int | None = None, timeout: float | None = None,
             progress: Progress | None = _stderr_progress) -> dict[str, Any]:
    """Compare the PE types' arrays (and 8x8 cores) on ``target``.

    Parameters
    ----------
    quick : bool
        8x8 arrays at 4-bit weights and the three 8x8 cores (about 15 minutes cold on the
        2-core machine, seconds cached); else shapes 4, 8, 16 and weights 2, 4, 8.
    shapes, weight_bits : iterable of int, optional
        override the sweep (square arrays ``size x size``; weight widths).
    cores : bool
        also the whole cores at 8x8, 4-bit weights (:data:`CORE_VARIANTS`).
    variants : iterable of str, optional
        names from :data:`VARIANTS` (default all).
    out : path-like or None
        folder for ``hw.json``, ``hw.md``, ``hw.png``; None writes nothing.
    cache : bool
        reuse cached reports.
    jobs : int, optional
        points synthesized and placed at once (default: the CPU count, at most 4; every
        tool run is single-threaded).
    timeout : float, optional
        seconds each tool run of a point may take; a point that runs out of time (or whose
        tools fail) is a row with ``error`` and no figures, and the others go on.

    Returns
    -------
    dict
        ``rows`` (one per point, see :func:`format_table`), ``seconds``, ``files``.
    """
    shapes = tuple(shapes) if shapes is not None else ((8,) if quick else (4, 8, 16))
    bits = tuple(weight_bits) if weight_bits is not None else ((4,) if quick else (2, 4, 8))
    chosen = [v for v in VARIANTS if variants is None or v[0] in set(variants)]
    unknown = set(variants or ()) - {v[0] for v in VARIANTS}
    if unknown:
        raise ValueError(f"Variants must be among {[v[0] for v in VARIANTS]}, not "
                         f"{sorted(unknown)}")
    t0 = time.monotonic()
    points = [(v, s, b, False) for s in shapes for b in bits for v in chosen]
    if cores:
        points += [(v, 8, 4, True) for v in chosen if v[0] in CORE_VARIANTS]
    jobs = _check_jobs(jobs)

    def one(i: int, point: tuple) -> dict[str, Any]:
        (name, pe, dsp, kind), size, wb, core = point
        label = f"[{i}/{len(points)}] {name} {size}x{size} w{wb} {'core' if core else 'array'}"
        say = (lambda message: progress(f"{label}: {message}")) if progress else None
        kind, router = CORE_VARIANTS[name] if core else (kind, "router1")
        config = bench_config(pe, size, wb, core=core, dsp=kind)
        try:
            result = report(config, target=target, array_only=not core, dsp=dsp, cache=cache,
                            timeout=timeout, router=router, progress=say)
        except ToolchainError as exc:   # recorded; the other points go on
            if say:
                say(f"failed: {exc}")
            return {**_failed_row(name, config, core, wb, str(exc)), "dsp_kind": kind,
                    "router": router}
        return _row(name, result, wb)

    # the tools run as subprocesses: threads keep ``jobs`` of them busy
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, range(1, len(points) + 1), points))
    doc = {"target": target, "quick": quick, "shapes": list(shapes), "weight_bits": list(bits),
           "core_depths": BENCH_CORE_DEPTHS, "rows": rows,
           "seconds": round(time.monotonic() - t0, 1), "files": {}}
    if out is not None:
        folder = Path(out)
        paths = {"json": folder / "hw.json", "markdown": folder / "hw.md",
                 "plot": folder / "hw.png"}
        doc["files"] = {k: str(v) for k, v in paths.items()}
        atomic_write(paths["markdown"], (format_table(rows) + "\n").encode())
        plot(rows, paths["plot"])
        atomic_write(paths["json"], (json.dumps(doc, indent=2) + "\n").encode())
    return doc


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`bench_hw` rows."""
    head = ("| scope | variant | shape | w bits | device | LUT4 | CCU2C | LUT4-eq | FF | DSP | "
            "BRAM | Fmax MHz | LUT4-eq/MAC | LUT4-eq/binop | peak GOPS | critical path |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        bits = bits_label(r)
        per_binop = cell(r["lut4_eq_per_op"], 3) if r["op_unit"] != "MAC" else "—"
        gops = cell(r["peak_gops"], 1) + (" bin" if r["op_unit"] != "MAC" and r["peak_gops"]
                                          else "")
        device = r["device"] or ("failed" if r["fits"] is None else "does not fit")
        lines.append(f"| {r['scope']} | {r['variant']} | {r['shape']} | {bits} | {device} | "
                     f"{cell(r['lut4'])} | {cell(r['ccu2c'])} | {cell(r['lut4_eq'])} | "
                     f"{cell(r['ff'])} | {cell(r['dsp'])} | {cell(r['bram'])} | "
                     f"{cell(r['fmax_mhz'])} | {cell(r['lut4_eq_per_mac'])} | "
                     f"{per_binop} | {gops} | {_critical(r)} |")
    return "\n".join(lines)


def _critical(row: dict[str, Any]) -> str:
    if not row.get("critical_path_ns"):
        return "—"
    return f"{row['critical_path_ns']:.1f} ns: {row['critical_path']}"


def plot(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Area (LUT4-eq, log) vs peak full-precision GMAC/s (log), one marker per variant.

    ``bit_serial`` counts ``lanes * simd / weight_bits`` full MACs per cycle, so the points
    at equal weight width compare like for like. Arrays only; labels ``shape/w bits``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    markers = {"multiply+dsp": "s", "multiply+ecp5": "P", "multiply-nodsp": "D",
               "shift_add": "o", "bit_serial": "^"}
    for name, marker in markers.items():
        pts = [r for r in rows if r["variant"] == name and r["scope"] == "array"
               and r["peak_full_gmacs"]]
        if not pts:
            continue
        ax.scatter([r["lut4_eq"] for r in pts], [r["peak_full_gmacs"] for r in pts],
                   marker=marker, label=name)
        for r in pts:
            ax.annotate(f"{r['shape']}/w{r['weight_bits']}", (r["lut4_eq"], r["peak_full_gmacs"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("area: LUT4-equivalents (LUT4 + 2 CCU2C), DSPs not counted")
    ax.set_ylabel("peak GMAC/s at routed Fmax (full-precision MACs)")
    ax.set_title("MAC arrays on ECP5 (registered I/O)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    save_figure(fig, path)
