"""Results table of the quantization front end: accuracy at 2..5 weight bits on a workload.

:func:`bench_quant` quantizes a workload's pretrained model (digits by default; lenet5,
resnet8, sepnet on MNIST-28) with every method, bit width and seed, and tabulates the accuracy
of the **integer network run by the golden model**
(:attr:`hwq.quant.api.QuantizeResult.accuracy`) on its test images (digits: 540, one image =
0.19 points; MNIST: 1,000): mean +/- std (sample, over seeds) and min..max per cell. Two
regimes (METHODS.md, "Measuring on the digits workload"):

post-training (no retraining)
    ``uniform`` (per-channel INT(b) rounding), ``pot`` (power-of-two rounding into INQ's set:
    :func:`~hwq.quant.inq.quantize_inq` with ``schedule=(1,)``, i.e. INQ without its
    retraining), ``slq-ptq`` (SLQ's k-means clustering with ``epochs=0``);
retraining, at one equal budget of ``E`` epochs per run (default 24)
    ``uniform-qat`` (``E`` epochs), ``inq``, ``slq``, ``mlq`` (``round(E / steps)`` epochs
    after each of their retraining steps, at least 1; the exact total is reported per cell:
    INQ's ten-step ternary schedule at 2 bits has nine retraining steps, so 24 becomes
    9 x 3 = 27), and the external peer.

The peer (``peers=True``, needs the ``[peers]`` extra, ``brevitas``): the same folded
network with ``brevitas.nn`` layers in place of its own -- ``QuantIdentity`` input (8 bits),
``QuantConv2d``/``QuantLinear`` with ``weight_bit_width=b`` and per-channel float weight
scales (``Int8WeightPerChannelFloat``: max-abs statistics, narrow range), ``QuantReLU`` /
``QuantHardTanh`` (8 bits), float biases, logits, pools and residual adds -- initialized
from the pretrained, BN-folded float weights, activation scales calibrated on the training
set (``calibration_mode``), then trained with QAT for ``E`` epochs with uniform QAT's
training settings (and the workload's overrides of them, e.g. resnet8's lr).
``brevitas-ptq`` is that model before training. Peer accuracies are **Brevitas's own float
fake-quant accuracy**, not run through hwq's integer pipeline. Without Brevitas (or if it
fails) the peer rows are skipped and ``peer`` says why.

Every result is written as ``quant.json``, ``quant.md`` (:func:`format_quant`) and
``quant.png`` (:func:`plot_quant`, accuracy vs bits, one line per method, std error bars).
Timings are wall-clock seconds on a shared machine: compare them within one run only.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwq import __version__
from hwq.bench import DEFAULT_OUT, log_line, save_figure, time_left
from hwq.bench import peer as brevitas_peer
from hwq.bench.pool import check_jobs, run_tasks
from hwq.serialize import atomic_write

__all__ = [
    "DEFAULT_BITS",
    "DEFAULT_EPOCHS",
    "DEFAULT_METHODS",
    "DEFAULT_OUT",
    "DEFAULT_SEEDS",
    "PEER_ROWS",
    "QUICK",
    "ROWS",
    "Row",
    "bench_quant",
    "format_quant",
    "plot_quant",
]

DEFAULT_BITS: tuple[int, ...] = (2, 3, 4, 5)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
#: Retraining budget per run, in epochs over the training set (the reference model trains
#: in 30). INQ's default at 3..7 bits: 8 epochs after each of its three retraining steps.
DEFAULT_EPOCHS = 24
#: ``--quick``: a smoke test.
QUICK: dict[str, Any] = {"bits": (3, 4), "seeds": (0,), "epochs": 3}
#: Activation width of every row (the hwq default; Brevitas rows: QuantIdentity/QuantReLU).
ACT_BITS = 8


@dataclass(frozen=True)
class Row:
    """One line of the table.

    Attributes
    ----------
    name : str
        the row's key (``methods=`` of :func:`bench_quant`).
    label : str
        what the table shows.
    regime : {"post-training", "retraining"}
    method : str
        the :func:`hwq.quant.quantize` method (``"brevitas"`` for the peer rows).
    options : dict
        fixed method options (the retraining epochs are added per bit width).
    bits : (int, int)
        bit widths the row is defined for.
    """

    name: str
    label: str
    regime: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    bits: tuple[int, int] = (2, 8)


#: The hwq rows, in table order.
ROWS: dict[str, Row] = {r.name: r for r in (
    Row("uniform", "uniform PTQ (per-channel INT)", "post-training", "uniform"),
    Row("pot", "power-of-two rounding (INQ set, no retraining)", "post-training", "inq",
        {"schedule": (1.0,)}, (2, 7)),
    Row("slq-ptq", "k-means codebook (SLQ clustering, no retraining)", "post-training", "slq",
        {"epochs": 0}),
    Row("uniform-qat", "uniform QAT (per-channel INT, STE)", "retraining", "uniform-qat"),
    Row("inq", "INQ (powers of two)", "retraining", "inq", {}, (2, 7)),
    Row("slq", "SLQ (k-means codebook)", "retraining", "slq"),
    Row("mlq", "MLQ (ternary codebook)", "retraining", "mlq", {}, (2, 2)),
)}
#: The peer rows (``peers=True``).
PEER_ROWS: dict[str, Row] = {r.name: r for r in (
    Row("brevitas-ptq", "Brevitas per-channel INT, calibrated, no retraining (fake-quant)",
        "post-training", "brevitas"),
    Row("brevitas-qat", "Brevitas per-channel INT QAT (fake-quant)", "retraining", "brevitas"),
)}
DEFAULT_METHODS: tuple[str, ...] = tuple(ROWS)


# --- retraining budgets ---------------------------------------------------------------------


def retrain_steps(row: str, bits: int, layers: int) -> int:
    """Retraining steps (each gets the same epochs) of ``row`` at ``bits``, with its defaults."""
    from hwq.quant import inq, slq

    if row == "inq":
        schedule = inq.TERNARY_SCHEDULE if bits == 2 else inq.DEFAULT_SCHEDULE
        return sum(1 for s in schedule if s < 1)
    if row == "slq":
        return len(slq.group_counts(slq.cluster_count(bits), slq.DEFAULT_SCHEDULE)) - 1
    if row == "mlq":
        return layers
    if row in ("uniform-qat", "brevitas-qat"):
        return 1
    return 0


def epochs_per_step(budget: int, steps: int) -> int:
    """``round(budget / steps)``, at least 1 (0 without steps)."""
    return 0 if steps == 0 else max(1, round(budget / steps))


# --- the bench ------------------------------------------------------------------------------


def bench_quant(
    *,
    bits: Sequence[int] = DEFAULT_BITS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    methods: Sequence[str] | None = None,
    peers: bool = True,
    progress: bool = True,
    out: str | os.PathLike[str] | None = None,
    epochs: int = DEFAULT_EPOCHS,
    plot: bool = True,
    model: nn.Module | None = None,
    data: Any = None,
    workload: str = "digits",
    resume: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    """Accuracy of every method at every bit width and seed on a workload; writes the results.

    Parameters
    ----------
    bits : sequence of int, default (2, 3, 4, 5)
        weight bit widths; a row skips the widths it does not take (MLQ: 2 only).
    seeds : sequence of int, default (0, 1, 2)
        at least 3 for tables (METHODS.md).
    methods : sequence of str, optional
        rows of :data:`ROWS` (default all, in table order).
    peers : bool, default True
        also run the Brevitas peer rows (:data:`PEER_ROWS`) if Brevitas imports.
    progress : bool, default True
        one line per run on stderr.
    out : path, optional
        the JSON result file (a path not ending in ``.json`` is a folder, holding
        ``quant.json``); the Markdown table (``.md``) and the plot (``.png``) go next to it.
        Default ``bench-results/quant.json``. The JSON is rewritten after every run
        (``complete: false`` until the end).
    epochs : int, default 24
        the retraining budget ``E`` of every retraining row, in epochs (>= 1).
    plot : bool, default True
        draw the plot (needs matplotlib; skipped with a note otherwise).
    model, data : optional
        the float model and its data (training and test tensors); default the workload's
        pretrained model and split.
    workload : str, default "digits"
        a :data:`hwq.workloads.WORKLOADS` name (``lenet5``, ``resnet8``, ...): its model, data
        and method option defaults (for example a lower retraining lr for the residual nets).
    resume : bool, default False
        keep the runs of an earlier, interrupted bench in ``out`` (same workload and
        settings, else ``ValueError``) and run only the missing ones: a table of hours can be
        built over several sittings. Without ``resume`` an existing file is overwritten.
    jobs : int, default 1
        worker processes (:func:`hwq.bench.pool.run_tasks`): the runs are independent and
        deterministic, so ``jobs=N`` gives the same runs as ``jobs=1`` in about 1/N of the
        time on N free cores (the file lists them in plan order either way).

    Returns
    -------
    dict
        ``settings``, ``fp32_accuracy``, ``rows`` (each row's label, regime and budget),
        ``summary`` (row -> bits -> cell: mean/std/min/max over seeds, epochs, seconds),
        ``runs`` (one entry per run), ``targets`` (the issue's accuracy targets, met or
        not), ``peer`` (Brevitas status), ``timings``, ``environment``, ``files``.
    """
    from hwq.quant.base import fold_batchnorm, weight_layers
    from hwq.workloads import get_workload
    from hwq.workloads.train import evaluate

    bits = _check_ints("bits", bits, 2, 8)
    jobs = check_jobs(jobs)
    seeds = _check_ints("seeds", seeds, 0, None)
    names = list(DEFAULT_METHODS if methods is None else methods)
    unknown = [n for n in names if n not in ROWS]
    if unknown or not names:
        raise ValueError(f"Unknown bench methods {unknown or names!r}; allowed: "
                         f"{', '.join(ROWS)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Retraining budget must be an integer >= 1 epochs, not {epochs!r}")
    spec = get_workload(workload)
    json_path = _json_path(out)

    t_start = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if model is None:
        model = spec.pretrained(progress=progress)
    if data is None:
        data = spec.load_data()
    fp32 = evaluate(model, data.x_test, data.y_test)
    layers = len(weight_layers(fold_batchnorm(model)))

    peer = brevitas_peer.peer_status(peers)
    rows = [ROWS[n] for n in names] + (list(PEER_ROWS.values()) if peer["available"] else [])
    plan = [(seed, b, row) for seed in seeds for b in bits for row in rows
            if row.bits[0] <= b <= row.bits[1] and row.name != "brevitas-ptq"]
    result: dict[str, Any] = {
        "bench": "quant",
        "workload": workload,
        "what": f"top-1 test accuracy (%) of the integer network on the golden model, "
                f"{len(data.y_test)} test images (1 image = {100 / len(data.y_test):.2f} "
                f"points), per weight bit width, mean/std/min/max over seeds; Brevitas rows: "
                f"Brevitas's own float fake-quant accuracy",
        "complete": False,
        "fp32_accuracy": fp32,
        "settings": {"bits": bits, "seeds": seeds, "methods": names, "peers": peers,
                     "test_images": len(data.y_test),
                     "retrain_budget_epochs": epochs, "act_bits": ACT_BITS,
                     "weight_layers": layers,
                     "method_options": {m: _jsonable(o) for m, o in
                                        sorted(spec.method_options.items())},
                     "budget_rule": "uniform-qat and brevitas-qat train E epochs; inq, slq "
                                    "and mlq train round(E / steps) (>= 1) epochs after each "
                                    "of their retraining steps; post-training rows 0"},
        "rows": {},
        "peer": peer,
        "runs": [],
    }
    kept = _resumed(json_path, result) if resume else []
    done = {(r["seed"], r["bits"], r["row"]) for r in kept}
    if kept:
        result["runs"] = kept
        result["resumed_runs"] = len(kept)
        log_line(progress, f"resuming {json_path}: {len(result['runs'])} runs kept")
    for row in rows:
        if not any(row.bits[0] <= b <= row.bits[1] for b in bits):
            continue
        result["rows"][row.name] = {
            "label": row.label, "regime": row.regime, "method": row.method,
            "options": _jsonable(row.options),
            "epochs": {str(b): _budget(row.name, b, layers, epochs) for b in bits
                       if row.bits[0] <= b <= row.bits[1]},
        }

    tasks = []
    for i, (seed, b, row) in enumerate(plan):
        names_done = PEER_ROWS if row.method == "brevitas" else (row.name,)
        if all((seed, b, name) in done for name in names_done):
            continue
        budget = _budget(row.name, b, layers, epochs)
        options: dict[str, Any] = {}
        if row.method != "brevitas":
            options = {**spec.method_options.get(row.method, {}), **row.options}
            if row.regime == "retraining":
                options["epochs"] = budget["epochs_per_step"]
        tasks.append((i, seed, b, row, budget, options))
    shared = (model, data, epochs, spec.method_options.get("uniform-qat", {}))
    count = len(plan) - len(tasks)
    started = time.perf_counter()
    if jobs > 1 and len(tasks) > 1:
        log_line(progress, f"{len(tasks)} runs over {min(jobs, len(tasks))} worker processes")
    for (_, seed, b, row, _, _), (runs, error) in run_tasks(_cell, tasks, shared, jobs):
        count += 1
        if row.method == "brevitas" and not peer["available"]:
            continue  # failed earlier in this bench
        if error is not None:  # the peer is optional: record why and drop it
            peer.update(available=False, error=error)
            log_line(progress, f"[{count}/{len(plan)}] Brevitas failed, peer rows skipped: "
                               f"{error}")
            result["runs"] = [r for r in result["runs"] if r["row"] not in PEER_ROWS]
            for name in PEER_ROWS:
                result["rows"].pop(name, None)
            continue
        result["runs"].extend(runs)
        line = ", ".join(f"{r['row']} {r['accuracy']:.2f}" for r in runs)
        left = time_left(time.perf_counter() - started, count - len(plan) + len(tasks),
                         len(plan) - count)
        log_line(progress, f"[{count}/{len(plan)}] {b}b seed {seed}: {line} % "
                           f"({runs[-1]['seconds']:.1f} s)" + (f"; {left}" if left else ""))
        _write_json(json_path, result)

    order = {(seed, b, row.name): i for i, (seed, b, row) in enumerate(plan)}
    result["runs"].sort(key=lambda r: order.get(
        (r["seed"], r["bits"], "brevitas-qat" if r["row"] == "brevitas-ptq" else r["row"]),
        len(plan)) + (0.5 if r["row"] == "brevitas-qat" else 0))
    result["summary"] = _summarize(result["runs"])
    result["targets"] = _targets(result["summary"], result["runs"], fp32)
    result["timings"] = {
        "total_s": time.perf_counter() - t_start,
        "by_row_s": {name: sum(r["seconds"] for r in result["runs"] if r["row"] == name)
                     for name in result["rows"]},
        "note": "wall clock on a shared machine (2 cores, other jobs): compare within one run",
    }
    result["environment"] = {
        "hwq_version": __version__, "torch": torch.__version__,
        "brevitas": peer.get("version"), "python": platform.python_version(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    result["complete"] = True
    md_path, png_path = json_path.with_suffix(".md"), json_path.with_suffix(".png")
    result["files"] = {"json": str(json_path), "markdown": str(md_path)}
    if plot:
        try:
            plot_quant(result, png_path)
            result["files"]["plot"] = str(png_path)
        except ImportError as exc:
            result["files"]["plot"] = None
            result["plot_note"] = f"no plot: {exc}"
    atomic_write(md_path, (format_quant(result) + "\n").encode())
    _write_json(json_path, result)
    return result


def _cell(shared: tuple[Any, ...], task: tuple[Any, ...]
          ) -> tuple[list[dict[str, Any]], str | None]:
    """One cell of the plan: its run(s) and, for a failed Brevitas pair, why (run by
    :func:`hwq.bench.pool.run_tasks`, here or in a worker process)."""
    from hwq.quant.api import quantize

    model, data, epochs, qat_overrides = shared
    _, seed, b, row, budget, options = task
    t = time.perf_counter()
    if row.method == "brevitas":
        try:
            return brevitas_peer.brevitas_runs(model, data, b, seed, epochs, qat_overrides,
                                              ACT_BITS), None
        except Exception as exc:  # the peer is optional: the caller drops its rows
            return [], f"{type(exc).__name__}: {exc}"
    res = quantize(model, row.method, bits=b, data=data, act_bits=ACT_BITS, seed=seed,
                   progress=False, **options)
    return [{
        "row": row.name, "method": row.method, "bits": b, "seed": seed,
        "options": _jsonable(options), **budget,
        "accuracy": res.accuracy,
        "fake_quant_accuracy": res.fake_quant_accuracy,
        "fake_quant_float_accuracy": res.fake_quant_float_accuracy,
        "weight_only_accuracy": res.weight_only_accuracy,
        "fp32_accuracy": res.fp32_accuracy,
        "output_mismatches": res.output_mismatches,
        "weight_bits_total": res.weight_bits_total,
        "compression_ratio": res.compression_ratio,
        "evaluated_by": "hwq integer network on the golden model",
        "timings": res.timings,
        "seconds": time.perf_counter() - t,
    }], None


def _budget(row: str, bits: int, layers: int, epochs: int) -> dict[str, int]:
    steps = retrain_steps(row, bits, layers)
    per = epochs_per_step(epochs, steps)
    return {"retrain_steps": steps, "epochs_per_step": per, "retrain_epochs": steps * per}


def _check_ints(name: str, values: Sequence[int], lo: int, hi: int | None) -> list[int]:
    try:
        out = list(values)
    except TypeError:
        out = []
    ok = bool(out) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
        for v in out) and len(set(out)) == len(out)
    if not ok:
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"Bench {name} must be distinct integers {rng}, not {values!r}")
    return out


def _resumed(path: Path, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs kept from ``path``, an earlier bench of the same workload and settings (an
    absent file: none)."""
    try:
        old = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot resume from {path}: {exc}") from None
    if not isinstance(old, dict) or old.get("bench") != "quant" or not isinstance(
            old.get("runs"), list):
        raise ValueError(f"Cannot resume from {path}: not a quant bench result")
    for key in ("workload", "settings"):
        if old.get(key) != json.loads(json.dumps(result[key])):
            raise ValueError(f"Cannot resume from {path}: it was written with other {key} "
                             f"({old.get(key)!r}); remove it or run without --resume")
    if old["runs"] and old.get("fp32_accuracy") != result["fp32_accuracy"]:
        raise ValueError(f"Cannot resume from {path}: its fp32 model differs "
                         f"({old.get('fp32_accuracy')} vs {result['fp32_accuracy']} %)")
    return old["runs"]


def _json_path(out: str | os.PathLike[str] | None) -> Path:
    if out is None:
        return DEFAULT_OUT / "quant.json"
    path = Path(out)
    return path if path.suffix == ".json" else path / "quant.json"


def _write_json(path: Path, result: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(result, indent=2) + "\n").encode())


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


