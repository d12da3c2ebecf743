"""``hwq quantize``: quantize a model and write its integer network (.safetensors).

Example::

    hwq quantize --model digits --method uniform --bits 4 -o net.safetensors
    hwq quantize --model digits --method uniform-qat --bits 2 --epochs 10 -o net.safetensors --json
    hwq quantize --model my_net.py:build --data my_data.npz --method inq --bits 4 -o net.safetensors

Prints the fp32 accuracy, the quantized accuracy of the integer network (run by the golden
model), the weight storage and the compression ratio; ``--json`` prints them as one object.
Exit 0 on success, 2 on bad usage (unknown or unavailable method, unsupported ``--bits``),
1 if the torch fake-quant model and the integer network disagree (an internal check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hwq.arguments import integer, positive_number
from hwq.cli import check_output, emit
from hwq.quant.api import WORKLOADS, quantize
from hwq.quant.fakequant import CALIBRATIONS
from hwq.quant.inq import check_schedule
from hwq.quant.methods import METHODS, get_method
from hwq.serialize import save


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hwq quantize`` to ``parser``."""
    methods = ", ".join(f"{name} ({m.bits[0]}..{m.bits[1]} bits)" if m.bits[0] != m.bits[1]
                        else f"{name} ({m.bits[0]} bits)" for name, m in METHODS.items())
    parser.add_argument("--model", default="digits", metavar="NAME",
                        help=f"a workload ({', '.join(WORKLOADS)}; default: digits) or your "
                             "own model as path/to/file.py:function (returning an nn.Module, or "
                             "a module and its data) or a torch.export FILE.pt2 (with --data)")
    parser.add_argument("--data", type=Path, default=None, metavar="FILE.npz",
                        help="training and test data: x_train, y_train, x_test, y_test (or x, "
                             "y, split 80/20); needed by a file model that returns no data")
    parser.add_argument("--method", default="uniform", metavar="METHOD",
                        help=f"one of: {methods} (default: uniform)")
    parser.add_argument("--bits", type=float, default=None,
                        help="weight bit width (tq: average bits per weight including the "
                             "basis, e.g. 2.0; joint: the widest layer, optional)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="where to write the QuantizedNetwork (.safetensors)")
    parser.add_argument("--compressed", type=Path, default=None, metavar="FILE",
                        help="also write the network with its weights as a sparse weight "
                             "stream (.hwqz; loads as the same network; its stream length is "
                             "the joint size)")
    parser.add_argument("--act-bits", type=integer(2, 16), default=8, metavar="A",
                        help="activation bit width, 2..16 (default: 8)")
    parser.add_argument("--epochs", type=integer(1), default=None, metavar="N",
                        help="training epochs (retraining methods; default: the method's)")
    parser.add_argument("--lr", type=positive_number(), default=None,
                        help="learning rate (retraining methods; default: the method's)")
    parser.add_argument("--seed", type=integer(0), default=0, help="random seed (default: 0)")
    parser.add_argument("--calibration", default="max", metavar="C",
                        help=f"activation calibration: {', '.join(CALIBRATIONS)} (default: max)")
    parser.add_argument("--percentile", type=_percentile, default=None,
                        help="percentile of |activation| for --calibration percentile, in "
                             "(0, 100] (default: 99.99)")
    parser.add_argument("--schedule", type=float, nargs="+", default=None, metavar="P",
                        help="inq and slq: the accumulated portions quantized per step, "
                             "increasing, in (0, 1], ending in 1 (default: the method's; "
                             "inq at 2 bits: the paper's ten-step ternary schedule)")
    parser.add_argument("--codebook-scale", default=None, choices=["layer", "channel"],
                        help="slq and mlq: shared values per layer (the paper; default) or "
                             "per layer in units of each output channel's largest |w| (one "
                             "table, per-channel scales; for BatchNorm-folded networks)")
    tq = parser.add_argument_group("tq (transform quantization)")
    tq.add_argument("--transform", default=None, choices=["elt", "klt", "identity"],
                    help="transform (default: elt)")
    tq.add_argument("--variant", default=None, choices=["row", "column"],
                    help="row (mixes input channels; default) or column")
    tq.add_argument("--blocks", type=integer(1), default=None,
                    help="blocks per layer (default 16)")
    tq.add_argument("--retrain-epochs", type=integer(0), default=None, metavar="N",
                    help="STE retraining at the allocated depths (default 0)")
    joint = parser.add_argument_group("joint (sparsity and quantization under a size budget)")
    joint.add_argument("--compression", type=positive_number(), default=None, metavar="X",
                       help="target compression vs fp32 weights, e.g. 50 (indices included)")
    joint.add_argument("--budget-bits", type=integer(1), default=None, metavar="BITS",
                       help="the size budget in bits instead of --compression")
    joint.add_argument("--finetune-epochs", type=integer(0), default=None, metavar="N",
                       help="fine-tuning epochs after ADMM (--epochs), masks and widths "
                            "fixed (default 30; lenet5: 90)")
    joint.add_argument("--anneal-epochs", type=integer(0), default=None, metavar="N",
                       help="ADMM epochs over which the budget falls from 10x to the target "
                            "(default half of --epochs; 0: the target from the start)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars on stderr")


def resolve_model(spec: str, data_path: Path | None) -> tuple[Any, Any]:
    """``(model or workload name, data or None)`` of ``--model`` and ``--data``, checked."""
    from hwq.workloads.user import ArrayData, load_arrays, load_model

    data = None
    if data_path is not None:
        data = load_arrays(data_path)
        if not isinstance(data, ArrayData):
            raise ValueError(f"--data {data_path} must be an .npz of x_train, y_train, x_test, "
                             "y_test (or x, y), not an .npy of images")
    if spec in WORKLOADS:
        return spec, data
    if not spec.partition(":")[0].endswith(".py") and not spec.endswith(".pt2"):
        raise ValueError(f"Unknown model {spec!r}; allowed: {', '.join(WORKLOADS)}, "
                         "path/to/file.py:function or FILE.pt2")
    if spec.endswith(".pt2") and data is None:   # before reading the program
        raise ValueError(f"--model {spec} (a torch.export program) needs --data FILE.npz")
    model, own = load_model(spec)
    data = data if data is not None else own
    if data is None:
        raise ValueError(f"--model {spec} returns no data: give --data FILE.npz")
    check_model_input(model, data.x_train[:2], spec)
    return model, data


def check_model_input(model: Any, x: Any, name: str) -> None:
    """Run ``model`` on two images once: a shape mismatch is one clear message."""
    import torch

    try:
        with torch.no_grad():
            model.eval()(x)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"Model {name} does not take the data's images of shape "
                         f"{tuple(x.shape[1:])}: {first}") from None


