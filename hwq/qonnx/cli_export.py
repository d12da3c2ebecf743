"""``hwq export --qonnx``: write an integer network as a QONNX graph, checked bit for bit.

Example::

    hwq export --qonnx net.safetensors -o model.onnx --batch 1 --check 8

The graph (:mod:`hwq.qonnx.exporter`) takes the integer input (``input``, float32 holding
``act_bits``-bit integers) and gives ``hwq.golden.run``'s integer output. ``--check N``
(default 8, 0 to skip) runs ``N`` random inputs through qonnx's ``execute_onnx`` and the
golden model and compares every output. Exit 0 when they are equal, 1 when any differs
(or the ``onnx`` extra is missing), 2 on bad usage or a network that cannot be exported
exactly (the error names the op).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from hwq.cli import emit
from hwq.errors import CheckFailed


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hwq export`` to ``parser``."""
    parser.add_argument("network", type=Path, metavar="NETWORK",
                        help="a QuantizedNetwork (.safetensors, from hwq quantize or import)")
    parser.add_argument("--qonnx", action="store_true",
                        help="write QONNX (ONNX with qonnx Quant nodes); the only format")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="where to write the model (.onnx)")
    parser.add_argument("--batch", type=int, default=1, metavar="B",
                        help="batch size of the graph's input (fixed; default: 1)")
    parser.add_argument("--check", type=int, default=8, metavar="N",
                        help="compare qonnx's execution with hwq.golden on N random inputs "
                             "(default: 8; 0: no check)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the check's inputs")


def check_output(path: Path) -> None:
    """Refuse, before any work, an output path that is a directory or not writable."""
    if path.is_dir():
        raise IsADirectoryError(f"Output {path} is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"Output {path} is not writable")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:  # a real probe: permission bits do not tell for root or read-only mounts
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        raise PermissionError(f"Output folder {folder} is not writable") from None


def require_extra() -> None:
    """The ``onnx`` extra, or exit 1 naming it (a missing tool, not bad usage)."""
    from hwq.qonnx import MissingExtra, require

    try:
        for module in ("onnx", "onnxruntime", "qonnx"):
            require(module)
    except MissingExtra as exc:
        raise CheckFailed(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Run ``hwq export``; returns the exit code (errors are raised, see hwq.cli)."""
    if not args.qonnx:
        raise ValueError("Choose the output format: --qonnx (the only one so far)")
    for flag, value, least in (("--batch", args.batch, 1), ("--check", args.check, 0)):
        if value < least:
            raise ValueError(f"{flag} must be an integer of at least {least}, not {value}")
    if not args.network.is_file():
        raise FileNotFoundError(f"No network file at {args.network}")
    check_output(args.output)
    require_extra()
    from hwq.qonnx.exporter import export_qonnx
    from hwq.serialize import atomic_write, load

    net = load(args.network)
    model = export_qonnx(net, batch=args.batch)
    atomic_write(args.output, model.SerializeToString())
    data = {"ok": True, "network": str(args.network), "output": str(args.output),
            "format": "qonnx", "batch": args.batch, "ops": len(net.ops),
            "nodes": len(model.graph.node), "act_bits": net.act_bits,
            "input_scale": net.input_scale}
    lines = [f"{args.network} -> {args.output}: {len(net.ops)} ops as "
             f"{len(model.graph.node)} QONNX nodes, input 'input' ({args.batch}, "
             f"{', '.join(map(str, net.input_shape))}) of {net.act_bits}-bit integers "
             f"(float input / {net.input_scale:.6g}, rounded)"]
    if args.check:
        differ, total = check_export(net, model, args.check, args.batch, args.seed)
        data.update(ok=differ == 0, checked_inputs=args.check, outputs_differing=differ)
        lines.append(f"  qonnx execute_onnx vs hwq.golden.run on {args.check} random "
                     f"inputs: {differ} of {total} outputs differ")
    emit(args, data, "\n".join(lines))
    if not data["ok"]:
        print(f"hwq export: error: qonnx's execution differs from hwq.golden in "
              f"{data['outputs_differing']} outputs", file=sys.stderr)
        return 1
    return 0


def check_export(net, model, n: int, batch: int, seed: int) -> tuple[int, int]:
    """Run ``n`` random integer inputs (whole batches) through qonnx and golden; the number
    of outputs that differ and the number compared."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from hwq import golden
    from hwq.testing import random_inputs

    wrapper = ModelWrapper(model)
    out_name = model.graph.output[0].name
    rng = np.random.default_rng(seed)
    x = random_inputs(rng, net, -(-n // batch) * batch)[:n]
    differ = total = 0
    for i in range(0, n, batch):
        xb = x[i:i + batch]
        pad = batch - len(xb)
        if pad:
            xb = np.concatenate([xb, xb[:1].repeat(pad, axis=0)])
        y = execute_onnx(wrapper, {"input": xb.astype(np.float32)})[out_name]
        got = y[:batch - pad].astype(np.int64)
        want = golden.run(net, xb[:batch - pad])
        differ += int((got != want).sum())
        total += got.size
    return differ, total