# --- summary and targets --------------------------------------------------------------------


def _summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["row"], r["bits"]), []).append(r)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (row, b), rs in groups.items():
        acc = [r["accuracy"] for r in rs]
        cell: dict[str, Any] = {
            "n": len(rs), "seeds": [r["seed"] for r in rs],
            "accuracy_mean": statistics.fmean(acc),
            "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "accuracy_min": min(acc), "accuracy_max": max(acc),
            "retrain_epochs": rs[0]["retrain_epochs"],
            "epochs_per_step": rs[0]["epochs_per_step"],
            "retrain_steps": rs[0]["retrain_steps"],
            "seconds_mean": statistics.fmean(r["seconds"] for r in rs),
            "method_seconds_mean": statistics.fmean(r["timings"]["method"] for r in rs),
        }
        fq = [r["fake_quant_float_accuracy"] for r in rs]
        if all(v is not None for v in fq):
            cell["fake_quant_float_mean"] = statistics.fmean(fq)
            cell["int_vs_fake_quant_max_abs"] = max(abs(r["accuracy"] - f)
                                                    for r, f in zip(rs, fq, strict=True))
            cell["output_mismatches"] = sum(r["output_mismatches"] for r in rs)
            cell["weight_bits_total"] = rs[0]["weight_bits_total"]
            cell["compression_ratio"] = rs[0]["compression_ratio"]
        out.setdefault(row, {})[str(b)] = cell
    return out


