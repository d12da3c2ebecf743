"""``hwq flow``: the main job, end to end, checked bit for bit.

A reference model (``--model``: digits by default; lenet5, resnet8, sepnet on real MNIST)
-> quantize (default INQ 4-bit POT for the shift-add core, uniform QAT 4-bit INT for the
bit-serial core, SLQ 4-bit codebook for multiply) -> compile -> Verilog -> Verilator -> its
test set through the host runtime on the simulated core, every output compared with the
golden model, every layer's cycle counter with the cycle model.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwq.arguments import add_memory_arguments, add_pack_argument, integer, memory_from_arguments
from hwq.config import DSP_KINDS, PE_TYPES, CoreConfig
from hwq.golden.memory import MemoryTiming
from hwq.sim.simulate import add_arguments as add_simulate_arguments
from hwq.sim.simulate import memory_lines, memory_report, sim_memory
from hwq.workloads import WORKLOADS, get_workload

#: Default quantization method per PE type: a format that PE takes (bit_serial: INT weights,
#: whose cycles scale with their 4 bits; codebook tables hold 8-bit entries, 8 planes).
DEFAULT_METHOD = {"shift_add": "inq", "bit_serial": "uniform-qat", "multiply": "slq"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, metavar="MODEL",
                        help="a reference workload and its test images: "
                             f"{', '.join(WORKLOADS)} (default digits); or your own model, "
                             "path/to/file.py:function or a torch.export FILE.pt2 (with its "
                             "data, or --data)")
    parser.add_argument("--data", type=Path, default=None, metavar="FILE.npz",
                        help="training and test images and labels (x_train, y_train, x_test, "
                             "y_test, or x, y split 80/20): for your own model, or the test "
                             "images of --network")
    parser.add_argument("--method", default=None,
                        help="quantization method (default: inq for shift_add, "
                             "uniform-qat for bit_serial, slq for multiply)")
    parser.add_argument("--bits", type=float, default=None,
                        help="weight bits (default 4; the method's range)")
    parser.add_argument("--network", type=Path, default=None,
                        help="run this quantized network (.safetensors) instead of quantizing "
                             "(then --method, --bits and --seed do not apply)")
    parser.add_argument("--pe", default="shift_add", choices=PE_TYPES,
                        help="PE type of the core (default shift_add)")
    parser.add_argument("--lanes", type=integer(*CoreConfig.INT_FIELDS["lanes"][1:]), default=8,
                        help="output channels in parallel (default 8)")
    parser.add_argument("--simd", type=integer(*CoreConfig.INT_FIELDS["simd"][1:]), default=8,
                        help="inputs per lane per cycle (default 8)")
    parser.add_argument("--dsp", choices=DSP_KINDS, default="inferred",
                        help="multipliers: inferred, or ecp5 MULT18X18D blocks (default inferred)")
    parser.add_argument("--limit", type=integer(1), default=None, metavar="N",
                        help="only the first N test images (default: all; digits 540, "
                             "MNIST 1000)")
    parser.add_argument("--seed", type=integer(0), default=None,
                        help="quantization seed (default 0)")
    parser.add_argument("--waves", nargs="?", const="vcd", default=None, choices=["vcd", "fst"],
                        help="record a waveform of the simulation (vcd, or fst)")
    add_simulate_arguments(parser)
    parser.add_argument("--report", action="store_true",
                        help="also synthesize and place-and-route the core on ECP5 (Yosys, "
                             "nextpnr; minutes the first time, cached): area and routed Fmax")
    from hwq.rtl.asic import add_arguments

    add_arguments(parser)  # --asic: the hardware report on a standard-cell library
    add_memory_arguments(parser)
    add_pack_argument(parser)
    parser.add_argument("--energy", action="store_true",
                        help="with --report --asic: power and energy per inference from the "
                             "toggle rates of the run's images (a Verilator build that counts "
                             "toggles, then OpenSTA; cached)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="Verilator build cache (default: HWQ_CACHE_DIR or the user cache)")
    parser.add_argument("--free-run", action="store_true",
                        help="also time the same build free-running (200k more cycles)")


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.no_progress:
        print(text, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from hwq.cli import check_output, emit

    if args.network is not None:
        given = [f"--{name}" for name in ("method", "bits", "seed")
                 if getattr(args, name) is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(f"{' and '.join(given)} {verb} when quantizing, not with --network "
                             f"{args.network}")
    if args.cache_dir is not None:
        check_output(args.cache_dir, "--cache-dir", folder=True)
    from hwq.rtl.asic import check_arguments

    check_arguments(args, with_report=args.report)  # before training and simulating
    if args.energy and not (args.report and args.asic):
        raise ValueError("--energy applies with --report --asic (the ASIC report it extends)")
    kept: dict[str, Any] = {}
    places, ext_fields, memory = memory_from_arguments(args, args.backend)
    report = flow(
        model=args.model, data_path=args.data, method=args.method,
        bits=4 if args.bits is None else args.bits,
        network_path=args.network, pe=args.pe, lanes=args.lanes, simd=args.simd, dsp=args.dsp,
        limit=args.limit, seed=args.seed or 0,
        waves=args.waves, free_run=args.free_run, backend=args.backend, jobs=args.jobs,
        progress=not args.no_progress, cache_dir=args.cache_dir,
        log=lambda text: _say(args, text), ext=ext_fields, memory=memory, pack=args.pack,
        depthwise=args.depthwise,
        **places,
        after_run=lambda program, x: kept.update(program=program, x=x),
    )
    text = format_report(report)
    if args.report and args.asic:
        from hwq.rtl.asic import format_asic, report_from_arguments

        _say(args, "[+] hardware report: Yosys + OpenSTA on a standard-cell library (cached)")
        config = CoreConfig.from_dict(report["core"])
        if args.energy:
            from hwq.rtl.asic_energy import format_energy

            hw = report_from_arguments(args, config, energy=(kept["program"], kept["x"]))
            text += "\n" + format_asic(hw) + "\n" + format_energy(hw)
        else:
            hw = report_from_arguments(args, config)
            text += "\n" + format_asic(hw)
        report["hardware"] = hw
    elif args.report:
        from hwq.rtl.report import format_report as format_hw
        from hwq.rtl.report import report as hw_report

        _say(args, "[+] hardware report: Yosys + nextpnr on ECP5 (cached by hash)")
        hw = hw_report(CoreConfig.from_dict(report["core"]))
        report["hardware"] = hw
        text += "\n" + format_hw(hw)
    emit(args, report, text)
    return 0 if report["ok"] else 1


def _network_ops(network, config) -> tuple[int, int]:
    """``(MACs, bit-plane ops)`` per inference that do useful work (nonzero weights).

    A MAC is one nonzero weight x activation product of a layer the MAC array runs (convs,
    linear layers, and the window sums and adds that lower to it); the array offers
    ``lanes x simd`` of them per cycle. A bit-plane op is one 1-bit of a nonzero weight's two's
    complement code at its narrowest width, times an activation: the bit-serial array
    processes every plane holding such a bit, so useful ops / (cycles x lanes x simd) stays at
    most 1 whatever the core skips (zero tiles, zero planes).
    """
    from hwq.layout.compiler import network_cycles

    layers = network_cycles(network, config)
    return (sum(layer.get("macs", 0) for layer in layers),
            sum(layer.get("bit_ops", 0) for layer in layers))


@dataclass(frozen=True, eq=False)
class _Source:
    """Where the flow's float model, data and test images come from: a workload or yours."""

    name: str
    data: Any
    input_shape: tuple[int, ...]
    test_size: int
    choose_hint: str
    method_options: dict[str, dict[str, Any]]
    float_model: Callable[[bool], Any]

    @classmethod
    def resolve(cls, model: str | None, data_path: Path | None,
                network_path: Path | None) -> _Source:
        """Check ``--model``/``--data`` (before any training) and load the data."""
        from hwq.quant.cli import resolve_model
        from hwq.workloads.user import ArrayData, load_arrays

        if model is None and data_path is not None and network_path is not None:
            data = load_arrays(data_path)  # the test images of a saved network
            if not isinstance(data, ArrayData):
                raise ValueError(f"--data {data_path} must be an .npz of x_train, y_train, "
                                 "x_test, y_test (or x, y), not an .npy array")
            return cls(str(data_path), data, tuple(data.x_test.shape[1:]), len(data.x_test),
                       "choose --data", {}, _no_model)
        if model is None:
            model = "digits"
        if model in WORKLOADS and data_path is None:
            workload = get_workload(model)
            return cls(model, workload.load_data(), workload.input_shape, workload.test_size,
                       "choose --model", workload.method_options,
                       lambda progress: workload.pretrained(progress=progress))
        if network_path is not None and model not in WORKLOADS:
            raise ValueError(f"--model {model} applies when quantizing, not with --network "
                             f"{network_path} (give its test images with --data)")
        resolved, data = resolve_model(model, data_path)
        if isinstance(resolved, str):   # a workload with the user's data
            workload = get_workload(resolved)
            return cls(model, data, tuple(data.x_test.shape[1:]), len(data.x_test),
                       "choose --data", workload.method_options,
                       lambda progress: workload.pretrained(progress=progress))
        return cls(model, data, tuple(data.x_test.shape[1:]), len(data.x_test),
                   "choose --data", {}, lambda progress: resolved)


