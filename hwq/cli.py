"""The ``hwq`` command line.

Every subcommand lives in its own module that exposes ``configure(parser)`` and
``run(args) -> int``. Only the module of the command being run is imported, so
``hwq --help`` is instant and the front end never loads Amaranth or cocotb unless
a hardware command asks for it.

Conventions shared by every command (see README):

* ``--json`` prints exactly one JSON object on stdout; human text goes to stdout
  otherwise, progress bars to stderr.
* exit 0 on success, 1 when a check fails (mismatch, missed budget, broken
  toolchain), 2 on bad usage (bad arguments or bad input files);
* errors are one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from hwq import __version__
from hwq.errors import CheckFailed

#: command name -> (module, one-line help). The module is imported only when used.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("hwq.sim.doctor", "print tool versions and run a 10-second toolchain self-check"),
    "quantize": ("hwq.quant.cli", "quantize a model and write a QuantizedNetwork (.safetensors)"),
    "rtl": ("hwq.rtl.cli", "generate accelerator Verilog for a core configuration"),
    "sim": ("hwq.sim.cli", "run a network on the simulated core (Verilator)"),
    "flow": ("hwq.sim.flow", "model -> quantize -> RTL -> Verilator -> check bit-for-bit"),
    "report": ("hwq.rtl.report", "synthesize and place-and-route: resources and Fmax"),
    "bench": ("hwq.bench", "benchmarks: speed, accuracy tables, hardware reports"),
    "import": ("hwq.qonnx.cli_import", "read a QONNX model (e.g. from Brevitas) into a network"),
    "export": ("hwq.qonnx.cli_export", "write a network as QONNX, checked against hwq.golden"),
}


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Print a command's result: ``data`` as one JSON object with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, default=_json_default))
    elif text:
        print(text)


def _json_default(obj: Any) -> Any:
    # NumPy scalars and arrays, paths: anything with a natural JSON form.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s own options are loaded."""
    parser = argparse.ArgumentParser(
        prog="hwq",
        description="hwq: quantized CNN inference from PyTorch to verified accelerator RTL.",
    )
    parser.add_argument("--version", action="version", version=f"hwq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        _add_common(p)
        if name == command:
            importlib.import_module(module).configure(p)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    parser = build_parser(command)
    args = parser.parse_args(argv)  # exits 2 on bad usage, 0 on --help
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args))
    except CheckFailed as exc:
        return _fail(args, exc, 1)
    except KeyboardInterrupt:
        print("hwq: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return _fail(args, exc, 2)
    except Exception as exc:  # an internal error: still one line unless --debug
        return _fail(args, exc, 1, prefix="internal error: ")


def _fail(args: argparse.Namespace, exc: BaseException, code: int, prefix: str = "") -> int:
    if getattr(args, "debug", False):
        traceback.print_exc()
    message = f"{prefix}{exc}" if str(exc) else f"{prefix}{type(exc).__name__}"
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": message, "exit_code": code}))
    hint = "" if getattr(args, "debug", False) or not prefix else " (rerun with --debug)"
    print(f"hwq {args.command}: error: {message}{hint}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
