"""``hwq sim``: run a quantized network (or a compiled Program) on the simulated core.

The outputs are compared bit for bit with the golden model and the per-layer cycle counters
with the cycle model; exit 1 if either differs.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hwq.arguments import add_memory_arguments, add_pack_argument, integer, memory_from_arguments
from hwq.config import DSP_KINDS, PE_TYPES, CoreConfig
from hwq.golden._checks import signed_range
from hwq.hardware import pe_for_formats
from hwq.sim.simulate import add_arguments as add_simulate_arguments
from hwq.sim.simulate import memory_lines, memory_report

#: Most random inputs ``--limit`` takes (an int64 array of them is built up front).
MAX_RANDOM_INPUTS = 100_000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", type=Path,
                        help="a QuantizedNetwork (.safetensors from hwq quantize) or a Program")
    parser.add_argument("--pe", choices=PE_TYPES, default=None,
                        help="PE type (default: the one the network's weight format needs; "
                             "a network only)")
    lanes, simd = CoreConfig.INT_FIELDS["lanes"], CoreConfig.INT_FIELDS["simd"]
    parser.add_argument("--lanes", type=integer(*lanes[1:]), default=None,
                        help="output channels in parallel (default 8; a network only)")
    parser.add_argument("--simd", type=integer(*simd[1:]), default=None,
                        help="inputs per lane per cycle (default 8; a network only)")
    parser.add_argument("--dsp", choices=DSP_KINDS, default=None,
                        help="multipliers: inferred, or ecp5 MULT18X18D blocks (default: "
                             "inferred, or a program's own)")
    parser.add_argument("--inputs", default="digits", metavar="{digits,random,FILE}",
                        help="digits test images (1x8x8 networks), random integers, or your "
                             "own images: FILE.npy (N, *input shape; float images are quantized "
                             "with the network's input scale, integer arrays run as they are) "
                             "or FILE.npz (x_test, y_test or x, y: also reports accuracy)")
    parser.add_argument("--limit", type=integer(1), default=None, metavar="N",
                        help="number of inputs (default 32, a file: all of it; digits: at most "
                             f"540, random: at most {MAX_RANDOM_INPUTS})")
    parser.add_argument("--seed", type=integer(0), default=None,
                        help="seed of --inputs random (default 0)")
    parser.add_argument("--waves", nargs="?", const="vcd", default=None, choices=["vcd", "fst"],
                        help="record a waveform (vcd, or fst)")
    add_simulate_arguments(parser)
    add_memory_arguments(parser)
    add_pack_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cache-dir", type=Path, default=None, help="Verilator build cache")
    parser.add_argument("--free-run", action="store_true",
                        help="also time the same build free-running (200k more cycles)")


def _pe_for(network) -> str:
    """The first PE type that takes every weight format of ``network`` (bit_serial when none
    does: the compiler then names the layer the PE refuses)."""
    return pe_for_formats({op.spec.kind for op in network.weight_ops()}) or "bit_serial"


def run(args: argparse.Namespace) -> int:
    from hwq import golden, serialize
    from hwq.cli import emit
    from hwq.layout.compiler import compile as compile_network
    from hwq.layout.compiler import core_config
    from hwq.layout.program import Program
    from hwq.sim import simulate

    if not args.network.is_file():
        raise FileNotFoundError(f"No network file at {args.network}")
    _check_options(args)
    places, ext_fields, memory = memory_from_arguments(args, args.backend)
    network = None
    if _is_program(args.network):
        program = Program.load(args.network)
        given = [f"--{name.replace('_', '-')}" for name in ("pe", "lanes", "simd", "ext_bits",
                                                            "ext_burst", "ext_outstanding",
                                                            "act_depth")
                 if getattr(args, name) is not None]
        given += [f"--{name}" for name, place in places.items() if place != "auto"]
        given += ["--pack"] if args.pack != "off" else []
        given += ["--depthwise"] if args.depthwise != "off" else []
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(f"{' and '.join(given)} {verb} to a network, not to the Program "
                             f"{args.network} (it holds its own core config)")
    else:
        network = serialize.load(args.network)  # says why the network does not load
    if network is not None:
        pe = args.pe or _pe_for(network)
        config = core_config(network, pe=pe, lanes=args.lanes or 8, simd=args.simd or 8,
                             dsp=args.dsp or "inferred", pack=args.pack,
                             depthwise=args.depthwise, **places,
                             **ext_fields)
        program = compile_network(network, config, **places)
    else:
        config = replace(program.config, dsp=args.dsp) if args.dsp else program.config
    x, labels = _inputs(args, program, network)
    sim = simulate(program, config, x, backend=args.backend, jobs=args.jobs,
                   waves=args.waves or False, progress=not args.no_progress,
                   cache_dir=args.cache_dir, free_run=args.free_run, memory=memory)
    expected = golden.run(network, x) if network is not None else None
    mismatches = int((sim.outputs != expected).sum()) if expected is not None else None
    bad_layers = sim.cycle_model_mismatches()
    ok = not bad_layers and not mismatches
    accuracy = (None if labels is None else
                float((sim.outputs.reshape(len(x), -1).argmax(axis=1) == labels).mean() * 100))
    data: dict[str, Any] = {
        "ok": ok,
        "network": str(args.network),
        "core": program.config.to_dict(),
        "inputs": int(x.shape[0]),
        "mismatches": mismatches,
        "compared_with": "hwq.golden.run" if expected is not None else None,
        "accuracy": accuracy,
        "cycles_per_inference": float(sim.cycles.mean()),
        "layer_cycles": dict(zip(sim.layer_names, sim.layer_cycles[0].tolist(), strict=True)),
        "model_layer_cycles": dict(zip(sim.layer_names, sim.model_layer_cycles.tolist(),
                                       strict=True)),
        "cycle_model_mismatches": bad_layers,
        "memory": memory_report(program, sim, memory),
        "backend": sim.backend,
        "jobs": sim.jobs,
        "sim_cycles_per_s": sim.sim_cycles_per_s,
        "free_run_cycles_per_s": sim.free_run_cycles_per_s,
        "build_seconds": sim.build_seconds,
        "build_cached": sim.build_cached,
        "waves_file": sim.waves_file,
        "outputs": sim.outputs.tolist(),
    }
    lines = [f"hwq sim: {args.network} on {program.config.pe} "
             f"{program.config.lanes}x{program.config.simd}, {x.shape[0]} inputs",
             f"  {'layer':<12}{'cycles':>10}{'model':>10}"]
    for name, c, m in zip(sim.layer_names, sim.layer_cycles[0].tolist(),
                          sim.model_layer_cycles.tolist(), strict=True):
        lines.append(f"  {name:<12}{c:>10}{m:>10}{'' if c == m else '  DIFFERENT'}")
    lines.append(f"  outputs differing from golden: {mismatches}" if expected is not None
                 else "  (a Program alone: no golden network to compare with)")
    if accuracy is not None:
        lines.append(f"  accuracy on the file's labels: {accuracy:.2f} %")
    lines += memory_lines(data["memory"])
    lines.append(f"  {sim.sim_cycles_per_s / 1e3:.0f} k cycles/s end to end"
                 + (f", {sim.free_run_cycles_per_s / 1e3:.0f} k free-running"
                    if sim.free_run_cycles_per_s else "")
                 + f" ({sim.backend}, {sim.jobs} process{'es' if sim.jobs > 1 else ''})")
    if sim.waves_file:
        lines.append(f"  waveform: {sim.waves_file}")
    lines.append("ok" if ok else "FAILED")
    emit(args, data, "\n".join(lines))
    return 0 if ok else 1


def _is_program(path: Path) -> bool:
    """Whether ``path`` starts like a Program container (else it is read as a network)."""
    from hwq.layout.program import MAGIC

    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _check_options(args: argparse.Namespace) -> None:
    """Refuse values and combinations that do not apply, before loading anything."""
    from hwq.cli import check_output
    from hwq.workloads.digits import TEST_SIZE

    if args.inputs == "digits":
        if args.limit is not None and args.limit > TEST_SIZE:
            raise ValueError(f"--limit must be in 1..{TEST_SIZE} with --inputs digits (the "
                             f"digits test images), not {args.limit}")
    elif args.inputs == "random":
        if args.limit is not None and args.limit > MAX_RANDOM_INPUTS:
            raise ValueError(f"--limit must be in 1..{MAX_RANDOM_INPUTS} with --inputs random, "
                             f"not {args.limit}")
    elif Path(args.inputs).suffix not in (".npy", ".npz"):
        raise ValueError(f"--inputs must be digits, random, FILE.npy or FILE.npz, not "
                         f"{args.inputs!r}")
    elif not Path(args.inputs).is_file():
        raise ValueError(f"No inputs file at {args.inputs}")
    if args.seed is not None and args.inputs != "random":
        raise ValueError(f"--seed applies to --inputs random, not to --inputs {args.inputs}")
    if args.cache_dir is not None:
        check_output(args.cache_dir, "--cache-dir", folder=True)


def _inputs(args: argparse.Namespace, program, network) -> tuple[np.ndarray, np.ndarray | None]:
    """The integer inputs of the run and their labels (an ``.npz`` file's), or None."""
    from hwq import golden

    shape = tuple(program.input.shape)
    if args.inputs == "random":
        rng = np.random.default_rng(args.seed or 0)
        lo, hi = signed_range(program.config.act_bits)
        return rng.integers(lo, hi + 1, size=(args.limit or 32, *shape), dtype=np.int64), None
    if args.inputs == "digits":
        from hwq.workloads import digits

        data = digits.load_data()
        images, labels, what = data.x_test[: args.limit or 32], None, "--inputs digits"
    else:
        from hwq.workloads.user import load_arrays

        raw = np.load(args.inputs, allow_pickle=False) if args.inputs.endswith(".npy") else None
        if raw is not None and raw.dtype.kind in "iu":  # integer inputs: not converted
            images, labels = raw, None
        else:
            data = load_arrays(args.inputs)  # float images, checked (finite, (N, ...))
            images, labels = ((data.numpy(), None) if raw is not None
                              else (data.x_test.numpy(), data.y_test.numpy()))
        if args.limit is not None:
            if args.limit > len(images):
                raise ValueError(f"--limit must be in 1..{len(images)} with --inputs "
                                 f"{args.inputs} (its test images), not {args.limit}")
            images = images[: args.limit]
            labels = None if labels is None else labels[: args.limit]
        what = f"--inputs {args.inputs}"
    images = np.asarray(images)
    if network is None and images.dtype.kind not in "iu":
        raise ValueError(f"{what} needs a network (its input scale), not the Program "
                         f"{args.network}; use --inputs random or an integer FILE.npy")
    if images.shape[1:] != shape:
        raise ValueError(f"{what} holds images of shape {images.shape[1:]}; the network takes "
                         f"{shape}")
    if images.dtype.kind in "iu":  # integers as they are, in the activations' range
        lo, hi = signed_range(program.config.act_bits)
        if images.min() < lo or images.max() > hi:
            raise ValueError(f"{what}: integer inputs must be in {lo}..{hi} "
                             f"({program.config.act_bits}-bit activations), not "
                             f"{images.min()}..{images.max()}")
        return images.astype(np.int64), labels
    return golden.quantize_input(images, network.input_scale, network.act_bits), labels