def _targets(summary: dict[str, Any], runs: list[dict[str, Any]],
             fp32: float) -> list[dict[str, Any]]:
    """The issue's accuracy targets that the measured cells can decide (means over seeds)."""
    out: list[dict[str, Any]] = []
    hwq_runs = [r for r in runs if r["fake_quant_float_accuracy"] is not None]
    if hwq_runs:
        worst = max(hwq_runs, key=lambda r: abs(r["accuracy"] - r["fake_quant_float_accuracy"]))
        gap = abs(worst["accuracy"] - worst["fake_quant_float_accuracy"])
        out.append({
            "target": "integer accuracy = float fake-quant accuracy within 0.2 points "
                      "(every hwq run)",
            "value": gap, "limit": 0.2, "met": gap <= 0.2 + 1e-9,
            "detail": f"largest gap {gap:.2f} points ({worst['row']} {worst['bits']}b seed "
                      f"{worst['seed']}); exact torch integer path vs golden: "
                      f"{sum(r['output_mismatches'] for r in hwq_runs)} mismatching outputs, "
                      f"max |accuracy - fake_quant_accuracy| "
                      f"{max(abs(r['accuracy'] - r['fake_quant_accuracy']) for r in hwq_runs):.2f}",
        })
    for row, b, limit in (("inq", 5, 0.5), ("inq", 4, 0.5), ("inq", 3, 1.5), ("inq", 2, 3.0),
                          ("slq", 5, 0.5), ("slq", 4, 0.5)):
        cell = summary.get(row, {}).get(str(b))
        if cell is None:
            continue
        drop = fp32 - cell["accuracy_mean"]
        worst = fp32 - cell["accuracy_min"]
        out.append({
            "target": f"{row.upper()} {b} bits within {limit} points of fp32",
            "value": drop, "limit": limit, "met": drop <= limit + 1e-9,
            "detail": f"mean {cell['accuracy_mean']:.2f} % (fp32 {-drop:+.2f}), worst seed "
                      f"{cell['accuracy_min']:.2f} % (fp32 {-worst:+.2f}), "
                      f"{cell['retrain_epochs']} retraining epochs",
        })
    inq3, pot3 = summary.get("inq", {}).get("3"), summary.get("pot", {}).get("3")
    if inq3 is not None and pot3 is not None:
        diff = inq3["accuracy_mean"] - pot3["accuracy_mean"]
        out.append({
            "target": "INQ beats post-training power-of-two rounding at 3 bits",
            "value": diff, "limit": 0.0, "met": diff > 0,
            "detail": f"INQ {inq3['accuracy_mean']:.2f} % vs rounding "
                      f"{pot3['accuracy_mean']:.2f} % ({diff:+.2f} points; INQ min "
                      f"{inq3['accuracy_min']:.2f} vs rounding max {pot3['accuracy_max']:.2f})",
        })
    return out


