"""``hwq explore``: a sweep over quantization x core for one model, on Ray, with its Pareto front.

    hwq explore --model lenet5 -o explore/
    hwq explore --model digits --methods inq uniform --bits 2 4 --pe shift_add bit_serial \\
        --lanes 4 8 --simd 8 -o explore/ --budget-luts 20000 --min-accuracy 95
    hwq explore --config sweep.toml --address 127.0.0.1:6379 -o explore/

Each point: accuracy (integer network on hwq.golden, test set), weight storage bits, cycles
per inference (cycle model; ``--sim-check K`` points also run on Verilator), LUT4/FF/CCU2C/
DSP/BRAM and routed Fmax (Yosys + nextpnr on the smallest part that fits, or ``--device``),
inferences/s at Fmax and per kLUT. Results are cached by content: a second run of the same
sweep (or an interrupted one) computes only what is missing. Exit 1 if any point failed or a
simulation check differed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hwq.arguments import integer, positive_number
from hwq.config import PE_TYPES, CoreConfig
from hwq.explore.space import DEFAULTS, WEIGHT_AXIS
from hwq.workloads import WORKLOADS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, choices=list(WORKLOADS),
                        help="the workload (default digits)")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                        help="the sweep as TOML (keys model, methods, bits, pe, lanes, simd, "
                             "seed, sample, weights, ext_bits, mem_latency, target, device); "
                             "flags given here win")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help=f"quantization methods (default {' '.join(DEFAULTS['methods'])})")
    parser.add_argument("--bits", type=integer(1, 8), nargs="+", default=None,
                        help=f"weight bits (default {' '.join(map(str, DEFAULTS['bits']))})")
    parser.add_argument("--pe", nargs="+", default=None, choices=PE_TYPES,
                        help="PE types (default all three)")
    parser.add_argument("--lanes", type=integer(1, 256), nargs="+", default=None,
                        help=f"array lanes (default {' '.join(map(str, DEFAULTS['lanes']))})")
    parser.add_argument("--simd", type=integer(1, 256), nargs="+", default=None,
                        help=f"array simd (default {' '.join(map(str, DEFAULTS['simd']))})")
    parser.add_argument("--seed", type=integer(0), default=None,
                        help="quantization seed, and the seed of --sample (default 0)")
    parser.add_argument("--sample", type=integer(1), default=None, metavar="N",
                        help="a seeded random sample of N points instead of the whole grid")
    parser.add_argument("--weights", nargs="+", default=None, choices=WEIGHT_AXIS,
                        help="where the weights live: every weight on chip, or streamed in "
                             "tiles from external memory over the core's AXI4 master (both: "
                             "each point twice; default onchip)")
    parser.add_argument("--ext-bits", type=int, default=None, choices=CoreConfig.EXT_BITS[1:],
                        help=f"AXI4 data width of the external-weight points (default "
                             f"{DEFAULTS['ext_bits']})")
    parser.add_argument("--mem-latency", type=integer(1, 1 << 20), default=None,
                        help=f"cycles from a read address to its first beat, for the cycles of "
                             f"the external-weight points (default {DEFAULTS['mem_latency']})")
    parser.add_argument("--target", choices=["ecp5", "ice40"], default=None,
                        help="FPGA family of the reports (default ecp5)")
    parser.add_argument("--device", default=None,
                        help="one part for every report (default: the smallest that fits)")
    parser.add_argument("--no-report", action="store_true",
                        help="skip synthesis and place-and-route (no LUTs, Fmax, inferences/s)")
    parser.add_argument("--sim-check", type=integer(0), default=1, metavar="K",
                        help="also run K points (a seeded sample) on Verilator against golden "
                             "and the cycle model (default 1; 0: none)")
    parser.add_argument("--sim-images", type=integer(1), default=8, metavar="N",
                        help="test images per simulation check (default 8)")
    parser.add_argument("--address", default=None,
                        help="join this Ray cluster (host:port of `ray start --head`) instead "
                             "of starting a local Ray")
    parser.add_argument("--budget-luts", type=integer(1), default=None, metavar="N",
                        help="print the fastest point within N LUT-equivalents ...")
    parser.add_argument("--min-accuracy", type=positive_number("%"), default=None, metavar="A",
                        help="... and at least A %% accurate")
    parser.add_argument("--retry", action="store_true",
                        help="recompute the stages whose stored result is an error")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the stage cache (default <HWQ_CACHE_DIR or user cache>/explore)")
    parser.add_argument("--no-plots", action="store_true", help="no PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-o", "--out", type=Path, default=Path("explore"),
                        help="folder for explore.md, .csv, .json and the plots (default "
                             "explore/)")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep: defaults, then the TOML file, then the flags."""
    from hwq.explore.space import check_memory, read_toml

    settings: dict[str, Any] = {"model": "digits", "target": "ecp5", "device": None,
                                **DEFAULTS}
    if args.config is not None:
        settings.update(read_toml(args.config))
    for key in ("model", "methods", "bits", "pe", "lanes", "simd", "seed", "sample", "weights",
                "ext_bits", "mem_latency", "target", "device"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    check_memory(settings["ext_bits"], settings["mem_latency"])
    if settings["model"] not in WORKLOADS:
        raise ValueError(f"Unknown model {settings['model']!r}; allowed: {', '.join(WORKLOADS)}")
    return settings


def run(args: argparse.Namespace) -> int:
    from hwq.cli import check_output, emit
    from hwq.explore.output import format_table, write_outputs
    from hwq.explore.pareto import best, mark_pareto
    from hwq.explore.runner import run_sweep
    from hwq.explore.space import grid

    settings = _settings(args)
    points, skipped = grid(settings["model"], methods=list(settings["methods"]),
                           bits=settings["bits"], pe=list(settings["pe"]),
                           lanes=settings["lanes"], simd=settings["simd"],
                           seed=settings["seed"], sample=settings["sample"],
                           weights=settings["weights"])
    out = check_output(args.out, "-o/--out", folder=True)
    if args.cache_dir is not None:
        check_output(args.cache_dir, "--cache-dir", folder=True)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError("hwq explore runs on Ray: pip install 'hwq[explore]' (or ray)") from None
    sweep = run_sweep(points, target=settings["target"], device=settings["device"],
                      report=not args.no_report, sim_check=args.sim_check,
                      sim_images=args.sim_images, address=args.address,
                      cache_root=None if args.cache_dir is None else str(args.cache_dir),
                      retry=args.retry, progress=not args.no_progress,
                      ext_bits=settings["ext_bits"], mem_latency=settings["mem_latency"])
    rows = sweep.pop("rows")
    objs = mark_pareto(rows)
    budget = {"budget_luts": args.budget_luts, "min_accuracy": args.min_accuracy}
    chosen = (best(rows, budget_luts=args.budget_luts, min_accuracy=args.min_accuracy)
              if any(v is not None for v in budget.values()) else None)
    failed = [r for r in rows if r.get("error")]
    result: dict[str, Any] = {
        "ok": not failed, "model": settings["model"], "settings": settings,
        "points": rows, "skipped": skipped, "objectives": objs,
        "pareto": [r["label"] for r in rows if r.get("pareto")],
        "budget": budget if chosen is not None or any(budget.values()) else None,
        "best": chosen, "failed": len(failed), **sweep,
    }
    files = write_outputs(result, out, plots=not args.no_plots)
    written = [v for v in files.values() if isinstance(v, str)] + files.get("plots", [])
    text = format_table(result) + f"\n\nwrote {', '.join(written)}"
    data = dict(result)
    if failed:
        data["error"] = f"{len(failed)} of {len(rows)} points failed (see their rows)"
    emit(args, data, text)
    return 1 if failed else 0
