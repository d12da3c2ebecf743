"""Results bench of ``joint``: accuracy against compression ratio on a workload (digits,
lenet5, ...).

:func:`bench_joint` runs :func:`hwq.quant.joint.quantize_joint` at each target compression
ratio and seed, integerizes the result, runs the integer network on the golden model (the
accuracy that counts), optionally compiles it for the bit-serial core and runs the layout
executor on the whole test split (mismatches against the golden model must be 0), and writes
``joint.json`` and ``joint.png`` (accuracy against the achieved sparse-encoding compression
ratio, log scale, with the fp32 accuracy and the fp32 - 1 point line).

Compression ratios are ``32 * weights / bits`` with bits the exact sparse encoding of
:func:`hwq.quant.joint.sparse_size`, the weight stream's length (values, positions, codebooks,
headers; no biases, no scales); the dense CODEBOOK IR ratio and the ratio with int32 biases
on both sides are reported too.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwq.bench import save_figure
from hwq.serialize import atomic_write

__all__ = ["DEFAULT_COMPRESSIONS", "WORKLOAD_COMPRESSIONS", "bench_joint", "format_joint",
           "plot_joint"]

#: Target compression ratios of the curve (digits, and workloads not in
#: :data:`WORKLOAD_COMPRESSIONS`).
DEFAULT_COMPRESSIONS: tuple[float, ...] = (10, 25, 50, 100)
#: Per workload: LeNet-5's 431k weights reach the paper's ~2000x (METHODS.md).
WORKLOAD_COMPRESSIONS: dict[str, tuple[float, ...]] = {
    "lenet5": (250, 500, 1000, 2000, 4000)}


def _run_one(model: Any, data: Any, compression: float, seed: int, *, layout: bool,
             progress: bool, options: dict[str, Any]) -> dict[str, Any]:
    from hwq.golden.network import quantize_input, run
    from hwq.quant.base import fold_batchnorm
    from hwq.quant.integerize import fake_quant_model
    from hwq.quant.joint import quantize_joint
    from hwq.workloads.train import evaluate

    folded = fold_batchnorm(model)
    t0 = time.perf_counter()
    q = quantize_joint(folded, data, compression=compression, seed=seed, progress=progress,
                       **options)
    t_method = time.perf_counter() - t0
    info = q.info
    weight_only = evaluate(folded, data.x_test, data.y_test)
    fq = fake_quant_model(folded, q, data.x_train)
    network = fq.to_network({"method": "joint", "compression_target": compression,
                             "seed": seed})
    x = quantize_input(data.x_test.numpy(), network.input_scale, network.act_bits)
    golden = run(network, x)
    y = data.y_test.numpy()
    mirror = fq.to_int(data.x_test).numpy()
    row: dict[str, Any] = {
        "compression_target": compression,
        "seed": seed,
        "accuracy": 100.0 * float((golden.argmax(axis=1) == y).mean()),
        "weight_only_accuracy": weight_only,
        "output_mismatches": int((golden != mirror).reshape(len(y), -1).any(axis=1).sum()),
        "budget_bits": info["budget_bits"],
        "total_bits": info["total_bits"],
        "compression_ratio": info["compression_ratio"],
        "dense_ir_bits": network.weight_storage_bits(),
        "dense_ir_compression_ratio": 32 * network.weight_count()
        / network.weight_storage_bits(),
        "compression_ratio_with_biases": info["compression_ratio_with_biases"],
        "nnz": info["nnz"],
        "weights": info["weights"],
        "value_bits": info["value_bits"],
        "index_bits": info["index_bits"],
        "table_bits": info["table_bits"],
        "header_bits": info["header_bits"],
        "bits": info["bits"],
        "layers": info["layers"],
        "seconds": t_method,
        "options": info["options"],
    }
    if layout:
        from hwq.config import CoreConfig
        from hwq.layout import compile as compile_layout
        from hwq.layout import execute

        program = compile_layout(network, CoreConfig(pe="bit_serial", weight_bits=8))
        out = execute(program, x)
        row["bit_serial"] = {
            "mismatches": int((out != golden).reshape(len(y), -1).any(axis=1).sum()),
            "cycles": program.cycles(),
            "tiles_stored": int(sum(np.sum(layer["tile_mask"]) for layer in program.layers
                                    if "tile_mask" in layer)),
            "tiles": int(sum(np.size(layer["tile_mask"]) for layer in program.layers
                             if "tile_mask" in layer)),
        }
    return row


def bench_joint(
    *,
    compressions: Sequence[float] | None = None,
    seeds: Sequence[int] = (0,),
    out_dir: str | Path | None = Path("bench-results"),
    plot: bool = True,
    layout: bool = True,
    progress: bool = False,
    workload: str = "digits",
    **options: Any,
) -> dict[str, Any]:
    """Accuracy against compression ratio of ``joint`` on a workload.

    Parameters
    ----------
    compressions : sequence of float, optional
        Target ratios ``C`` (budget ``floor(32 * N / C)`` bits); default the workload's
        (:data:`WORKLOAD_COMPRESSIONS`, else :data:`DEFAULT_COMPRESSIONS`).
    seeds : sequence of int
        Seeds of each run (training order); tables report the mean and spread.
    out_dir : path or None, default ``bench-results``
        Where ``joint.json`` and ``joint.png`` go; ``None`` writes nothing.
    plot : bool, default True
        Write the plot (needs matplotlib, the ``hw`` extra).
    layout : bool, default True
        Also compile every network for the bit-serial core and compare the layout executor
        with the golden model on the test split.
    progress : bool, default False
    workload : str, default "digits"
        a :data:`hwq.workloads.WORKLOADS` name: its pretrained model, data and joint option
        defaults (:attr:`hwq.workloads.Workload.method_options`; ``options`` win).
    **options
        Options of :func:`hwq.quant.joint.quantize_joint` (``epochs``, ``rho``...).

    Returns
    -------
    dict
        ``runs`` (one row per compression and seed), ``summary`` (per target: mean, std,
        min and max accuracy and achieved ratio), ``fp32_accuracy``, ``files``.
    """
    from hwq.workloads import get_workload
    from hwq.workloads.train import evaluate

    spec = get_workload(workload)
    if compressions is None:
        compressions = WORKLOAD_COMPRESSIONS.get(workload, DEFAULT_COMPRESSIONS)
    options = {**spec.method_options.get("joint", {}), **options}
    model = spec.pretrained(progress=progress)
    data = spec.load_data()
    fp32 = evaluate(model, data.x_test, data.y_test)
    runs = [_run_one(model, data, float(c), int(s), layout=layout, progress=progress,
                     options=dict(options))
            for c in compressions for s in seeds]
    summary = []
    for c in compressions:
        rows = [r for r in runs if r["compression_target"] == float(c)]
        acc = [r["accuracy"] for r in rows]
        ratio = [r["compression_ratio"] for r in rows]
        summary.append({
            "compression_target": float(c),
            "seeds": len(rows),
            "accuracy_mean": statistics.fmean(acc),
            "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "accuracy_min": min(acc),
            "accuracy_max": max(acc),
            "compression_ratio_mean": statistics.fmean(ratio),
            "within_1_point": statistics.fmean(acc) >= fp32 - 1.0,
        })
    result: dict[str, Any] = {
        "bench": "joint",
        "workload": workload,
        "what": "joint sparsity-quantization (ADMM, Yang et al. 2020): accuracy of the "
                "integer network (golden model) vs weight compression ratio",
        "ratio": "32 * weights / bits of the sparse weight stream (values + positions + "
                 "codebooks + headers; biases and scales not counted)",
        "fp32_accuracy": fp32,
        "compressions": [float(c) for c in compressions],
        "seeds": [int(s) for s in seeds],
        "options": options,
        "summary": summary,
        "runs": runs,
        "files": {},
    }
    if out_dir is not None:
        out = Path(out_dir)
        if plot:
            png = out / "joint.png"
            if plot_joint(result, png):
                result["files"]["plot"] = str(png)
        path = out / "joint.json"
        result["files"]["json"] = str(path)
        atomic_write(path, (json.dumps(result, indent=2, default=_json) + "\n").encode())
    return result


def _json(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def plot_joint(result: dict[str, Any], path: str | Path) -> bool:
    """Plot accuracy vs achieved compression ratio; ``False`` if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    runs = result["runs"]
    ax.scatter([r["compression_ratio"] for r in runs], [r["accuracy"] for r in runs],
               s=14, alpha=0.6, label="runs (seeds)")
    s = result["summary"]
    ax.errorbar([r["compression_ratio_mean"] for r in s], [r["accuracy_mean"] for r in s],
                yerr=[r["accuracy_std"] for r in s], marker="o", capsize=3,
                label="mean +/- std")
    fp32 = result["fp32_accuracy"]
    ax.axhline(fp32, color="k", lw=0.8, ls="--", label=f"fp32 {fp32:.2f} %")
    ax.axhline(fp32 - 1, color="r", lw=0.8, ls=":", label="fp32 - 1 point")
    ax.set_xscale("log")
    ax.set_xlabel("weight compression ratio (32-bit weights / all stored bits)")
    ax.set_ylabel("test accuracy, integer network (%)")
    ax.set_title(f"joint on {result.get('workload', 'digits')}")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


def format_joint(result: dict[str, Any]) -> str:
    """The summary table of :func:`bench_joint`."""
    lines = [f"joint on {result.get('workload', 'digits')} "
             f"(fp32 {result['fp32_accuracy']:.2f} %), "
             f"seeds {result['seeds']}",
             "  target   ratio  accuracy mean +/- std (min..max)"]
    for r in result["summary"]:
        lines.append(f"  {r['compression_target']:6.0f}x {r['compression_ratio_mean']:6.1f}x"
                     f"  {r['accuracy_mean']:6.2f} +/- {r['accuracy_std']:4.2f} "
                     f"({r['accuracy_min']:.2f}..{r['accuracy_max']:.2f})")
    return "\n".join(lines)
