"""``hwq bench``: the command line of the benchmarks (see :mod:`hwq.bench`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hwq.arguments import add_pack_argument, integer, positive_number, positive_seconds
from hwq.bench import DEFAULT_OUT
from hwq.bench.all import SECTIONS, _hw_section, _joint_section, _tq_section, bench_all
from hwq.bench.golden import bench_golden, format_golden
from hwq.bench.util import NETWORKS
from hwq.config import PE_TYPES
from hwq.serialize import atomic_write
from hwq.workloads import WORKLOADS


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
    t.add_argument("--model", default="digits", choices=list(WORKLOADS),
                   help="the workload whose pretrained model(s) and data are quantized "
                        "(default digits)")
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
    t.add_argument("--resume", action="store_true",
                   help="keep the runs already in the output folder's tq.json (an "
                        "interrupted bench with the same settings; it is written after every "
                        "run) and run only the missing ones")
    t.add_argument("--jobs", type=integer(1), default=1, metavar="N",
                   help="N worker processes, one per (seed, transform) analysis with its runs "
                        "or per seed's baselines (default 1); the same runs as with 1")
    j = sub.add_parser("joint", help="joint sparsity-quantization: accuracy vs compression")
    j.add_argument("--model", default="digits", choices=list(WORKLOADS),
                   help="the workload whose pretrained model and data are compressed "
                        "(default digits)")
    j.add_argument("--seeds", type=integer(0), nargs="+", default=[0, 1, 2])
    j.add_argument("--compressions", type=positive_number(), nargs="+", default=None,
                   help="target ratios (default: digits 10 25 50 100; lenet5 250 500 1000 "
                        "2000 4000)")
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
    q = sub.add_parser("quant", help="accuracy table of the quantization methods on a workload")
    q.add_argument("--model", default="digits", choices=list(WORKLOADS),
                   help="the workload whose pretrained model and data are quantized "
                        "(default digits)")
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
    q.add_argument("--resume", action="store_true",
                   help="keep the runs already in the output file (an interrupted bench with "
                        "the same settings) and run only the missing ones")
    q.add_argument("--jobs", type=integer(1), default=1, metavar="N",
                   help="runs at once in N worker processes, one torch thread each (default "
                        "1); the runs and the file are the same as with 1")
    u = sub.add_parser("util", help="MAC utilization per layer of the reference networks "
                                     "(cycle model)")
    u.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS),
                   help="workloads (default all)")
    u.add_argument("--pe", nargs="+", default=list(PE_TYPES), choices=list(PE_TYPES),
                   help="PE types (default all)")
    u.add_argument("--lanes", type=integer(1), default=8)
    u.add_argument("--simd", type=integer(1), default=8)
    u.add_argument("--bits", type=integer(2, 7), default=4,
                   help="weight bits of the post-training quantization (default 4)")
    add_pack_argument(u)
    u.add_argument("--fmax", type=positive_number(), default=None, metavar="MHZ",
                   help="clock for inferences/s where the hw results have no routed Fmax")
    u.add_argument("--hw-json", type=Path, default=DEFAULT_OUT / "hw.json",
                   help=f"hwq bench hw results to take the routed Fmax from "
                        f"(default {DEFAULT_OUT}/hw.json)")
    asic = sub.add_parser("asic", help="PE arrays on a standard-cell library (Yosys, OpenSTA): "
                                       "area, Fmax, energy per MAC")
    asic.add_argument("--liberty", metavar="PATH", default=None,
                      help="Liberty library (default osu018; osu035, a .lib path)")
    asic.add_argument("--no-fpga", action="store_true",
                      help="leave out the ECP5 LUT/DSP columns (Yosys synth_ecp5)")
    asic.add_argument("--jobs", type=integer(1), default=2, help="points at once (default 2)")
    asic.add_argument("--timeout", type=positive_seconds, default=None, metavar="S",
                      help="stop a point's tool run after S seconds (the row records it)")
    asic.add_argument("--networks", nargs="*", default=["digits", "lenet5"], metavar="NAME",
                      help="built-in workloads whose whole 8x8 cores get a row per PE type: "
                           "area, Fmax, inferences/s, energy per inference from measured "
                           "toggle rates (default digits lenet5; none: --networks)")
    asic.add_argument("--images", type=integer(1), default=50,
                      help="test images of each network run for the toggle rates (default 50)")
    off = sub.add_parser("offchip", help="weights streamed from external memory: bytes, "
                                         "cycles lost (Verilator)")
    off.add_argument("--networks", nargs="+", default=None, metavar="NET",
                     help="digits, lenet5, resnet8, sepnet, vgg11 (default digits lenet5 "
                          "resnet8 vgg11)")
    off.add_argument("--pe", nargs="+", default=list(PE_TYPES), choices=list(PE_TYPES),
                     help="PE types (default all)")
    off.add_argument("--images", type=integer(1), default=2, help="test images per run "
                                                                  "(default 2)")
    off.add_argument("--ext-bits", type=int, choices=(32, 64, 128), default=64,
                     help="m_axi data width (default 64)")
    off.add_argument("--latency", type=integer(1), default=4,
                     help="memory latency in cycles (default 4)")
    off.add_argument("--act-depth", type=integer(16, 1 << 20), default=None, metavar="WORDS",
                     help="an activation memory of WORDS words, the tensors that do not fit in "
                          "external memory too (default: every tensor on chip)")
    for p in (g, sm, q, a, t, j, h, u, asic, off):
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
        from hwq.bench.sim import bench_sim, format_sim

        result = bench_sim(pe=args.pe, images=args.images, large_images=args.large_images,
                           jobs=args.jobs, repeats=args.repeats,
                           amaranth_images=args.amaranth_images)
        text = format_sim(result)
    elif args.bench == "quant":
        from hwq.bench.quant import (
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
                             out=args.out or DEFAULT_OUT / "quant.json", progress=True,
                             workload=args.model, resume=args.resume, jobs=args.jobs)
        files = result["files"]
        text = format_quant(result) + "\n\nwrote " + ", ".join(
            str(f) for k, f in files.items() if k != "json" and f)
    elif args.bench == "util":
        from hwq.bench.util import bench_util, format_util

        result = bench_util(networks=tuple(args.networks), pes=tuple(args.pe), lanes=args.lanes,
                            simd=args.simd, bits=args.bits, fmax=args.fmax,
                            hw_json=args.hw_json, pack=args.pack, depthwise=args.depthwise)
        text = format_util(result)
    elif args.bench == "offchip":
        from hwq.bench.offchip import NETWORKS as OFFCHIP
        from hwq.bench.offchip import bench_offchip, format_offchip

        result = bench_offchip(networks=tuple(args.networks or OFFCHIP), pes=tuple(args.pe),
                               images=args.images, ext_bits=args.ext_bits,
                               latency=args.latency, act_depth=args.act_depth)
        text = format_offchip(result)
    elif args.bench == "all":
        result = bench_all(full=args.full, skip=args.skip, hw_timeout=args.hw_timeout,
                           hw_cores=args.hw_cores)
        text = result.pop("_text")
    elif args.bench == "asic":  # hwq.bench.asic
        from hwq.bench.asic import bench_asic, format_table
        from hwq.bench.asic_networks import format_networks

        result = bench_asic(liberty=args.liberty, fpga=not args.no_fpga, jobs=args.jobs,
                            timeout=args.timeout, out=args.out.parent if args.out else DEFAULT_OUT,
                            networks=args.networks, images=args.images)
        text = format_table(result["rows"])
        if result["networks"]:
            text += "\n\n" + format_networks(result["networks"])
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
                retrain_epochs=tuple(args.retrain_epochs), workload=args.model,
                resume=args.resume, jobs=args.jobs)
        else:
            result, text = _joint_section(
                full=True, out_dir=folder, seeds=tuple(args.seeds), workload=args.model,
                compressions=None if args.compressions is None else tuple(args.compressions))
    else:  # pragma: no cover - argparse restricts the choices
        raise ValueError(f"Unknown benchmark {args.bench!r}")
    atomic_write(out, (json.dumps(result, indent=2) + "\n").encode())
    emit(args, result, text + f"\nwrote {out}")
    return 0