def _no_model(progress: bool) -> Any:
    raise AssertionError("a saved network's flow quantizes nothing")


def flow(
    *,
    model: str | None = None,
    data_path: Path | None = None,
    method: str | None = None,
    bits: int | float = 4,
    network_path: Path | None = None,
    pe: str = "shift_add",
    lanes: int = 8,
    simd: int = 8,
    dsp: str = "inferred",
    limit: int | None = None,
    seed: int = 0,
    waves: str | None = None,
    free_run: bool = False,
    backend: str = "compiled",
    jobs: int | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
    log=print,
    weights: str = "auto",
    activations: str = "auto",
    ext: dict[str, int] | None = None,
    memory: MemoryTiming | None = None,
    pack: str = "off",
    depthwise: str = "off",
    after_run: Callable[[Any, Any], None] | None = None,
) -> dict[str, Any]:
    """Run the whole flow; returns the report (see :func:`format_report`).

    ``model`` names the workload (:data:`hwq.workloads.WORKLOADS`, default digits) whose test
    images run, or is your own model (``path/to/file.py:function`` or a ``.pt2`` file, see
    :func:`hwq.quant.cli.resolve_model`) with its data or ``data_path``'s; with
    ``network_path``, ``data_path`` alone gives the test images. ``backend`` and ``jobs``
    choose the simulator (:func:`hwq.sim.simulate.simulate`). ``weights`` places the
    weights (:data:`hwq.layout.tiling.WEIGHT_PLACES`) and ``activations`` the intermediate
    tensors (:data:`hwq.layout.acttiles.ACT_PLACES`), ``ext`` gives the core's external
    memory port (``ext_bits``, ``ext_burst``, ``ext_outstanding``; ``act_depth``) and
    ``memory`` the simulated memory on it; ``pack`` K packing (``auto``, ``on``, ``off``:
    :func:`hwq.layout.compiler.core_config`) and ``depthwise`` the depthwise mode (likewise);
    ``after_run(program, x)`` receives the compiled Program and the quantized inputs
    after the simulation.
    """
    from hwq import golden, serialize
    from hwq.layout.compiler import compile as compile_network
    from hwq.layout.compiler import core_config
    from hwq.quant.api import quantize
    from hwq.quant.methods import get_method
    from hwq.sim.simulate import check_options, simulate
    if pe not in PE_TYPES:
        raise ValueError(f"PE type must be one of {', '.join(PE_TYPES)}, not {pe!r}")
    check_options(backend=backend, jobs=jobs, waves=waves or False)
    if network_path is None:  # the method and its bits, before the model and the training
        method_name = method or DEFAULT_METHOD[pe]
        spec = get_method(method_name)
        if spec.bits_optional:  # joint: a size budget, which flow has no option for
            raise ValueError(f"Method {method_name!r} needs a size budget, which hwq flow does "
                             "not take: quantize with hwq quantize, then hwq flow --network")
        bits = spec.check_bits(method_name, bits)
        takes = CoreConfig(pe=pe).formats
        if spec.weights not in takes:
            raise ValueError(f"Method {method_name!r} gives {spec.weights.upper()} weights; the "
                             f"{pe} PE takes {' and '.join(f.upper() for f in takes)}")
    elif not Path(network_path).is_file():
        raise FileNotFoundError(f"No network file at {network_path}")
    source = _Source.resolve(model, data_path, network_path)  # runs a file model's function
    if limit is not None and not 1 <= limit <= source.test_size:
        raise ValueError(f"--limit must be in 1..{source.test_size}, not {limit}")
    network = serialize.load(network_path) if network_path is not None else None
    if network is not None and network.input_shape != source.input_shape:
        raise ValueError(f"Network {network_path} takes {network.input_shape} inputs; the "
                         f"{source.name} test images are {source.input_shape} "
                         f"({source.choose_hint})")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    data = source.data
    fp32 = None
    t0 = time.perf_counter()
    if network is not None:
        method_name = str(network.meta.get("method", "file"))
        log(f"[1/4] network {network_path} ({method_name})")
    else:
        from hwq.workloads.train import evaluate

        float_model = source.float_model(progress)
        fp32 = evaluate(float_model, data.x_test, data.y_test)
        method_name = method or DEFAULT_METHOD[pe]
        log(f"[1/4] quantize {source.name}: {method_name} {bits}-bit (fp32 {fp32:.2f}%)")
        result = quantize(float_model, method_name, bits=bits, data=data, seed=seed,
                          progress=progress, **source.method_options.get(method_name, {}))
        network = result.network
    timings["quantize_s"] = time.perf_counter() - t0

    config = core_config(network, pe=pe, lanes=lanes, simd=simd, dsp=dsp, weights=weights,
                         activations=activations, pack=pack, depthwise=depthwise,
                         **(ext or {}))
    t0 = time.perf_counter()
    program = compile_network(network, config, weights=weights, activations=activations)
    timings["compile_s"] = time.perf_counter() - t0
    log(f"[2/4] compiled for {pe} {lanes}x{simd}: {len(program.layers)} layers, "
        f"{program.cycles()} model cycles per inference")

    n = limit or source.test_size
    x = golden.quantize_input(data.x_test[:n].numpy(), network.input_scale, network.act_bits)
    y = data.y_test[:n].numpy()
    t0 = time.perf_counter()
    expected = golden.run(network, x)
    timings["golden_s"] = time.perf_counter() - t0
    log(f"[3/4] Verilog -> Verilator (cached by hash) -> {n} images on the simulated core "
        f"({backend} backend)")
    t0 = time.perf_counter()
    sim = simulate(program, None, x, backend=backend, jobs=jobs, waves=waves or False,
                   progress=progress, cache_dir=cache_dir, free_run=free_run, memory=memory)
    timings["simulate_s"] = time.perf_counter() - t0
    timings["build_s"] = sim.build_seconds
    if after_run is not None:
        after_run(program, x)

    golden_pred = expected.argmax(axis=1)
    sim_pred = sim.outputs.argmax(axis=1)
    mismatches = int((sim.outputs != expected).sum())
    cycle_bad = sim.cycle_model_mismatches()
    golden_acc = float((golden_pred == y).mean() * 100)
    sim_acc = float((sim_pred == y).mean() * 100)
    cycles = float(sim.cycles.mean())
    macs, plane_ops = _network_ops(network, config)
    useful = plane_ops if pe == "bit_serial" else macs
    utilization = useful / (cycles * lanes * simd)
    ok = mismatches == 0 and not cycle_bad and golden_acc == sim_acc
    log("[4/4] compared with the golden model: "
        + ("ok" if ok else f"FAILED ({mismatches} mismatches, cycle model off in {cycle_bad})"))
    timings["total_s"] = time.perf_counter() - t_start
    report: dict[str, Any] = {
        "ok": ok,
        "model": source.name,
        "data": str(data_path) if data_path else None,
        "method": method_name,
        "bits": bits if network_path is None else None,
        "network": str(network_path) if network_path else None,
        "images": n,
        "core": config.to_dict(),
        "fp32_accuracy": fp32,
        "golden_accuracy": golden_acc,
        "sim_accuracy": sim_acc,
        "mismatches": mismatches,
        "outputs_compared": int(expected.size),
        "cycles_per_inference": cycles,
        "cycles_min_max": [int(sim.cycles.min()), int(sim.cycles.max())],
        "model_cycles_per_inference": int(sim.model_layer_cycles.sum()),
        "memory": memory_report(program, sim, sim_memory(backend, memory)),
        "layer_cycles": dict(zip(_unique(sim.layer_names), sim.layer_cycles[0].tolist(),
                                 strict=True)),
        "model_layer_cycles": dict(zip(_unique(sim.layer_names),
                                       sim.model_layer_cycles.tolist(), strict=True)),
        "cycle_model_mismatches": cycle_bad,
        "macs_per_inference": macs,
        "bitplane_ops_per_inference": plane_ops,
        "utilization_definition": "useful ops / (cycles x lanes x simd); useful ops are "
                                  "nonzero-weight MACs (shift_add, multiply) or the 1-bits of "
                                  "nonzero weights' narrowest two's complement codes "
                                  "(bit_serial)",
        "utilization": utilization,
        "backend": sim.backend,
        "jobs": sim.jobs,
        "sim_cycles_per_s": sim.sim_cycles_per_s,
        "free_run_cycles_per_s": sim.free_run_cycles_per_s,
        "sim_vs_free_run": (sim.sim_cycles_per_s / sim.free_run_cycles_per_s
                            if sim.free_run_cycles_per_s else None),
        "weight_bits_total": network.weight_storage_bits(),
        "act_peak_words": int(program.meta["act_peak"]),   # activation memory by liveness
        "verilog_lines": sim.verilog_lines,
        "build_cached": sim.build_cached,
        "waves_file": sim.waves_file,
        "timings": timings,
    }
    if not ok:
        report["error"] = (f"{mismatches} output(s) differ from golden" if mismatches
                           else f"cycle model mismatch in {cycle_bad}" if cycle_bad
                           else "simulated accuracy differs from golden")
    return report


