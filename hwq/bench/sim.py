"""``hwq bench sim``: simulation speed of every engine, side by side in one run.

Two workloads on one core configuration each: the digits test set through a digits-shaped
network, and a VGG-small-like chain on 3x32x32 (over 200 k cycles per image). Per
workload, on the same Verilog and the same program:

- compiled backend end to end (the host runtime over ctypes, bus transactions included),
  in one process and with ``jobs`` worker processes;
- the compiled build's free-running clock (C++ loop, no transactions), in the same process
  right after the batch: the reference every ratio is taken against;
- cocotb end to end and cocotb's free-running clock (one Timer, Python idle), on as many
  images as fit :data:`COCOTB_CYCLES`;
- Amaranth's Python simulator on the digits network (``amaranth_images``; a minute per
  image here).

The compiled runs repeat ``repeats`` times, one process and ``jobs`` processes in turn; the
medians are reported, with the cores the runs got (CPU seconds per wall second of the
inference phase). The machine may be shared: ratios measured side by side are the figures
to read, absolute rates move with the load.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from hwq import __version__
from hwq.hardware import PES

__all__ = ["COCOTB_CYCLES", "DIGITS_ARCH", "VGG_SMALL_ARCH", "bench_sim", "format_sim"]

#: The digits CNN's shapes (hwq.workloads.digits), with random weights: speed does not depend
#: on the values, and no training is needed.
DIGITS_ARCH = (("conv", 16, 3, 1, 1, True), ("conv", 32, 3, 1, 1, True), ("pool",),
               ("conv", 32, 3, 1, 1, True), ("pool",), ("flatten",), ("linear", 10, False))
#: A VGG-small-like chain for 3x32x32 inputs: three blocks of 3x3 convolutions (16, 32, 64
#: channels) and 2x2 max pools, then a classifier (197 k cycles on a shift_add 8x8 core; 207 k
#: before its first layer's taps were packed into the SIMD lanes).
VGG_SMALL_ARCH = (("conv", 16, 3, 1, 1, True), ("conv", 16, 3, 1, 1, True), ("pool",),
                  ("conv", 32, 3, 1, 1, True), ("conv", 32, 3, 1, 1, True), ("pool",),
                  ("conv", 64, 3, 1, 1, True), ("conv", 64, 3, 1, 1, True),
                  ("conv", 64, 3, 1, 1, True), ("pool",), ("flatten",), ("linear", 10, False))
#: Simulated cycles of the cocotb runs (about 6 s at its speed here).
COCOTB_CYCLES = 2_000_000
#: Free-running cycles after each compiled batch (about 1 s).
FREE_RUN_CYCLES = 1_000_000
#: The weight format each PE's networks are made of: the first it takes.
_KIND = {pe: kind.formats[0] for pe, kind in PES.items()}


def _workloads(pe: str, lanes: int, simd: int, images: int, large_images: int
               ) -> list[dict[str, Any]]:
    from hwq import golden
    from hwq.layout.compiler import compile as compile_network
    from hwq.layout.compiler import core_config
    from hwq.testing import random_inputs, random_network
    from hwq.workloads import digits

    rng = np.random.default_rng(0)
    out = []
    net = random_network(rng, kind=_KIND[pe], bits=4, input_shape=(1, 8, 8), arch=DIGITS_ARCH)
    if images:
        x = digits.load_data().x_test[:images].numpy()
        x = golden.quantize_input(x, 1 / 127, net.act_bits)  # pixels 0..1 -> 0..127
        out.append({"name": "digits", "network": net, "x": x,
                    "what": f"digits test set ({len(x)} images), digits-shaped network"})
    if large_images:
        large = random_network(rng, kind=_KIND[pe], bits=4, input_shape=(3, 32, 32),
                               arch=VGG_SMALL_ARCH)
        out.append({"name": "vgg_small", "network": large,
                    "x": random_inputs(rng, large, large_images),
                    "what": f"VGG-small-like 3x32x32 ({large_images} random images)"})
    for w in out:
        config = core_config(w["network"], pe=pe, lanes=lanes, simd=simd)
        w["program"] = compile_network(w["network"], config)
        w["expected"] = golden.run(w["network"], w["x"])
    return out


def bench_sim(*, pe: str = "shift_add", lanes: int = 8, simd: int = 8, images: int = 540,
              large_images: int = 50, jobs: int = 2, repeats: int = 3,
              amaranth_images: int = 1, progress: bool = True) -> dict[str, Any]:
    """Cycles per second of every engine on both workloads; see the module docstring.

    ``images`` (at most 540) and ``large_images`` are the batch sizes of the compiled runs
    (0 leaves the workload out); ``amaranth_images`` 0 leaves Amaranth out.
    """
    from hwq.rtl.simulation import simulate_core
    from hwq.sim import harness
    from hwq.sim.simulate import simulate

    for name, v, low in (("images", images, 0), ("large_images", large_images, 0),
                         ("jobs", jobs, 2), ("repeats", repeats, 1),
                         ("amaranth_images", amaranth_images, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"Benchmark {name} must be an integer >= {low}, not {v!r}")
    if images > 540:
        raise ValueError(f"Benchmark images must be at most 540 (the digits test set), "
                         f"not {images}")
    if not images and not large_images:
        raise ValueError("Benchmark images and large_images are both 0: nothing to run")
    result: dict[str, Any] = {"bench": "sim", "pe": pe, "lanes": lanes, "simd": simd,
                              "jobs": jobs, "repeats": repeats, "workloads": {},
                              "goals": {"compiled_vs_free_run": 0.8,
                                        f"compiled_jobs{jobs}_vs_free_run": 1.7},
                              "hwq_version": __version__}
    for w in _workloads(pe, lanes, simd, images, large_images):
        program, x, expected = w["program"], w["x"], w["expected"]

        def run(backend: str, n_jobs: int, n: int = len(x), program=program, x=x,
                expected=expected):
            """simulate(); the wall time without the build and the free-running reference
            (compiled: FREE_RUN_CYCLES in one process, a token 10 k in each worker of
            several; cocotb: its default)."""
            free = (harness.FREE_RUN_CYCLES if backend == "cocotb"
                    else FREE_RUN_CYCLES if n_jobs == 1 else 10_000)
            t0 = time.perf_counter()
            sim = simulate(program, None, x[:n], backend=backend, jobs=n_jobs,
                           progress=progress, free_run=True, free_run_cycles=free)
            wall = time.perf_counter() - t0 - sim.build_seconds
            np.testing.assert_array_equal(sim.outputs, expected[:n])
            assert not sim.cycle_model_mismatches()
            return sim, wall - free / sim.free_run_cycles_per_s

        run("compiled", jobs, jobs)  # build (or find) the library, start workers once
        singles, multis = [], []
        for _ in range(repeats):
            singles.append(run("compiled", 1))
            multis.append(run("compiled", jobs))
        n_cocotb = max(1, min(len(x), COCOTB_CYCLES // program.cycles()))
        cocotb, cocotb_wall = run("cocotb", 1, n_cocotb)
        free = statistics.median(s.free_run_cycles_per_s for s, _ in singles)
        e2e = statistics.median(s.sim_cycles_per_s for s, _ in singles)
        par = statistics.median(s.sim_cycles_per_s for s, _ in multis)
        rows = [
            _row("compiled", "end to end", 1, len(x), e2e, free,
                 statistics.median(w_ for _, w_ in singles), _cores(singles)),
            _row("compiled", "free-running", 1, None, free, free, None),
            _row("compiled", "end to end", jobs, len(x), par, free,
                 statistics.median(w_ for _, w_ in multis), _cores(multis)),
            _row("cocotb", "end to end", 1, n_cocotb, cocotb.sim_cycles_per_s, free,
                 cocotb_wall),
            _row("cocotb", "free-running", 1, None, cocotb.free_run_cycles_per_s, free, None),
        ]
        if amaranth_images and w["name"] == "digits":
            ama = simulate_core(program, x[:amaranth_images], load="init")
            np.testing.assert_array_equal(ama.outputs, expected[:amaranth_images])
            rows.append(_row("amaranth", "core cycles", 1, amaranth_images,
                             sum(ama.cycles) / ama.run_seconds, free, ama.run_seconds))
        result["workloads"][w["name"]] = {
            "what": w["what"],
            "core": program.config.to_dict(),
            "cycles_per_image": int(program.cycles()),
            "rows": rows,
            "ratios": {
                "compiled_vs_free_run": e2e / free,
                f"compiled_jobs{jobs}_vs_free_run": par / free,
                "compiled_vs_cocotb_end_to_end": e2e / cocotb.sim_cycles_per_s,
                "cocotb_vs_free_run": cocotb.sim_cycles_per_s / free,
                **({"compiled_vs_amaranth": e2e / rows[-1]["cycles_per_s"]}
                   if rows[-1]["engine"] == "amaranth" else {}),
            },
            "repeat_ratios": [s.sim_cycles_per_s / s.free_run_cycles_per_s for s, _ in singles],
            "build_seconds": singles[0][0].build_seconds,
        }
    return result


def _row(engine: str, mode: str, jobs: int, images: int | None, rate: float, free: float,
         wall: float | None, cores: float | None = None) -> dict[str, Any]:
    return {"engine": engine, "mode": mode, "jobs": jobs, "images": images,
            "cycles_per_s": rate, "vs_compiled_free_run": rate / free, "wall_s": wall,
            "cores": cores}


def _cores(runs: list) -> float:
    """CPU seconds per wall second of the inference phase (median): the cores the runs got;
    on a shared machine, fewer than ``jobs`` explains a parallel speed-up below ``jobs``."""
    return statistics.median(s.extra["infer_cpu_seconds"] / s.infer_seconds for s, _ in runs)


def format_sim(r: dict[str, Any]) -> str:
    """The benchmark's table, one block per workload."""
    lines = [f"simulation benchmark: {r['pe']} core {r['lanes']}x{r['simd']}; medians of "
             f"{r['repeats']} compiled runs; shared machine: read the ratios"]
    for w in r["workloads"].values():
        lines += ["", f"{w['what']}: {w['cycles_per_image']} cycles per image",
                  f"  {'engine':<10}{'mode':<14}{'jobs':>5}{'images':>8}{'cycles/s':>14}"
                  f"{'vs free-run':>13}{'wall s':>9}{'cores':>7}"]
        for row in w["rows"]:
            rate = row["cycles_per_s"]
            text = f"{rate / 1e6:.3f} M" if rate >= 1e4 else f"{rate:.0f}"
            wall = f"{row['wall_s']:.1f}" if row["wall_s"] is not None else ""
            images = str(row["images"]) if row["images"] is not None else ""
            cores = f"{row['cores']:.2f}" if row.get("cores") is not None else ""
            lines.append(f"  {row['engine']:<10}{row['mode']:<14}{row['jobs']:>5}{images:>8}"
                         f"{text:>14}{row['vs_compiled_free_run']:>12.3f}x{wall:>9}{cores:>7}"
                         .rstrip())
        lines.append("  " + ", ".join(f"{k} {v:.3g}x" for k, v in w["ratios"].items()))
    goals = r["goals"]
    lines.append("goals: " + ", ".join(f"{k} >= {v}" for k, v in goals.items()))
    return "\n".join(lines)