# --- reports --------------------------------------------------------------------------------


def _row_order(result: dict[str, Any]) -> list[str]:
    rows = list(result["rows"])
    return ([r for r in rows if result["rows"][r]["regime"] == "post-training"]
            + [r for r in rows if result["rows"][r]["regime"] != "post-training"])


def format_quant(result: dict[str, Any]) -> str:
    """The results as Markdown: accuracy table, budgets and timings, targets, notes."""
    bits = result["settings"]["bits"]
    seeds = result["settings"]["seeds"]
    budget = result["settings"]["retrain_budget_epochs"]
    summary = result.get("summary") or _summarize(result["runs"])
    lines = [
        f"# Quantization results: {result['workload']} (`hwq bench quant`)",
        "",
        f"fp32 {result['fp32_accuracy']:.2f} %. Top-1 test accuracy in %, "
        f"{result['settings']['test_images']} test images (1 image = "
        f"{100 / result['settings']['test_images']:.2f} points), "
        f"{result['settings']['act_bits']}-bit activations. Cells: "
        f"mean ± std (min..max) over seeds {', '.join(map(str, seeds))}. hwq rows: the "
        f"integer network on the golden model; Brevitas rows: Brevitas's own float "
        f"fake-quant accuracy. Retraining rows: a budget of {budget} epochs per run "
        f"(exact epochs per cell below).",
        "",
        "| method | regime | " + " | ".join(f"{b} bits" for b in bits) + " |",
        "|---|---|" + "---|" * len(bits),
    ]
    for name in _row_order(result):
        info = result["rows"][name]
        cells = []
        for b in bits:
            c = summary.get(name, {}).get(str(b))
            cells.append("—" if c is None else
                         f"{c['accuracy_mean']:.2f} ± {c['accuracy_std']:.2f} "
                         f"({c['accuracy_min']:.2f}..{c['accuracy_max']:.2f})")
        lines.append(f"| {info['label']} | {info['regime']} | " + " | ".join(cells) + " |")

    lines += ["", "Retraining epochs (steps × epochs per step) and mean seconds per run "
              "(method time / whole run incl. integerize and golden evaluation):", "",
              "| method | " + " | ".join(f"{b} bits" for b in bits) + " |",
              "|---|" + "---|" * len(bits)]
    for name in _row_order(result):
        cells = []
        for b in bits:
            c = summary.get(name, {}).get(str(b))
            if c is None:
                cells.append("—")
                continue
            ep = (f"{c['retrain_epochs']} ep" if c["retrain_steps"] <= 1 else
                  f"{c['retrain_steps']}×{c['epochs_per_step']} = {c['retrain_epochs']} ep")
            cells.append(f"{ep}; {c['method_seconds_mean']:.1f} / {c['seconds_mean']:.1f} s")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    if result.get("targets"):
        lines += ["", "Targets (means over seeds):", ""]
        for t in result["targets"]:
            lines.append(f"- {'met' if t['met'] else '**NOT met**'}: {t['target']}: "
                         f"{t['detail']}")

    peer = result["peer"]
    lines += ["", "Notes:", ""]
    if peer.get("available"):
        lines.append(f"- Peer: Brevitas {peer.get('version')}, evaluated by "
                     f"{peer['evaluated_by']}. Setup: {peer['setup']}.")
    else:
        lines.append(f"- Peer: Brevitas rows skipped: "
                     f"{peer.get('error') or peer.get('reason', 'unavailable')}.")
    lines += [
        "- `uniform` and `pot` are deterministic (no seed dependence): their spread is 0.",
        "- `pot` is `quantize(..., 'inq', schedule=(1,))`: INQ's per-channel power-of-two set "
        "and midpoint rounding, without retraining. `slq-ptq` is SLQ with `epochs=0`.",
        f"- Budget rule: {result['settings']['budget_rule']}.",
    ]
    if "timings" in result:
        lines.append(f"- Total time {result['timings']['total_s'] / 60:.1f} min; "
                     f"{result['timings']['note']}.")
    return "\n".join(lines)


