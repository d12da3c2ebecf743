"""``hwq bench util``: MAC utilization of the reference networks on the cycle model.

Per network (:data:`hwq.workloads.WORKLOADS`) and PE type, per layer: MACs (of the layer's
own weights, zeros included), ideal cycles ``MACs / (lanes * simd)``, model cycles
(:func:`hwq.layout.compiler.network_cycles`, which the simulated core's counters equal),
utilization ``ideal / cycles``, and the same with nonzero-weight MACs (``bit_serial``:
one-bits of the codes, as ``hwq flow`` counts). Over the network: the same ratios with every
layer's cycles (pools included; a max pool fused into the write-back of the layer before
it has none, and that layer's row names it), and inferences/s at a clock (MHz): the routed
Fmax of the matching 8x8 core in ``hwq bench hw``'s results when given, else the ``fmax``
argument.

The networks are post-training quantized (no retraining, so a run takes seconds): POT
rounding to the INQ set for ``shift_add``, per-channel INT for ``multiply`` and
``bit_serial``. Cycles depend on the weights only through all-zero tiles (skipped) and, on
``bit_serial``, the tiles' bit-planes, so a retrained network of the same shapes can differ
slightly there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hwq.config import PE_TYPES

__all__ = ["NETWORKS", "bench_util", "format_util", "routed_fmax"]

#: The workloads measured by default.
NETWORKS = ("digits", "lenet5", "resnet8", "sepnet")
#: PE -> (method, options) of the post-training quantization used.
PTQ: dict[str, tuple[str, dict[str, Any]]] = {
    "shift_add": ("inq", {"schedule": (1.0,)}),
    "multiply": ("uniform", {}),
    "bit_serial": ("uniform", {}),
}


def routed_fmax(hw_json: Path, pe: str, lanes: int, simd: int) -> float | None:
    """Routed Fmax (MHz) of the ``pe`` core of ``lanes x simd`` in a ``hwq bench hw`` result
    file, or None when the file or the row is missing."""
    try:
        rows = json.loads(Path(hw_json).read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for r in rows:
        if (r.get("scope") == "core" and r.get("pe") == pe and r.get("shape") == f"{lanes}x{simd}"
                and r.get("dsp_kind", "inferred") == "inferred" and r.get("fmax_mhz")):
            return float(r["fmax_mhz"])
    return None


def network_util(network: Any, *, pe: str, lanes: int, simd: int,
                 pack: str = "off", depthwise: str = "off") -> dict[str, Any]:
    """Per-layer and whole-network utilization of ``network`` on a ``pe`` core.

    ``macs``: the products of the layer's own weights, zeros included (``positions *
    weight.size`` of a conv or linear op; synthesized weights such as pool ones: their
    nonzero count), so a zero weight the core still multiplies counts as work; ``nonzero``:
    the products of nonzero weights (``bit_serial``: their one-bits). Utilization is
    ``macs / (cycles * lanes * simd)``, and ``nonzero_utilization`` likewise. ``pack``: K
    packing (``auto``, ``on``, ``off``; :func:`hwq.layout.compiler.core_config`); ``packed``
    in the result says whether the core has it; ``depthwise`` likewise the depthwise mode
    (``dw`` in the result, and on each layer that runs in it).
    """
    from hwq.layout.compiler import core_config, network_cycles

    config = core_config(network, pe=pe, lanes=lanes, simd=simd, pack=pack,
                         depthwise=depthwise)
    ops = {op.name: op for op in network.ops}
    layers = []
    total = {"macs": 0, "nonzero": 0, "cycles": 0}
    for e in network_cycles(network, config):
        if e["cycles"] == 0:
            continue
        nonzero = e.get("bit_ops" if pe == "bit_serial" else "macs", 0)
        own = getattr(ops[e["name"]], "weight", None)
        macs = e["positions"] * int(own.size) if own is not None else e.get("macs", 0)
        layer = {"name": e["name"], "kind": e["kind"], "macs": macs, "nonzero": nonzero,
                 "cycles": e["cycles"]}
        if "fused" in e:                 # a max pool in its write-back, no cycles of its own
            layer["fused"] = e["fused"]
        if e.get("dw"):                  # in the depthwise mode
            layer["dw"] = True
        layers.append(_ratios(layer, lanes * simd))
        for k in total:
            total[k] += layer[k]
    return {"layers": layers, "packed": config.pack, "dw": config.depthwise,
            **_ratios(total, lanes * simd)}


def _ratios(d: dict[str, Any], per_cycle: int) -> dict[str, Any]:
    d["ideal_cycles"] = d["macs"] / per_cycle
    d["utilization"] = d["ideal_cycles"] / d["cycles"] if d["macs"] else None
    d["nonzero_utilization"] = d["nonzero"] / per_cycle / d["cycles"] if d["macs"] else None
    return d


def bench_util(*, networks: tuple[str, ...] = NETWORKS,
               pes: tuple[str, ...] = PE_TYPES, lanes: int = 8, simd: int = 8, bits: int = 4,
               fmax: float | None = None, hw_json: Path | None = None,
               progress: bool = False, pack: str = "off",
               depthwise: str = "off") -> dict[str, Any]:
    """Utilization of every network on every PE type (see the module docstring).

    ``fmax`` (MHz) is used where ``hw_json`` has no routed Fmax for a core; with neither,
    inferences/s is None.
    """
    from hwq.quant.api import quantize
    from hwq.workloads import WORKLOADS, get_workload

    for name in networks:
        if name not in WORKLOADS:
            raise ValueError(f"Network must be one of {', '.join(WORKLOADS)}, not {name!r}")
    for pe in pes:
        if pe not in PE_TYPES:
            raise ValueError(f"PE type must be one of {', '.join(PE_TYPES)}, not {pe!r}")
    if fmax is not None and not (isinstance(fmax, int | float) and math.isfinite(fmax)
                                 and fmax > 0):
        raise ValueError(f"Fmax must be a positive number of MHz, not {fmax!r}")
    rows = []
    for name in networks:
        workload = get_workload(name)
        data = workload.load_data()
        model = workload.pretrained(progress=progress)
        for pe in pes:
            method, options = PTQ[pe]
            net = quantize(model, method, bits=bits, data=data, seed=0, progress=progress,
                           **options).network
            r = network_util(net, pe=pe, lanes=lanes, simd=simd, pack=pack,
                             depthwise=depthwise)
            clock = routed_fmax(hw_json, pe, lanes, simd) if hw_json else None
            source = "hwq bench hw (routed)" if clock else "given" if fmax else None
            clock = clock or fmax
            r.update(network=name, pe=pe, method=method, fmax_mhz=clock, fmax_source=source,
                     inferences_per_s=clock * 1e6 / r["cycles"] if clock else None)
            rows.append(r)
    return {"bench": "util", "lanes": lanes, "simd": simd, "bits": bits, "pack": pack,
            "depthwise": depthwise,
            "definition": "utilization = MACs / (cycles x lanes x simd), MACs of the layers' "
                          "own weights zeros included; nonzero_utilization counts nonzero-"
                          "weight MACs (shift_add, multiply) or the 1-bits of nonzero weights' "
                          "narrowest two's complement codes (bit_serial), as hwq flow does",
            "rows": rows}


def format_util(result: dict[str, Any]) -> str:
    """Markdown tables: one summary, then per-layer figures of every network and PE."""
    pack, dw = result.get("pack", "off"), result.get("depthwise", "off")
    if dw == "on" and pack == "off":
        pack = "on: the depthwise mode needs it"
    out = [f"MAC utilization on {result['lanes']}x{result['simd']} cores (cycle model, K "
           f"packing {pack}, depthwise mode {dw})", "",
           "| network | PE | packed | cycles | ideal | utilization | nonzero util. | "
           "inferences/s |",
           "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ips = f"{r['inferences_per_s']:.0f} @ {r['fmax_mhz']:.1f} MHz" \
            if r["inferences_per_s"] else "-"
        out.append(f"| {r['network']} | {r['pe']} | {'yes' if r.get('packed') else 'no'} "
                   f"| {r['cycles']} | {r['ideal_cycles']:.0f} "
                   f"| {_pct(r['utilization'])} | {_pct(r['nonzero_utilization'])} | {ips} |")
    for r in result["rows"]:
        out += ["", f"{r['network']} on {r['pe']}:", "",
                "| layer | op | MACs | ideal | cycles | utilization | nonzero util. |",
                "|---|---|---|---|---|---|---|"]
        for lay in r["layers"]:
            kind = lay["kind"] + (f" + pool {lay['fused']}" if "fused" in lay else "") \
                + (" (depthwise mode)" if lay.get("dw") else "")
            out.append(f"| {lay['name']} | {kind} | {lay['macs']} "
                       f"| {lay['ideal_cycles']:.0f} | {lay['cycles']} "
                       f"| {_pct(lay['utilization'])} | {_pct(lay['nonzero_utilization'])} |")
    return "\n".join(out)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"
