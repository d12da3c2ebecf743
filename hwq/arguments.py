"""argparse pieces shared by the ``hwq`` commands: typed options that name the bad value,
and one option per :class:`~hwq.config.CoreConfig` field."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from hwq.config import DSP_KINDS, PE_TYPES, CoreConfig

__all__ = ["CLI_FIELDS", "DEPTH_FIELDS", "add_config_arguments", "add_memory_arguments",
           "add_pack_argument",
           "config_from_arguments", "depths_given", "integer", "memory_from_arguments",
           "positive_number", "positive_seconds"]


#: Integer fields of :class:`CoreConfig` offered as ``--lanes``, ``--act-bits``, ... options.
CLI_FIELDS = tuple(CoreConfig.INT_FIELDS)


#: The memory depth fields (``--act-depth`` ...), which ``fitted_depths`` leaves unset.
DEPTH_FIELDS = ("act_depth", "weight_depth", "param_depth", "desc_depth")


def add_config_arguments(parser: argparse.ArgumentParser, *,
                         fitted_depths: bool = False) -> None:
    """``--pe`` and one option per field of :data:`CLI_FIELDS` (defaults from CoreConfig).

    With ``fitted_depths`` the depth options default to None: the command sizes the memories
    to its target part (:func:`depths_given` tells whether the user set any).
    """
    parser.add_argument("--pe", required=True, choices=PE_TYPES, help="PE type")
    defaults = CoreConfig(pe="multiply")
    for name in CLI_FIELDS:
        _, lo, hi = CoreConfig.INT_FIELDS[name]
        fitted = fitted_depths and name in DEPTH_FIELDS
        parser.add_argument(f"--{name.replace('_', '-')}", type=integer(lo, hi),
                            default=None if fitted else getattr(defaults, name),
                            help=f"{name}, {lo}..{hi} (default {getattr(defaults, name)}"
                                 + ("; with no depth option an ECP5 report fits the memories "
                                    "to the part)" if fitted else ")"))
    parser.add_argument("--dsp", choices=DSP_KINDS, default=defaults.dsp,
                        help="multipliers: inferred (any tool) or ecp5 (MULT18X18D blocks with "
                             f"their own registers; ECP5 only) (default {defaults.dsp})")
    add_pack_argument(parser, network=False)


def add_pack_argument(parser: argparse.ArgumentParser, *, network: bool = True) -> None:
    """``--pack``: K packing (:attr:`CoreConfig.pack`) and ``--depthwise``, the depthwise
    mode (:attr:`CoreConfig.depthwise`, which turns packing on); ``auto`` only where a
    network sizes the core (:func:`hwq.layout.compiler.core_config`)."""
    choices = ("auto", "on", "off") if network else ("on", "off")
    parser.add_argument("--pack", choices=choices, default="off",
                        help="K packing: a second activation read port (a second copy of the "
                             "activation memory's block RAMs) so that the partial channel "
                             "tiles of two kernel taps share a micro-op"
                             + ("; auto: on when it lowers the network's modelled cycles"
                                if network else "") + " (default off)")
    parser.add_argument("--depthwise", choices=choices, default="off",
                        help="the MAC array's depthwise mode (needs lanes == simd >= 8; turns "
                             "--pack on): depthwise convs with channels in the lanes and "
                             "kernel taps in the SIMD inputs through a window register file"
                             + ("; auto: on when it lowers the network's modelled cycles"
                                if network else "") + " (default off)")


def config_from_arguments(args: argparse.Namespace) -> CoreConfig:
    """The :class:`CoreConfig` of options added by :func:`add_config_arguments`."""
    dw = args.depthwise == "on"
    return CoreConfig(pe=args.pe, dsp=args.dsp, pack=args.pack == "on" or dw, depthwise=dw,
                      **{name: getattr(args, name) for name in CLI_FIELDS
                         if getattr(args, name) is not None})


def depths_given(args: argparse.Namespace) -> bool:
    """Whether any memory depth option was set (else CoreConfig's defaults, or fitted)."""
    return any(getattr(args, name, None) is not None for name in DEPTH_FIELDS)


def integer(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """argparse type of an integer option in ``lo..hi`` (``hi=None``: no upper bound).

    Argparse names the option: ``argument --seed: must be an integer >= 0, not '-1'``.
    """
    allowed = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
        return value

    return parse


def positive_number(unit: str | None = None) -> Callable[[str], float]:
    """argparse type of a positive, finite number (of ``unit``); ``nan``, ``inf``, ``-5`` and
    ``0`` are refused."""
    allowed = f"a positive number of {unit}" if unit else "a positive number"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
        return value

    return parse


#: argparse type of a duration option: a positive, finite number of seconds.
positive_seconds = positive_number("seconds")


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the weights live and the simulated external memory (``hwq sim``, ``hwq flow``):
    ``--weights``, ``--activations``, ``--act-depth``, ``--ext-bits``, ``--ext-burst``,
    ``--ext-outstanding``, ``--mem-latency``,
    ``--mem-stall``, ``--mem-seed``."""
    from hwq.layout.acttiles import ACT_PLACES
    from hwq.layout.tiling import WEIGHT_PLACES

    group = parser.add_argument_group("external memory (weights and activations over m_axi)")
    group.add_argument("--weights", choices=WEIGHT_PLACES, default="auto",
                       help="where the weights live: on chip, or streamed in tiles from "
                            "external memory (auto: external only when they do not fit and the "
                            "core has the port; default auto)")
    group.add_argument("--activations", choices=ACT_PLACES, default="auto",
                       help="where intermediate tensors live: on chip, or in external memory "
                            "with their layers run in tiles of output rows (auto: external "
                            "only when they do not fit --act-depth and the core has the port; "
                            "default auto)")
    group.add_argument("--act-depth", type=integer(*CoreConfig.INT_FIELDS["act_depth"][1:]),
                       default=None, metavar="WORDS",
                       help="activation memory words (default: what the network needs)")
    ext = CoreConfig.INT_FIELDS
    group.add_argument("--ext-bits", type=int, choices=CoreConfig.EXT_BITS[1:], default=None,
                       help="data width of the core's AXI4 master port m_axi (default 64 with "
                            "--weights external, else no port)")
    group.add_argument("--ext-burst", type=integer(*ext["ext_burst"][1:]), default=None,
                       help=f"most beats per read burst, a power of two (default "
                            f"{CoreConfig.ext_burst})")
    group.add_argument("--ext-outstanding", type=integer(*ext["ext_outstanding"][1:]),
                       default=None, help=f"most read bursts in flight (default "
                                          f"{CoreConfig.ext_outstanding})")
    group.add_argument("--mem-latency", type=integer(1, 1 << 20), default=None,
                       help="simulated memory: cycles from a read address to its first beat "
                            "(default 4; cocotb's AxiRam: 2)")
    group.add_argument("--mem-stall", type=_probability, default=0.0,
                       help="simulated memory: probability of a stall per cycle and channel "
                            "(default 0; counters are then checked against the model's bound)")
    group.add_argument("--mem-seed", type=integer(0), default=0,
                       help="seed of the stalls (default 0)")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1), not {text!r}")
    return value


def memory_from_arguments(args: argparse.Namespace, backend: str) -> tuple[dict, dict, object]:
    """``(places, core fields, MemoryTiming)`` of :func:`add_memory_arguments`' options:
    ``weights`` and ``activations`` (keywords of ``core_config`` and ``compile``), the core
    fields (``ext_bits``, ``act_depth``, ...) to build the core with, and the simulated
    memory."""
    from hwq.golden.memory import AXI_RAM_LATENCY, MemoryTiming

    fields = {name: getattr(args, name) for name in ("ext_bits", "ext_burst", "ext_outstanding",
                                                     "act_depth")
              if getattr(args, name) is not None}
    if "external" in (args.weights, args.activations):
        fields.setdefault("ext_bits", 64)
    if args.weights == "onchip" and args.activations == "onchip" and fields.get("ext_bits"):
        raise ValueError("--ext-bits gives the core an external memory port, which "
                         "--weights onchip --activations onchip do not use: leave one of "
                         "them out")
    latency = args.mem_latency
    if latency is None:
        latency = AXI_RAM_LATENCY if backend == "cocotb" else 4
    memory = MemoryTiming(latency=latency, stall=args.mem_stall, seed=args.mem_seed)
    return {"weights": args.weights, "activations": args.activations}, fields, memory