def plot_quant(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Accuracy vs bits, one line per row with std error bars; full range and a zoom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.get("summary") or _summarize(result["runs"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    low = 100.0
    names = [n for n in _row_order(result) if summary.get(n)]
    for ax, zoom in zip(axes, (False, True), strict=True):
        for i, name in enumerate(names):
            cells = summary[name]
            bs = sorted(int(b) for b in cells)
            # a small horizontal offset per row keeps overlapping error bars apart
            x = [b + 0.025 * (i - (len(names) - 1) / 2) for b in bs]
            y = [cells[str(b)]["accuracy_mean"] for b in bs]
            e = [cells[str(b)]["accuracy_std"] for b in bs]
            if result["rows"][name]["regime"] != "post-training":
                low = min(low, *(m - s for m, s in zip(y, e, strict=True)))
            post = result["rows"][name]["regime"] == "post-training"
            ax.errorbar(x, y, yerr=e, label=name, capsize=3, marker="o" if not post else "s",
                        linestyle="--" if post else "-")
        ax.axhline(result["fp32_accuracy"], color="k", linewidth=0.8, label="fp32")
        ax.set_xlabel("weight bits")
        ax.set_ylabel("test accuracy (%)")
        ax.set_xticks(result["settings"]["bits"])
        ax.grid(alpha=0.3)
        if zoom:
            ax.set_ylim(max(0.0, math.floor(low) - 1.0), 100.2)
            ax.set_title("zoom (retraining rows)")
        else:
            ax.set_title(f"{result['workload']}: accuracy vs weight bits "
                         "(mean ± std over seeds)")
            ax.legend(fontsize=7)
    path = save_figure(fig, path)
    return path
