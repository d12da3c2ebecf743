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
* errors are one line on stderr (argument errors too, with ``--json`` also one JSON object
  on stdout); ``--debug`` adds the traceback;
* bad values and unwritable outputs are refused before the work (:func:`check_output`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

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
    "build": ("hwq.rtl.build_cli", "bitstream of the core with a UART host link for a board"),
    "bench": ("hwq.bench.cli", "benchmarks: speed, accuracy tables, hardware reports"),
    "import": ("hwq.qonnx.cli_import", "read a QONNX model (e.g. from Brevitas) into a network"),
    "export": ("hwq.qonnx.cli_export", "write a network as QONNX, checked against hwq.golden"),
    "explore": ("hwq.explore.cli", "sweep method x bits x PE x array size on Ray: table and "
                "Pareto front"),
    "prove": ("hwq.formal.cli", "prove the RTL blocks equal to hwq.golden (SymbiYosys)"),
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


class _UsageError(Exception):
    """An argument error, raised by :class:`_Parser` and reported by :func:`main`."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse with hwq's conventions: a usage error is one line, not the usage text."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self.prog, message)


def check_output(path: str | os.PathLike, option: str, *, folder: bool = False) -> Path:
    """Refuse, before any work, an output ``path`` that cannot be written.

    ``path`` (a file, or with ``folder`` a folder) must be creatable or writable: its
    nearest existing ancestor must be a folder where a file can be created, an existing
    ``path`` a file (or a folder when ``folder``). Nothing is left behind.

    Raises
    ------
    ValueError
        naming ``option``, the target and why (exit 2).
    """
    target = Path(path)
    if target.exists() and target.is_dir() != folder:
        kind = "a folder" if target.is_dir() else "a file"
        raise ValueError(f"{option} {target}: cannot write there: it is {kind}, "
                         f"not {'a folder' if folder else 'a file'}")
    parent = target if folder else target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {target}: cannot write there: {parent} is a file, "
                         "not a folder")
    try:
        with tempfile.NamedTemporaryFile(prefix=".hwq-write-check-", dir=parent):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {target}: cannot write there: {parent}: "
                         f"{exc.strerror or exc}") from None
    if not folder and target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{option} {target}: cannot write there: permission denied")
    return target


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s own options are loaded."""
    parser = _Parser(
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
    try:
        args = parser.parse_args(argv)  # exits 0 on --help
    except _UsageError as exc:
        if "--json" in argv:
            print(json.dumps({"ok": False, "error": str(exc), "exit_code": 2}))
        print(f"{exc.prog}: error: {exc} (see {exc.prog} --help)", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help(sys.stderr)
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
