"""``hwq bench``: benchmarks, apart from the tests.

Timings are ratios measured side by side in one run (the machine is shared and noisy):
each candidate is timed interleaved with its reference, and the median of the repeats is
reported. Every benchmark prints a table and writes JSON.

Subcommands
-----------
golden
    the golden model's int8 conv 3x3 (64 -> 64 channels, 32x32, batch 8) against PyTorch's
    float32 conv on the same shapes.
sim
    simulation speed on the digits test set and a VGG-small-like network
    (:mod:`hwq.sim.bench_sim`): the compiled backend end to end in one process and with
    ``--jobs`` workers, against its own free-running clock; cocotb end to end and
    free-running; Amaranth's Python simulator.
tq, joint
    Transform Quantization (accuracy vs average bits per transform, with and without
    retraining) and joint sparsity-quantization (accuracy vs compression ratio).
hw
    resources and Fmax of the PE arrays and cores with Yosys and nextpnr (:mod:`hwq.rtl.bench_hw`).
asic
    the PE arrays on a standard-cell library with Yosys and OpenSTA (:mod:`hwq.rtl.bench_asic`;
    not part of ``all``: it needs OpenSTA and a library).
all
    every benchmark above at a size that fits about 15 minutes on a 2-core machine (``--full``
    for the complete sweeps); one ``all.json`` with every figure and ``summary.md``.
quant
    the quantization results table on digits: accuracy at 2..5 weight bits of every
    ``hwq.quant`` method (post-training and at an equal retraining budget) and the Brevitas
    peer, mean/std/min/max over seeds; also writes a Markdown table and a plot
    (:mod:`hwq.quant.bench_quant`).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwq import __version__
from hwq.config import integer, positive_number, positive_seconds
from hwq.serialize import atomic_write

DEFAULT_OUT = Path("bench-results")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    a = sub.add_parser("all", help="every benchmark; one JSON and a Markdown summary")
    a.add_argument("--full", action="store_true",
                   help="the complete sweeps (seeds, bits, shapes): much longer than 15 min")
    a.add_argument("--skip", nargs="+", default=[], choices=list(SECTIONS),
                   help="leave these benchmarks out")
    a.add_argument("--hw-timeout", type=positive_seconds, default=None, metavar="S",
                   help="hw section: stop a point's tool run after S seconds (recorded)")
    a.add_argument("--hw-cores", action="store_true",
                   help="hw section: also place and route the three 8x8 cores (4-6 min of "
                        "nextpnr each; the standard size has the arrays only)")
    t = sub.add_parser("tq", help="transform quantization: accuracy vs average bits")
    t.add_argument("--seeds", type=integer(0), nargs="+", default=None, metavar="SEED",
                   help="TQ seeds (calibration subset, projections, training order) on the "
                        "one reference fp32 model (default 0 1 2)")
    t.add_argument("--model-seeds", type=integer(0), nargs="+", default=None, metavar="SEED",
                   help="instead of --seeds: one fp32 model per seed, trained with that seed "
                        "(cached next to the reference; seed 0 is the reference) and "
                        "quantized with TQ seed = that seed; mean/std over models")
    t.add_argument("--bits", type=positive_number(), nargs="+", default=[2.0, 3.0],
                   help="TQ target average bits, basis included (default 2.0 3.0)")
    t.add_argument("--retrain-epochs", type=integer(0), nargs="+", default=[0, 3], metavar="E",
                   help="retraining budgets in epochs, 0 = post-training (default 0 3)")
    j = sub.add_parser("joint", help="joint sparsity-quantization: accuracy vs compression")
    j.add_argument("--seeds", type=integer(0), nargs="+", default=[0, 1, 2])
    j.add_argument("--compressions", type=positive_number(), nargs="+",
                   default=[10, 25, 50, 100])
    h = sub.add_parser("hw", help="resources and Fmax of arrays and cores (Yosys, nextpnr)")
    h.add_argument("--full", action="store_true",
                   help="shapes 4/8/16 x weight bits 2/4/8 (default: 8x8 at 4 bits + cores)")
    h.add_argument("--jobs", type=integer(1), default=None,
                   help="tool runs at once (default: CPU count, at most 4)")
    h.add_argument("--timeout", type=positive_seconds, default=None, metavar="S",
                   help="stop a point's tool run after S seconds (the row records it)")
    g = sub.add_parser("golden", help="golden int8 conv vs torch float32 conv (time ratio)")
    g.add_argument("--repeats", type=integer(1), default=15,
                   help="timed runs of each (default 15)")
    g.add_argument("--batch", type=integer(1), default=8)
    g.add_argument("--channels", type=integer(1), default=64)
    g.add_argument("--size", type=integer(1), default=32, help="input height and width")
    sm = sub.add_parser("sim", help="simulation speed: compiled, cocotb, Amaranth, --jobs")
    sm.add_argument("--pe", default="shift_add", choices=["shift_add", "bit_serial", "multiply"])
    sm.add_argument("--images", type=integer(0, 540), default=540,
                    help="digits test images per compiled run (default all 540; 0: skip)")
    sm.add_argument("--large-images", type=integer(0), default=50,
                    help="VGG-small-like 3x32x32 images per compiled run (default 50; 0: skip)")
    sm.add_argument("--jobs", type=integer(2), default=2,
                    help="worker processes of the parallel compiled runs (default 2)")
    sm.add_argument("--repeats", type=integer(1), default=3,
                    help="compiled runs of each kind, interleaved; medians (default 3)")
    sm.add_argument("--amaranth-images", type=integer(0), default=1,
                    help="digits images on Amaranth's simulator (default 1, about a minute; "
                         "0: skip)")
    q = sub.add_parser("quant", help="accuracy table of the quantization methods on digits")
    q.add_argument("--bits", type=integer(2, 8), nargs="+", default=None,
                   help="weight bit widths (default 2 3 4 5; --quick: 3 4)")
    q.add_argument("--seeds", type=integer(0), nargs="+", default=None,
                   help="seeds (default 0 1 2; --quick: 0)")
    q.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="rows (default all): uniform pot slq-ptq uniform-qat inq slq mlq")
    q.add_argument("--epochs", type=integer(1), default=None,
                   help="retraining budget per run in epochs (default 24; --quick: 3)")
    q.add_argument("--no-peers", dest="peers", action="store_false",
                   help="skip the Brevitas peer rows")
    q.add_argument("--quick", action="store_true",
                   help="smoke test: one seed, bits 3 and 4, 3 epochs")
    asic = sub.add_parser("asic", help="PE arrays on a standard-cell library (Yosys, OpenSTA): "
                                       "area, Fmax, energy per MAC")
    asic.add_argument("--liberty", metavar="PATH", default=None,
                      help="Liberty library (default osu018; osu035, a .lib path)")
    asic.add_argument("--no-fpga", action="store_true",
                      help="leave out the ECP5 LUT/DSP columns (Yosys synth_ecp5)")
    asic.add_argument("--jobs", type=integer(1), default=2, help="points at once (default 2)")
    asic.add_argument("--timeout", type=positive_seconds, default=None, metavar="S",
                      help="stop a point's tool run after S seconds (the row records it)")
    for p in (g, sm, q, a, t, j, h, asic):
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        p.add_argument("-o", "--out", type=Path, default=None,
                       help=f"JSON result file (default {DEFAULT_OUT}/<bench>.json)")


def run(args: argparse.Namespace) -> int:
    from hwq.cli import check_output, emit

    out = check_output(args.out or DEFAULT_OUT / f"{args.bench}.json", "-o/--out")
    if args.bench == "golden":
        result = bench_golden(repeats=args.repeats, batch=args.batch, channels=args.channels,
                              size=args.size)
        text = format_golden(result)
    elif args.bench == "sim":
        from hwq.sim.bench_sim import bench_sim, format_sim

        result = bench_sim(pe=args.pe, images=args.images, large_images=args.large_images,
                           jobs=args.jobs, repeats=args.repeats,
                           amaranth_images=args.amaranth_images)
        text = format_sim(result)
    elif args.bench == "quant":
        from hwq.quant.bench_quant import (
            DEFAULT_BITS,
            DEFAULT_EPOCHS,
            DEFAULT_SEEDS,
            QUICK,
            bench_quant,
            format_quant,
        )

        def pick(value: Any, name: str, default: Any) -> Any:
            return value if value is not None else QUICK[name] if args.quick else default

        result = bench_quant(bits=pick(args.bits, "bits", DEFAULT_BITS),
                             seeds=pick(args.seeds, "seeds", DEFAULT_SEEDS),
                             methods=args.methods, peers=args.peers,
                             epochs=pick(args.epochs, "epochs", DEFAULT_EPOCHS),
                             out=args.out or DEFAULT_OUT / "quant.json", progress=True)
        files = result["files"]
        text = format_quant(result) + "\n\nwrote " + ", ".join(
            str(f) for k, f in files.items() if k != "json" and f)
    elif args.bench == "all":
        result = bench_all(full=args.full, skip=args.skip, hw_timeout=args.hw_timeout,
                           hw_cores=args.hw_cores)
        text = result.pop("_text")
    elif args.bench == "asic":  # hwq.rtl.bench_asic
        from hwq.rtl.bench_asic import bench_asic, format_table

        result = bench_asic(liberty=args.liberty, fpga=not args.no_fpga, jobs=args.jobs,
                            timeout=args.timeout, out=args.out.parent if args.out else DEFAULT_OUT)
        text = format_table(result["rows"])
    elif args.bench in ("tq", "joint", "hw"):
        folder = args.out.parent if args.out else DEFAULT_OUT
        if args.bench == "hw":
            result, text = _hw_section(full=args.full, out_dir=folder, jobs=args.jobs,
                                       timeout=args.timeout)
        elif args.bench == "tq":
            result, text = _tq_section(
                full=True, out_dir=folder, bits=tuple(args.bits),
                seeds=None if args.seeds is None else tuple(args.seeds),
                model_seeds=None if args.model_seeds is None else tuple(args.model_seeds),
                retrain_epochs=tuple(args.retrain_epochs))
        else:
            result, text = _joint_section(full=True, out_dir=folder, seeds=tuple(args.seeds),
                                          compressions=tuple(args.compressions))
    else:  # pragma: no cover - argparse restricts the choices
        raise ValueError(f"Unknown benchmark {args.bench!r}")
    atomic_write(out, (json.dumps(result, indent=2) + "\n").encode())
    emit(args, result, text + f"\nwrote {out}")
    return 0


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, round-robin, after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def bench_golden(*, repeats: int = 15, batch: int = 8, channels: int = 64,
                 size: int = 32) -> dict[str, Any]:
    """Golden int8 conv2d 3x3 (pad 1) vs torch float32 conv2d on the same shapes."""
    import torch

    from hwq import golden
    from hwq.golden.gemm import matmul_dtype

    for name, v in (("repeats", repeats), ("batch", batch), ("channels", channels),
                    ("size", size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"Benchmark {name} must be a positive integer, not {v!r}")
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(batch, channels, size, size), dtype=np.int64)
    w = rng.integers(-128, 128, size=(channels, channels, 3, 3), dtype=np.int64)
    bias = rng.integers(-1000, 1000, size=channels)
    m = golden.multiplier_from_scale(np.full(channels, 1 / 3000))
    xt = torch.from_numpy(x.astype(np.float32))
    wt = torch.from_numpy(w.astype(np.float32))
    # correctness first: the benchmarked call is exact
    acc = golden.conv2d(x, w, padding=1)
    ref = torch.nn.functional.conv2d(xt.double(), wt.double(), padding=1).numpy()
    np.testing.assert_array_equal(acc, ref.astype(np.int64))

    times = _interleaved(
        {
            "golden_conv": lambda: golden.conv2d(x, w, padding=1),
            "golden_conv_requant": lambda: golden.requantize(
                golden.conv2d(x, w, padding=1), bias, m.M, m.S, lo=-128, hi=127),
            "torch_float32_conv": lambda: torch.nn.functional.conv2d(xt, wt, padding=1),
        },
        repeats,
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "bench": "golden",
        "what": f"int8 conv2d 3x3 pad 1, {channels}->{channels} channels, {size}x{size}, "
                f"batch {batch}",
        "reference": "torch.nn.functional.conv2d, float32, same shapes, same process",
        "gemm_dtype": str(matmul_dtype(channels * 9, 128, 128)),
        "median_s": med,
        "ratio_golden_vs_torch": med["golden_conv"] / med["torch_float32_conv"],
        "ratio_golden_requant_vs_torch": med["golden_conv_requant"] / med["torch_float32_conv"],
        "goal_ratio": 3.0,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "hwq_version": __version__,
    }


def format_golden(r: dict[str, Any]) -> str:
    med = r["median_s"]
    return "\n".join([
        f"golden benchmark: {r['what']}",
        f"  golden conv (exact, {r['gemm_dtype']} GEMM) {med['golden_conv'] * 1e3:8.2f} ms",
        f"  golden conv + requant          {med['golden_conv_requant'] * 1e3:8.2f} ms",
        f"  torch float32 conv             {med['torch_float32_conv'] * 1e3:8.2f} ms",
        f"  ratio golden / torch: {r['ratio_golden_vs_torch']:.2f}x "
        f"(with requant {r['ratio_golden_requant_vs_torch']:.2f}x; goal <= {r['goal_ratio']}x), "
        f"median of {r['repeats']}",
    ])


# --------------------------------------------------------------------------- hwq bench all
def _golden_section(*, full: bool, out_dir: Path, **_: Any) -> tuple[dict, str]:
    r = bench_golden(repeats=15)
    return r, format_golden(r)


def _sim_section(*, full: bool, out_dir: Path, **_: Any) -> tuple[dict, str]:
    from hwq.sim.bench_sim import bench_sim, format_sim

    r = bench_sim(images=540, large_images=100 if full else 20, repeats=3 if full else 1)
    return r, format_sim(r)


def _quant_section(*, full: bool, out_dir: Path, **_: Any) -> tuple[dict, str]:
    from hwq.quant.bench_quant import bench_quant, format_quant

    r = bench_quant(bits=(2, 3, 4, 5) if full else (2, 4), seeds=(0, 1, 2),
                    out=out_dir / "quant.json", progress=True)
    return r, format_quant(r)


def _tq_section(*, full: bool, out_dir: Path, seeds: tuple[int, ...] | None = None,
                bits: tuple[float, ...] | None = None,
                model_seeds: tuple[int, ...] | None = None,
                retrain_epochs: tuple[int, ...] = (0, 3), **_: Any) -> tuple[dict, str]:
    from hwq.quant.bench_tq import bench_tq, format_tq

    if seeds is None and model_seeds is None:
        seeds = (0, 1, 2) if full else (0,)
    r = bench_tq(bits=bits or ((2.0, 3.0) if full else (2.0,)), seeds=seeds,
                 model_seeds=model_seeds, retrain_epochs=retrain_epochs, out_dir=out_dir,
                 progress=True)
    return r, format_tq(r)


def _joint_section(*, full: bool, out_dir: Path, seeds: tuple[int, ...] | None = None,
                   compressions: tuple[float, ...] | None = None, **_: Any) -> tuple[dict, str]:
    from hwq.quant.bench_joint import bench_joint, format_joint

    r = bench_joint(compressions=compressions or ((10, 25, 50, 100) if full else (25, 50)),
                    seeds=seeds or ((0, 1, 2) if full else (0,)), out_dir=out_dir,
                    progress=True)
    return r, format_joint(r)


def _hw_section(*, full: bool, out_dir: Path, jobs: int | None = None,
                timeout: float | None = None, cores: bool = True,
                **_: Any) -> tuple[dict, str]:
    from hwq.rtl.bench_hw import bench_hw, format_table

    r = bench_hw(quick=not full, out=out_dir, jobs=jobs, timeout=timeout, cores=cores)
    return r, format_table(r["rows"])


#: name -> runner(full=, out_dir=) -> (result, text); the order of ``hwq bench all``.
SECTIONS: dict[str, Callable[..., tuple[dict, str]]] = {
    "golden": _golden_section, "sim": _sim_section, "quant": _quant_section,
    "tq": _tq_section, "joint": _joint_section, "hw": _hw_section,
}


def bench_all(*, full: bool = False, skip: list[str] | tuple[str, ...] = (),
              out_dir: Path = DEFAULT_OUT, hw_timeout: float | None = None,
              hw_cores: bool = False) -> dict[str, Any]:
    """Every benchmark; returns ``{section: result}`` and writes ``summary.md``.

    A section that fails is recorded with its error and the others still run;
    ``hw_timeout`` bounds each tool run of the hw section (a point over it is a row with
    its error). The hw section has the 8x8 arrays; ``hw_cores`` (or ``full``) adds the
    three 8x8 cores, whose place and route alone takes ~12 minutes on 2 cores cold.
    """
    unknown = sorted(set(skip) - set(SECTIONS))
    if unknown:
        raise ValueError(f"Unknown benchmark(s) {unknown}; allowed: {', '.join(SECTIONS)}")
    results: dict[str, Any] = {"bench": "all", "full": full, "hwq_version": __version__,
                               "sections": {}}
    texts = [f"# hwq benchmarks ({'full' if full else 'standard'} size)", ""]
    t_start = time.perf_counter()
    for name, runner in SECTIONS.items():
        if name in skip:
            continue
        print(f"[bench] {name} ...", file=sys.stderr)
        t0 = time.perf_counter()
        try:
            extra = ({"timeout": hw_timeout, "cores": hw_cores or full} if name == "hw"
                     else {})
            result, text = runner(full=full, out_dir=out_dir, **extra)
        except Exception as exc:  # one broken section must not lose the others' figures
            result, text = {"error": f"{type(exc).__name__}: {exc}"}, f"FAILED: {exc}"
        result["seconds"] = time.perf_counter() - t0
        results["sections"][name] = result
        texts += [f"## {name} ({result['seconds']:.0f} s)", "", "```", text, "```", ""]
    results["seconds"] = time.perf_counter() - t_start
    texts.append(f"total {results['seconds']:.0f} s")
    summary = "\n".join(texts) + "\n"
    atomic_write(out_dir / "summary.md", summary.encode())
    results["_text"] = summary
    return results
