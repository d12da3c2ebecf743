"""``hwq bench offchip``: weights in external memory, measured on the Verilated core.

For each network and PE type the weights are streamed from external memory in tiles
(:mod:`hwq.layout.tiling`, the default buffers of :func:`hwq.layout.compiler.core_config`)
and the compiled backend runs test images with the C++ memory model on ``m_axi`` (fixed
latency, one beat per cycle). Per row: the on-chip memory the weights would need, the
external image, the weight buffers that replace it, bytes read per inference, cycles per
inference measured against the same network with every weight on chip (the cycle model of
that core, which its counters equal), and the cycles lost to memory. Every run is checked:
outputs equal to ``hwq.golden.run`` and every layer's counter equal to
:func:`hwq.golden.memory.schedule`.

Networks: the trained workloads quantized post-training (POT rounding for ``shift_add``,
per-channel INT otherwise, 4 bits, as ``hwq bench util``) and ``vgg11``, a VGG-11 for
3x32x32 (9.2 M weights, random 4-bit weights and inputs: what matters here is its shapes).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hwq.config import PE_TYPES

__all__ = ["NETWORKS", "VGG11_ARCH", "bench_offchip", "format_offchip"]

#: VGG-11 (configuration A) for 3x32x32 inputs, as CIFAR-10 models use it: eight 3x3
#: convolutions with five max pools, then one linear layer of 512 -> 10.
VGG11_ARCH = (("conv", 64, 3, 1, 1, True), ("pool",), ("conv", 128, 3, 1, 1, True), ("pool",),
              ("conv", 256, 3, 1, 1, True), ("conv", 256, 3, 1, 1, True), ("pool",),
              ("conv", 512, 3, 1, 1, True), ("conv", 512, 3, 1, 1, True), ("pool",),
              ("conv", 512, 3, 1, 1, True), ("conv", 512, 3, 1, 1, True), ("pool",),
              ("flatten",), ("linear", 10, False))
#: The networks measured by default.
NETWORKS = ("digits", "lenet5", "resnet8", "vgg11")


def _network(name: str, pe: str, images: int) -> tuple[Any, np.ndarray]:
    """The quantized network ``name`` for ``pe`` and ``images`` of its test inputs."""
    from hwq import golden

    if name == "vgg11":
        from hwq.testing import random_inputs, random_network

        rng = np.random.default_rng(0)
        net = random_network(rng, input_shape=(3, 32, 32), arch=VGG11_ARCH,
                             kind="pot" if pe == "shift_add" else "int", bits=4)
        return net, random_inputs(rng, net, images)
    from hwq.bench.util import PTQ
    from hwq.quant.api import quantize
    from hwq.workloads import WORKLOADS, get_workload

    if name not in WORKLOADS:
        raise ValueError(f"Network must be vgg11 or one of {', '.join(WORKLOADS)}, "
                         f"not {name!r}")
    workload = get_workload(name)
    data = workload.load_data()
    method, options = PTQ[pe]
    net = quantize(workload.pretrained(), method, bits=4, data=data, seed=0,
                   **options).network
    x = golden.quantize_input(data.x_test[:images].numpy(), net.input_scale, net.act_bits)
    return net, x


def offchip_row(name: str, pe: str, *, images: int, lanes: int = 8, simd: int = 8,
                ext_bits: int = 64, latency: int = 4, act_depth: int | None = None
                ) -> dict[str, Any]:
    """One network on one PE type with its weights in external memory (module docstring);
    with ``act_depth``, an activation memory of that many words, the tensors that do not fit
    in external memory too (:mod:`hwq.layout.acttiles`)."""
    from hwq import golden
    from hwq.golden.memory import MemoryTiming
    from hwq.layout.compiler import compile as compile_network
    from hwq.layout.compiler import core_config
    from hwq.sim.simulate import simulate

    net, x = _network(name, pe, images)
    onchip = core_config(net, pe=pe, lanes=lanes, simd=simd)
    small = {} if act_depth is None else {"act_depth": act_depth}
    config = core_config(net, pe=pe, lanes=lanes, simd=simd, ext_bits=ext_bits,
                         weights="external", **small)
    t0 = time.perf_counter()
    program = compile_network(net, config, weights="external")
    compile_s = time.perf_counter() - t0
    onchip_cycles = compile_network(net, onchip).cycles()
    sim = simulate(program, None, x, memory=MemoryTiming(latency=latency), progress=False)
    mismatches = int((sim.outputs != golden.run(net, x)).sum())
    width = program.words.weight.width
    cycles = float(sim.cycles.mean())
    return {
        "network": name, "pe": pe, "images": int(len(x)),
        "weights": int(sum(op.weight.size for op in net.weight_ops())),
        "onchip_weight_bytes": onchip.weight_depth * width // 8,
        "onchip_weight_depth": onchip.weight_depth,
        "buffer_bytes": config.weight_depth * width // 8,
        "buffer_depth": config.weight_depth,
        "external_bytes": program.external_bytes,
        "bytes_per_inference": float(sim.ext_beats.mean()) * ext_bits // 8,
        "descriptors": len(program.layers),
        "act_depth": config.act_depth, "onchip_act_depth": onchip.act_depth,
        "external_tensors": sorted(program.meta.get("act_external", {})),
        "cycles": cycles, "onchip_cycles": int(onchip_cycles),
        "lost_cycles": cycles - onchip_cycles,
        "stall_cycles": float(sim.stall_cycles.mean()),
        "mismatches": mismatches,
        "cycle_model_mismatches": sim.cycle_model_mismatches(),
        "compile_s": compile_s, "build_s": sim.build_seconds,
        "simulate_s": sim.infer_seconds,
    }


def bench_offchip(*, networks: tuple[str, ...] = NETWORKS, pes: tuple[str, ...] = PE_TYPES,
                  images: int = 2, lanes: int = 8, simd: int = 8, ext_bits: int = 64,
                  latency: int = 4, act_depth: int | None = None, log=print) -> dict[str, Any]:
    """Every network on every PE type with external weights (module docstring)."""
    for pe in pes:
        if pe not in PE_TYPES:
            raise ValueError(f"PE type must be one of {', '.join(PE_TYPES)}, not {pe!r}")
    rows = []
    for name in networks:
        for pe in pes:
            log(f"offchip: {name} on {pe} ...")
            rows.append(offchip_row(name, pe, images=images, lanes=lanes, simd=simd,
                                    ext_bits=ext_bits, latency=latency, act_depth=act_depth))
    ok = all(r["mismatches"] == 0 and not r["cycle_model_mismatches"] for r in rows)
    return {"bench": "offchip", "ok": ok, "lanes": lanes, "simd": simd, "ext_bits": ext_bits,
            "latency": latency, "rows": rows}


def format_offchip(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`bench_offchip`'s rows."""
    out = [f"Weights in external memory: {result['lanes']}x{result['simd']} cores, m_axi "
           f"{result['ext_bits']} bits, memory latency {result['latency']} cycles",
           "", "| network | PE | weights | on-chip weights | buffers | activations | "
           "external image | moved/inference | cycles on chip | cycles external | lost | "
           "exact |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        exact = "yes" if r["mismatches"] == 0 and not r["cycle_model_mismatches"] else "NO"
        out.append(
            f"| {r['network']} | {r['pe']} | {r['weights']:,} | {_kib(r['onchip_weight_bytes'])} "
            f"| {_kib(r['buffer_bytes'])} | {_acts(r)} | {_kib(r['external_bytes'])} "
            f"| {_kib(r['bytes_per_inference'])} | {r['onchip_cycles']:,} "
            f"| {r['cycles']:,.0f} | {r['lost_cycles']:,.0f} "
            f"({100 * r['lost_cycles'] / r['onchip_cycles']:.1f} %) | {exact} |")
    return "\n".join(out)


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _acts(row: dict[str, Any]) -> str:
    """The activation memory of a row: on chip, or its words and the tensors out."""
    out = row.get("external_tensors") or []
    if not out:
        return f"{row['act_depth']:,} words"
    return (f"{row['act_depth']:,} of {row['onchip_act_depth']:,} words, "
            f"{len(out)} tensor{'s' if len(out) > 1 else ''} out")
