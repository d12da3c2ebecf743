"""``hwq build``: a bitstream of the core with its UART host link for a real board.

    hwq build --board ulx3s-85f --network net.safetensors -o out/ [--preload] [--json]
    hwq build --board orangecrab-25f --pe shift_add --lanes 4 --simd 4 -o out/
    hwq build --board help

writes ``DIR/hwq_board.bit`` and ``.svf`` (Yosys → nextpnr-ecp5 → ecppack, the yowasp
packages), ``DIR/hwq_board.json`` (the report: resources, routed Fmax against the clock,
PLL, UART divider and baud error, tool times), and what ``hwq rtl`` writes (``hwq_core.v``,
``hwq_regs.md``, ``hwq_regs.py``, ``hwq_config.json``). With ``--network`` the memories
are sized to the network (:func:`hwq.layout.core_config`); without it and without depth
options, the largest depths whose block RAMs fit the board's part
(:func:`hwq.rtl.board.fit_memories`). Exit 1 when the design does not fit the part or misses
timing at the clock (the figures in the message).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hwq.arguments import add_pack_argument, integer, positive_number
from hwq.config import DSP_KINDS, PE_TYPES, CoreConfig


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", required=True, metavar="NAME",
                        help="the board (`--board help` lists them)")
    parser.add_argument("--network", type=Path, default=None, metavar="FILE",
                        help="size the core's memories to this network (.safetensors)")
    parser.add_argument("--pe", choices=PE_TYPES, default=None,
                        help="PE type (default with --network: the one its weights need)")
    for name in CoreConfig.INT_FIELDS:
        _, lo, hi = CoreConfig.INT_FIELDS[name]
        parser.add_argument(f"--{name.replace('_', '-')}", type=integer(lo, hi), default=None,
                            help=f"{name}, {lo}..{hi}")
    parser.add_argument("--dsp", choices=DSP_KINDS, default=None, help="multipliers")
    add_pack_argument(parser)
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                        help="folder for the bitstream, report and register table")
    parser.add_argument("--clock", type=positive_number("MHz"), default=None, metavar="MHZ",
                        help="core clock from the PLL (default: the board's, 60 MHz)")
    parser.add_argument("--baud", type=integer(1), default=3_000_000,
                        help="UART bits per second (default 3000000)")
    parser.add_argument("--max-burst", type=integer(1, 256), default=64,
                        help="words of the bridge's write buffer (power of two, default 64)")
    parser.add_argument("--preload", action="store_true",
                        help="with --network: the program's images in the bitstream")
    parser.add_argument("--seed", type=integer(0), default=1, help="nextpnr placement seed")


def boards_text() -> str:
    from hwq.rtl.board import BOARDS

    return "\n".join(f"{b.name:16s} {b.platform.split(':')[1]}, {b.clock_mhz:g} MHz; "
                     f"UART: {b.uart}" for b in BOARDS.values())


def _config(args: argparse.Namespace):
    """(config, network) from the options; refuses combinations that do not apply."""
    from hwq import serialize
    from hwq.layout import core_config
    from hwq.rtl.board import check_board, fit_memories, platform_for

    given = {name: getattr(args, name) for name in CoreConfig.INT_FIELDS
             if getattr(args, name) is not None}
    if args.network is None:
        if args.pe is None:
            raise ValueError("--pe is required without --network")
        if args.preload:
            raise ValueError("--preload applies with --network (the program it preloads)")
        check_board(args.board)
        for opt in ("pack", "depthwise"):
            if getattr(args, opt) == "auto":
                raise ValueError(f"--{opt} auto applies with --network (it compares the "
                                 "network's cycles); give on or off")
        dw = args.depthwise == "on"
        config = CoreConfig(pe=args.pe, **({"dsp": args.dsp} if args.dsp else {}),
                            pack=args.pack == "on" or dw, depthwise=dw, **given)
        if not any(k.endswith("_depth") for k in given):
            config = fit_memories(config, platform_for(check_board(args.board)).device)
        return config, None
    if not args.network.is_file():
        raise FileNotFoundError(f"No network file at {args.network}")
    depths = [k for k in given if k.endswith("_depth") or k.endswith("_bits")]
    if depths:
        raise ValueError(f"--{depths[0].replace('_', '-')} applies without --network (the "
                         "network sets the memories and widths)")
    network = serialize.load(args.network)
    from hwq.sim.cli import _pe_for  # the PE a network's weight format needs, as `hwq sim`

    extra = {"dsp": args.dsp} if args.dsp else {}
    return core_config(network, pe=args.pe or _pe_for(network), lanes=given.get("lanes", 8),
                       simd=given.get("simd", 8), pack=args.pack, depthwise=args.depthwise,
                       **extra), network


def run(args: argparse.Namespace) -> int:
    from hwq.cli import check_output, emit

    if args.board == "help":
        from hwq.rtl.board import BOARDS

        emit(args, {"ok": True, "boards": {name: {
            "platform": b.platform, "clock_mhz": b.clock_mhz, "uart": b.uart}
            for name, b in BOARDS.items()}}, boards_text())
        return 0
    from hwq.rtl.board import build_board, check_board, plan_clock
    from hwq.rtl.uart_bridge import _check_burst

    board = check_board(args.board)
    if args.output is None:
        raise ValueError("-o/--output is required (the folder for the bitstream)")
    _check_burst(args.max_burst)
    config, network = _config(args)
    if config.external:
        raise ValueError(f"--ext-bits {config.ext_bits}: the {args.board} board top has no "
                         "memory controller for the core's m_axi port yet; build without it "
                         "(weights on chip), or take hwq rtl's Verilog into your own SoC")
    plan_clock(board, args.clock, args.baud)  # clock and baud checked before any work
    check_output(args.output, "-o/--output", folder=True)
    from hwq.rtl.generate import check_buildable, write

    check_buildable(config)
    program = None
    if args.preload:
        from hwq.layout import compile as compile_network

        program = compile_network(network, config)
    written = write(config, args.output, program=program)
    core_v = Path(written["paths"]["verilog"]).read_text()
    result = build_board(config, board, args.output, clock_mhz=args.clock, baud=args.baud,
                         max_burst=args.max_burst, core_verilog=core_v, program=program,
                         seed=args.seed)
    result["ok"] = True
    res = result["resources"]
    text = [f"{board.name} ({result['device']}): wrote {result['files']['bit']} and .svf",
            f"core {config.pe} lanes {config.lanes} simd {config.simd}, memories act "
            f"{config.act_depth} weight {config.weight_depth} param {config.param_depth} desc "
            f"{config.desc_depth}; fingerprint {result['fingerprint']}",
            "resources: " + ", ".join(f"{cell} {v['used']}/{v['available']}"
                                      for cell, v in res.items()),
            f"clock {result['clock_mhz']['pll']:g} MHz (asked {result['clock_mhz']['asked']:g}), "
            f"routed Fmax {result['clock_mhz']['fmax_routed']} MHz: timing met",
            f"UART {args.baud} baud (divider {result['uart']['divider']}, error "
            f"{100 * result['uart']['baud_error']:+.2f} %) on {board.uart}",
            f"tools {result['seconds']['tools']:.0f} s; report {args.output / 'hwq_board.json'}"]
    emit(args, result, "\n".join(text))
    return 0
