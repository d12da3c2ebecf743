"""``hwq import``: read a QONNX graph (e.g. Brevitas's ``export_qonnx``) into a network.

Example::

    hwq import model.onnx -o net.safetensors
    hwq flow --network net.safetensors

Prints the ops, the activation width and, per op, where hwq's integer arithmetic
approximates QONNX's float scales (:mod:`hwq.qonnx.importer`); ``--json`` prints one
object. ``--check N`` (default 8, 0 to skip) runs ``N`` random inputs on the input
quantizer's grid through qonnx's ``execute_onnx`` and ``hwq.golden.run`` and counts the
outputs that differ. Exit 0 on success, 1 if an import said to be exact differs (or the
``onnx`` extra is missing), 2 on a bad or unsupported model (the error names the node, its
op type and why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hwq.cli import emit
from hwq.qonnx.cli_export import check_output, require_extra


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hwq import`` to ``parser``."""
    parser.add_argument("model", type=Path, metavar="MODEL.onnx",
                        help="a QONNX model (Quant nodes on weights and activations)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="where to write the QuantizedNetwork (.safetensors)")
    parser.add_argument("--check", type=int, default=8, metavar="N",
                        help="compare qonnx's execution with hwq.golden on N random inputs "
                             "(default: 8; 0: no check)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the check's inputs")


def run(args: argparse.Namespace) -> int:
    """Run ``hwq import``; returns the exit code (errors are raised, see hwq.cli)."""
    if args.check < 0:
        raise ValueError(f"--check must be an integer of at least 0, not {args.check}")
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
    fixed = _fixed_shapes(args.model)
    if args.check and not fixed:
        data["check_skipped"] = "the model's shapes are not all fixed (qonnx's executor needs them)"
        lines.append(f"  check skipped: {data['check_skipped']}")
    elif args.check:
        differ, total = check_import(args.model, result, args.check, args.seed)
        data.update(checked_inputs=args.check, outputs_differing=differ,
                    ok=differ == 0 or not result.exact)
        lines.append(f"  qonnx execute_onnx vs hwq.golden.run on {args.check} random inputs: "
                     f"{differ} of {total} outputs differ"
                     + ("" if result.exact or not differ else
                        " (where hwq approximates, as noted above)"))
    emit(args, data, "\n".join(lines))
    if not data["ok"]:
        print(f"hwq import: error: the import is exact but {data['outputs_differing']} "
              "outputs differ from qonnx's execution", file=sys.stderr)
        return 1
    return 0


def _fixed_shapes(path: Path) -> bool:
    import onnx

    graph = onnx.load(str(path)).graph
    return all(d.dim_value > 0 for vi in (*graph.input, *graph.output)
               for d in vi.type.tensor_type.shape.dim)


def check_import(path: Path, result, n: int, seed: int) -> tuple[int, int]:
    """Run ``n`` random inputs (integers of the input quantizer's range times the input
    scale, whole batches of the model's batch size) through qonnx and golden: the number of
    outputs that differ and the number compared."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from hwq import golden

    net, (in_scale, out_scale) = result.network, result.graph_scales
    model = ModelWrapper(onnx.load(str(path)))
    inits = {i.name for i in model.graph.initializer}
    (vi,) = [i for i in model.graph.input if i.name not in inits]
    batch = vi.type.tensor_type.shape.dim[0].dim_value
    out_name = model.graph.output[0].name
    lo, hi = result.input_range
    rng = np.random.default_rng(seed)
    x = rng.integers(lo, hi + 1, size=(-(-n // batch) * batch, *net.input_shape))
    differ = total = 0
    for i in range(0, n, batch):
        xb = x[i:i + batch]
        keep = min(batch, n - i)
        xf = (xb * in_scale).astype(np.float32)
        y = execute_onnx(model, {vi.name: xf})[out_name][:keep]
        got = np.rint(y.astype(np.float64) / out_scale).astype(np.int64)
        want = golden.run(net, xb[:keep])
        differ += int((got != want).sum())
        total += got.size
    return differ, total
