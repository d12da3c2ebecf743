"""``hwq import``: read a QONNX graph (e.g. Brevitas's ``export_qonnx``) into a network.

Example::

    hwq import model.onnx -o net.safetensors
    hwq flow --network net.safetensors

Prints the ops, the activation width and, per op, where hwq's integer arithmetic
approximates QONNX's float scales (:mod:`hwq.qonnx.importer`); ``--json`` prints one
object. Exit 0 on success, 2 on a bad or unsupported model (the error names the node, its
op type and why), 1 if the ``onnx`` extra is missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hwq.cli import emit
from hwq.qonnx.cli_export import check_output, require_extra


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hwq import`` to ``parser``."""
    parser.add_argument("model", type=Path, metavar="MODEL.onnx",
                        help="a QONNX model (Quant nodes on weights and activations)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="where to write the QuantizedNetwork (.safetensors)")


def run(args: argparse.Namespace) -> int:
    """Run ``hwq import``; returns the exit code (errors are raised, see hwq.cli)."""
    if not args.model.is_file():
        raise FileNotFoundError(f"No ONNX model at {args.model}")
    check_output(args.output)
    require_extra()
    from hwq.qonnx.importer import import_qonnx
    from hwq.serialize import save

    result = import_qonnx(args.model)
    net = result.network
    path = save(net, args.output)
    data = {"ok": True, "model": str(args.model), "output": str(path), **result.to_dict(),
            "op_list": [{"name": op.name, "kind": op.kind} for op in net.ops]}
    lines = [f"{args.model} -> {path}: {len(net.ops)} ops, {net.act_bits}-bit activations, "
             f"input {net.input_shape} scale {net.input_scale:.6g} (range "
             f"{net.meta['input_range'][0]}..{net.meta['input_range'][1]})",
             "  exact: " + ("yes, every op computes QONNX's integers" if result.exact else
                            "no; where hwq approximates QONNX's float scales:")]
    width = max(len(op.name) for op in net.ops)
    for op in net.ops:
        notes = result.notes.get(op.name) or []
        lines.append(f"  {op.name:<{width}}  {op.kind:<16}  "
                     + ("; ".join(notes) if notes else "exact"))
    emit(args, data, "\n".join(lines))
    return 0