def _unique(names: list[str]) -> list[str]:
    """Descriptor names as keys: a layer cut into tiles repeats its name, so the second and
    later get ``#2``, ``#3``, ..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def format_report(r: dict[str, Any]) -> str:
    t = r["timings"]
    core = r["core"]
    lines = [
        f"hwq flow: {r['model']}, {r['method']}"
        + (f" {r['bits']}-bit" if r["bits"] else "")
        + f", {core['pe']} core {core['lanes']}x{core['simd']}, {r['images']} images",
        *([f"  fp32 accuracy            {r['fp32_accuracy']:6.2f} %"]
          if r["fp32_accuracy"] is not None else []),
        f"  golden integer accuracy  {r['golden_accuracy']:6.2f} %   (hwq.golden, NumPy)",
        f"  simulated accuracy       {r['sim_accuracy']:6.2f} %   (Verilator, cycle-accurate; "
        f"{r['backend']} backend)",
        f"  outputs differing        {r['mismatches']} of {r['outputs_compared']}",
        f"  cycles per inference     {r['cycles_per_inference']:.0f} "
        f"(cycle model {r['model_cycles_per_inference']}; per layer "
        + ("equal" if not r["cycle_model_mismatches"] else
           f"DIFFERENT in {r['cycle_model_mismatches']}") + ")",
        f"  MAC-array utilization    {r['utilization'] * 100:5.1f} %",
        f"  simulation speed         {r['sim_cycles_per_s'] / 1e3:.0f} k cycles/s end to end"
        + (f", {r['free_run_cycles_per_s'] / 1e3:.0f} k free-running "
           f"({r['sim_vs_free_run']:.2f}x)" if r["free_run_cycles_per_s"] else "")
        + f" ({r['backend']}, {r['jobs']} process{'es' if r['jobs'] > 1 else ''})",
        f"  time                     {t['total_s']:.1f} s (quantize {t['quantize_s']:.1f}, "
        f"build {t['build_s']:.1f}{' cached' if r['build_cached'] else ''}, "
        f"simulate {t['simulate_s']:.1f})",
    ]
    lines += [line.replace("  ", "  memory                   ", 1) if i == 0 else line
              for i, line in enumerate(memory_lines(r["memory"]))]
    if r.get("waves_file"):
        lines.append(f"  waveform                 {r['waves_file']}")
    lines.append("ok" if r["ok"] else f"FAILED: {r['error']}")
    return "\n".join(lines)


__all__ = ["DEFAULT_METHOD", "configure", "flow", "format_report", "run"]
