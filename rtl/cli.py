"""``hwq rtl``: write the Verilog of a core configuration.

    hwq rtl --pe bit_serial --lanes 8 --simd 8 -o build/rtl [--lint] [--json]

writes ``DIR/hwq_core.v`` (top module ``hwq_core``), ``DIR/hwq_core.vlt`` (its Verilator lint
waivers), ``DIR/hwq_regs.md`` (register table), ``DIR/hwq_regs.py`` (register constants) and
``DIR/hwq_config.json`` (the CoreConfig, its fingerprint and the memory word widths).
``--program FILE`` preloads a compiled Program (``--readmemh``: as ``$readmemh`` files).
``--lint`` runs ``verilator --lint-only -Wall`` with the documented waivers
(:mod:`hwq.rtl.lint`) and fails on any warning. ``--report`` adds the core's resources and
routed Fmax on ECP5 (:func:`hwq.rtl.report.report`, on the core without a program; a core
that fits no part is reported, not an error); ``--report --asic`` the ASIC report instead
(:func:`hwq.rtl.asic.asic_report`).
"""

from __future__ import annotations

import argparse

from hwq.arguments import add_config_arguments, config_from_arguments, depths_given
from hwq.errors import CheckFailed


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, fitted_depths=True)
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="folder for hwq_core.v, hwq_core.vlt, hwq_regs.md, hwq_regs.py, "
                             "hwq_config.json")
    parser.add_argument("--program", metavar="FILE",
                        help="preload this compiled Program (.hwqp) into the memories")
    parser.add_argument("--readmemh", action="store_true",
                        help="with --program: initialize memories by $readmemh files")
    parser.add_argument("--lint", action="store_true",
                        help="run verilator --lint-only -Wall (documented waivers only)")
    parser.add_argument("--report", action="store_true",
                        help="also synthesize and place-and-route the core on ECP5 "
                             "(yowasp tools, cached): area and routed Fmax, as `hwq report`; "
                             "with --asic on a standard-cell library instead")
    from hwq.rtl.asic import add_arguments

    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from hwq.cli import check_output, emit
    from hwq.layout.program import Program
    from hwq.rtl.generate import check_buildable, write

    config = config_from_arguments(args)
    if args.report and not args.asic and not depths_given(args):
        # as `hwq report`: the memories that fit the largest ECP5, and these Verilog files too
        from hwq.rtl.board import BRAM_BLOCKS, fit_memories

        config = fit_memories(config, max(BRAM_BLOCKS, key=BRAM_BLOCKS.get), reserve=0)
    if args.readmemh and not args.program:
        raise ValueError("--readmemh applies with --program (the images the files hold)")
    check_output(args.output, "-o/--output", folder=True)
    check_buildable(config)
    from hwq.rtl.asic import check_arguments

    check_arguments(args, with_report=args.report)
    program = None
    if args.program:
        program = Program.load(args.program)
        program.check_config(config)
    summary = write(config, args.output, program=program, readmemh=args.readmemh)
    summary["ok"] = True
    text = [f"wrote {summary['paths']['verilog']} ({summary['lines']} lines), "
            f"{config.pe} lanes {config.lanes} simd {config.simd}, "
            f"fingerprint {summary['fingerprint']}"]
    if args.lint:
        from hwq.rtl.lint import lint

        result = lint(summary["paths"]["verilog"])
        summary["lint"] = {"ok": result["ok"], "warnings": result["warnings"],
                           "waived_rules": sorted(result["waivers"])}
        summary["ok"] = result["ok"]
        text.append("lint: clean (verilator -Wall, waivers: "
                    f"{', '.join(sorted(result['waivers']))})" if result["ok"]
                    else "lint: " + "\n".join(result["warnings"]))
        if not result["ok"]:
            emit(args, summary, "\n".join(text))
            raise CheckFailed(f"verilator lint reported {len(result['warnings'])} warning(s)")
    if args.report and args.asic:
        from hwq.rtl.asic import format_asic, report_from_arguments

        result = report_from_arguments(args, config)
        summary["report"] = result
        text.append(format_asic(result))
    elif args.report:
        from hwq.rtl.report import format_report, report

        result = report(config)
        summary["report"] = {k: result[k] for k in (
            "ok", "device", "attempts", "resources", "fmax_mhz", "throughput", "cached")}
        text.append(format_report(result))
    emit(args, summary, "\n".join(text))
    return 0
