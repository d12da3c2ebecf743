"""The network rows of ``hwq bench asic``: whole cores running a network, per PE type.

For each network (a built-in workload of :mod:`hwq.workloads`: digits, lenet5) and PE type,
:func:`hwq.sim.flow.flow` quantizes the pretrained model with that PE's default method
(:data:`hwq.sim.flow.DEFAULT_METHOD`), compiles it for an 8x8 core and runs the first
``images`` test images on the Verilated core (checked bit for bit against the golden model);
:func:`hwq.rtl.asic_energy.energy_report` maps that core to the library and applies the
toggle rates of the same images. A row gives:

* ``logic_mm2``: the core's logic area (no wires); ``memory_mm2``: its memories as SRAM
  macros (the estimate of :func:`hwq.rtl.asic.sram_um2_per_bit`), ``memory_bits``;
* ``fmax_mhz``: OpenSTA, register to register;
* ``inferences_per_s`` = Fmax / compute cycles per inference (the CYCLES register; the bus
  transfers of the input and output are not counted);
* ``energy_nj``: energy per inference with the measured toggle rates at 100 MHz, over
  the whole run (input written, compute, output read: ``run_cycles_per_inference``);
  ``vectorless_nj``: the vectorless power (activity 0.2) over the same cycles, for scale.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hwq.bench import cell

__all__ = ["NETWORKS", "format_networks", "network_rows"]

#: Networks of the bench: built-in workloads.
NETWORKS: tuple[str, ...] = ("digits", "lenet5")


def _row(network: str, pe: str, flow: dict[str, Any], hw: dict[str, Any]) -> dict[str, Any]:
    e = hw["energy"]
    compute = flow["cycles_per_inference"]
    vectorless = hw["power"]["total"]["total"]
    return {
        "network": network, "pe": pe, "method": flow["method"], "images": flow["images"],
        "ok": flow["ok"], "accuracy": flow["sim_accuracy"],
        "logic_mm2": round(hw["logic"]["area"] / 1e6, 4),
        "memory_bits": hw["memories"]["bits"],
        "memory_mm2": (round(hw["memories"]["sram_um2"] / 1e6, 3)
                       if hw["memories"]["sram_um2"] is not None else None),
        "fmax_mhz": hw["fmax_mhz"], "cycles_per_inference": compute,
        "inferences_per_s": round(hw["fmax_mhz"] * 1e6 / compute) if hw["fmax_mhz"] else None,
        "run_cycles_per_inference": e["cycles_per_inference"],
        "power_mw": round(e["power"]["total"]["total"], 3),
        "energy_nj": round(e["energy_per_inference_nj"], 2),
        "vectorless_nj": round(vectorless * e["cycles_per_inference"] * e["clock_ns"] / 1000, 2),
        "flops_measured": e["measured"], "flops": e["flops"],
    }


def network_rows(*, networks: Iterable[str] = NETWORKS, pes: Iterable[str],
                 images: int = 50, liberty: str | Path | None = None,
                 timeout: float | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """One row per network and PE type (see the module doc); a failing point gives a row
    with ``error``."""
    from hwq.config import CoreConfig
    from hwq.errors import CheckFailed, ToolchainError
    from hwq.rtl.asic_energy import energy_report
    from hwq.sim.flow import flow
    from hwq.workloads import WORKLOADS

    networks = tuple(networks)
    bad = [n for n in networks if n not in WORKLOADS]
    if bad:
        raise ValueError(f"Networks must be built-in workloads ({', '.join(WORKLOADS)}), "
                         f"not {bad}")
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"Images must be a positive integer, not {images!r}")
    rows = []
    for network in networks:
        for pe in pes:
            label = f"[bench asic] {network} {pe} 8x8"

            def say(message: str, label: str = label) -> None:
                if progress:
                    print(f"{label}: {message}", file=sys.stderr, flush=True)

            kept: dict[str, Any] = {}
            try:
                report = flow(model=network, pe=pe, limit=images, jobs=1, progress=False,
                              log=say, after_run=lambda p, x, k=kept: k.update(program=p, x=x))
                config = CoreConfig.from_dict(report["core"])
                hw = energy_report(config, kept["program"], kept["x"], liberty=liberty,
                                   timeout=timeout, progress=say)
            except (ToolchainError, CheckFailed) as exc:
                say(f"failed: {exc}")
                rows.append({"network": network, "pe": pe, "error": str(exc)})
                continue
            rows.append(_row(network, pe, report, hw))
    return rows


def format_networks(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`network_rows`."""
    head = ("| network | PE | method | logic mm^2 | memory mm^2 (bits) | Fmax MHz | "
            "cycles/inf | inf/s at Fmax | energy/inf nJ (measured) | vectorless nJ | "
            "measured flops |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['network']} | {r['pe']} | failed: {r['error'][:60]} |"
                         + " |" * 8)
            continue
        memory = (f"{r['memory_mm2']:.3f} ({r['memory_bits']})" if r["memory_mm2"] is not None
                  else f"— ({r['memory_bits']})")
        lines.append(f"| {r['network']} | {r['pe']} | {r['method']} | {r['logic_mm2']:.4f} | "
                     f"{memory} | {cell(r['fmax_mhz'])} | {r['cycles_per_inference']:.0f} | "
                     f"{cell(r['inferences_per_s'], 0)} | {r['energy_nj']:.2f} | "
                     f"{r['vectorless_nj']:.2f} | {r['flops_measured']}/{r['flops']} |")
    return "\n".join(lines)