def _percentile(text: str) -> float:
    """argparse type of ``--percentile``: a number in (0, 100]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 100], not {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``hwq quantize``; returns the exit code (errors are raised, see hwq.cli)."""
    method = get_method(args.method)  # ValueError naming the allowed methods
    if args.bits is None and not method.bits_optional:
        raise ValueError(f"Method {args.method!r} needs --bits")
    bits = method.check_bits(args.method, args.bits)
    model, data = resolve_model(args.model, args.data)
    if args.calibration not in CALIBRATIONS:
        raise ValueError(f"Calibration must be one of {', '.join(CALIBRATIONS)}, "
                         f"not {args.calibration!r}")
    if args.percentile is not None and args.calibration != "percentile":
        raise ValueError(f"--percentile applies to --calibration percentile, not "
                         f"{args.calibration!r}")
    options = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}
    specific = {"tq": ("transform", "variant", "blocks", "retrain_epochs"),
                "joint": ("compression", "budget_bits", "finetune_epochs", "anneal_epochs")}
    for owner, names in specific.items():
        for name in names:
            value = getattr(args, name)
            if value is None:
                continue
            if args.method != owner:
                raise ValueError(f"--{name.replace('_', '-')} applies only to --method "
                                 f"{owner}, not {args.method!r}")
            options[name] = value
    if args.schedule is not None:
        if args.method not in ("inq", "slq"):
            raise ValueError(f"--schedule applies only to --method inq or slq, not "
                             f"{args.method!r}")
        options["schedule"] = check_schedule(args.schedule, args.method.upper())
    if args.codebook_scale is not None:
        if args.method not in ("slq", "mlq"):
            raise ValueError(f"--codebook-scale applies only to --method slq or mlq, not "
                             f"{args.method!r}")
        options["scale"] = args.codebook_scale
    if args.method == "joint" and "compression" not in options and "budget_bits" not in options:
        raise ValueError("Method 'joint' needs --compression X or --budget-bits BITS")
    if {"epochs", "lr"} & set(options) and not method.retrains:
        flags = " and ".join(f"--{k}" for k in options)
        verb = "apply" if len(options) > 1 else "applies"
        raise ValueError(f"{flags} {verb} only to retraining methods "
                         f"({', '.join(n for n, m in METHODS.items() if m.retrains)}), "
                         f"not {args.method!r}")
    check_output(args.output, "-o/--output")
    if args.compressed is not None:
        check_output(args.compressed, "--compressed")

    result = quantize(model, args.method, bits=bits, act_bits=args.act_bits, data=data,
                      seed=args.seed, progress=args.progress, calibration=args.calibration,
                      percentile=99.99 if args.percentile is None else args.percentile,
                      **options)
    result.network.meta["model"] = args.model
    path = save(result.network, args.output)

    report = {"ok": result.output_mismatches == 0, "model": args.model, **result.to_dict(),
              "output": str(path)}
    compressed = []
    if args.compressed is not None:
        from hwq.quant.joint.compressed import save_compressed

        cpath, nbits, _ = save_compressed(result.network, args.compressed)
        report["compressed"] = {"output": str(cpath), "stream_bits": nbits,
                                "file_bytes": cpath.stat().st_size}
        compressed = [f"  compressed file      {cpath}: weight stream {nbits} bits, file "
                      f"{cpath.stat().st_size} bytes"]
    kib = result.weight_bits_total / 8 / 1024
    text = "\n".join([
        f"{args.model}: {args.method}, "
        + (f"{bits:g}-bit weights, " if bits is not None else "")
        + f"{args.act_bits}-bit activations -> {path}",
        f"  fp32 accuracy        {result.fp32_accuracy:6.2f} %",
        f"  quantized accuracy   {result.accuracy:6.2f} %  (integer network, golden model; "
        f"fake-quant torch {result.fake_quant_accuracy:.2f} %)",
        f"  weight storage       {result.weight_bits_total} bits ({kib:.1f} KiB) for "
        f"{result.weight_count} weights",
        f"  compression ratio    {result.compression_ratio:.2f}x vs fp32 weights",
        *compressed,
        *(["  coding gain (dB)     " + ", ".join(
            f"{layer}: " + "/".join(f"{t} {g:.1f}" if isinstance(g, float) else f"{t} {g}"
                                    for t, g in gains.items())
            for layer, gains in result.info["coding_gain_db"].items())]
          if "coding_gain_db" in result.info else []),
    ])
    emit(args, report, text)
    if result.output_mismatches:  # one JSON object with "ok": false, the error on stderr
        print(f"hwq quantize: error: the torch fake-quant model and the integer network "
              f"disagree on {result.output_mismatches} test images", file=sys.stderr)
        return 1
    return 0
