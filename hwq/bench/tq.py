"""Results of ``tq`` on a workload: accuracy vs average bits, next to the baselines.

:func:`bench_tq` quantizes a workload's pretrained model (digits by default; ``workload=``
lenet5, resnet8 or sepnet on MNIST-28) with TQ for every transform
(ELT, KLT, identity), target rate and retraining budget, over several seeds, and with the
baselines at the same (integer) bit widths and retraining epochs: ``uniform`` (PTQ) /
``uniform-qat`` and ``inq``. Every accuracy is that of the **integer network run by the
golden model** (:func:`hwq.golden.run`) on the test images (digits: 540, one = 0.19 points);
the test cross-entropy of its dequantized logits is reported too, since it separates
methods that the accuracy (near its ceiling on this task) does not, and so is the number of
test images whose prediction differs from the fp32 model's (``flips``: a faithful quantizer
keeps the fp32 model's few mistakes, so an accuracy above fp32 is chance).

Retraining budgets are equal in epochs over the training set: TQ retrains ``E`` epochs,
uniform QAT ``E`` epochs, INQ ``ceil(E / 3)`` epochs after each of its three partition steps
(schedule 0.5, 0.75, 0.875, 1). The baselines store ``b`` bits per weight for every weight
(``b * 15248`` bits on digits), TQ at most its target average (basis included; see
:mod:`hwq.quant.tq`). With ``progress``, one line per run goes to stderr.

The seeds redraw TQ's calibration subset, random projections and training orders on the one
reference fp32 model (:func:`hwq.workloads.digits.pretrained`). With ``model_seeds`` the
spread is over fp32 models instead: each seed ``s`` quantizes its own model, trained with
seed ``s`` (``pretrained(seed=s)``, same recipe, cached), with TQ seed ``s`` too; rows then
carry ``model_seed`` and that model's ``fp32_accuracy``, and means, standard deviations and
flips are over models.

The result dict is written as JSON (``tq.json``) with a plot (``tq.png``) in ``out_dir``.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hwq import golden
from hwq.bench import DEFAULT_OUT, log_line, save_figure, time_left
from hwq.bench.pool import check_jobs, run_tasks
from hwq.quant.base import fold_batchnorm, weight_layers
from hwq.quant.integerize import fake_quant_model
from hwq.quant.tq import analyze_tq, quantize_tq
from hwq.quant.transforms import TRANSFORMS, check_transform
from hwq.serialize import atomic_write
from hwq.workloads import Workload, get_workload
from hwq.workloads.train import evaluate

__all__ = ["bench_tq", "format_tq", "plot_tq"]



def _network_metrics(model, qweights, data, fp32_pred: np.ndarray) -> dict[str, float]:
    """Golden accuracy (%), test cross-entropy (nats), flips vs fp32 and stored bits."""
    fq = fake_quant_model(model, qweights, data.x_train)
    net = fq.to_network()
    xi = golden.quantize_input(data.x_test.numpy(), net.input_scale, net.act_bits)
    out = golden.run(net, xi)
    y = data.y_test.numpy()
    logits = torch.from_numpy(out.astype(np.float64) * net.ops[-1].out_scale)
    return {
        "accuracy": 100.0 * float((out.argmax(axis=1) == y).mean()),
        "test_nll": float(F.cross_entropy(logits, data.y_test.to(torch.int64))),
        "flips": int((out.argmax(axis=1) != fp32_pred).sum()),
        "weight_bits_total": int(net.weight_storage_bits()),
        "mismatches": int((fq.to_int(data.x_test).numpy() != out).any(axis=1).sum()),
    }


#: Seeds of :func:`bench_tq` when neither ``seeds`` nor ``model_seeds`` is given.
DEFAULT_SEEDS = (0, 1, 2)


def bench_tq(
    *,
    bits: Sequence[float] = (2.0, 3.0),
    transforms: Sequence[str] = TRANSFORMS,
    retrain_epochs: Sequence[int] = (0, 3),
    seeds: Sequence[int] | None = None,
    model_seeds: Sequence[int] | None = None,
    baselines: bool = True,
    calib_size: int = 256,
    out_dir: str | Path | None = DEFAULT_OUT,
    plot: bool = True,
    progress: bool = False,
    workload: str = "digits",
    resume: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    """Accuracy vs average bits of TQ (each transform, with and without retraining).

    Parameters
    ----------
    bits : sequence of float
        TQ target average bits (basis included); the integer ones also run the baselines.
    transforms : sequence of {"elt", "klt", "identity"}
    retrain_epochs : sequence of int
        retraining budgets in epochs (0: post-training).
    seeds : sequence of int or None
        at least 3 for tables (METHODS.md); each seed redraws TQ's calibration subset and
        random projections and every training order, on the reference fp32 model.
        ``None``: :data:`DEFAULT_SEEDS`, unless ``model_seeds`` is given.
    model_seeds : sequence of int or None
        distinct seeds >= 0, instead of ``seeds``: seed ``s`` quantizes the fp32 model trained
        with seed ``s`` (:func:`hwq.workloads.digits.pretrained`, trained on first use,
        a few seconds each) with TQ (and baseline) seed ``s``.
    baselines : bool
        also run uniform / uniform-qat and inq at the integer ``bits``.
    calib_size : int
        TQ calibration images.
    out_dir : path or None
        where ``tq.json`` (and ``tq.png``) go; ``None`` writes nothing.
    plot : bool
        draw ``tq.png`` (matplotlib, Agg backend).
    progress : bool
    workload : str, default "digits"
        a :data:`hwq.workloads.WORKLOADS` name: its pretrained model(s) and data.
    resume : bool, default False
        keep the runs of ``out_dir/tq.json`` (written after every run, ``complete: false``
        until the end) when it holds a bench of the same workload and settings, and run only
        the missing ones; without it an existing file is overwritten.
    jobs : int, default 1
        worker processes (:func:`hwq.bench.pool.run_tasks`), one task per (seed, transform)
        analysis with its runs and one per seed's baselines; the runs equal those of
        ``jobs=1``. With ``jobs > 1`` a task's runs are logged and saved when it ends.

    Returns
    -------
    dict
        ``runs`` (one entry per run), ``summary`` (mean/std/min/max over seeds, or models, per
        configuration), ``coding_gain_db`` (per seed, layer, transform), ``fp32_accuracy``
        (%; with ``model_seeds`` the mean over models, each in
        ``fp32_accuracy_by_model_seed``), ``settings``, ``timings``.

    Raises
    ------
    ValueError
        a bad option (named, with the value received and what is allowed), before any work.
    """
    for t in transforms:
        check_transform(t)
    jobs = check_jobs(jobs)
    if seeds is not None and model_seeds is not None:
        raise ValueError("bench_tq takes seeds or model_seeds, not both (with model_seeds "
                         "each model's training seed is also its TQ seed)")
    if model_seeds is not None:
        _check_model_seeds(model_seeds)
        seeds = list(model_seeds)
    elif seeds is None:
        seeds = DEFAULT_SEEDS
    if not seeds:
        raise ValueError("bench_tq needs at least one seed")
    spec = get_workload(workload)
    _check_budgets(bits, retrain_epochs, spec)
    t0 = time.perf_counter()
    data = spec.load_data()
    reference = None if model_seeds is not None else _fp32(spec.pretrained(progress=progress),
                                                           data)
    settings = {"bits": list(bits), "transforms": list(transforms),
                "retrain_epochs": list(retrain_epochs), "seeds": list(seeds),
                "calib_size": calib_size, "act_bits": 8, "test_images": len(data.y_test),
                "average_bits": "weight code bits of the integer network (basis "
                                "included) / weights of the original network",
                "baseline_options": {m: dict(spec.method_options.get(m, {}))
                                     for m in ("uniform-qat", "inq")}}
    if model_seeds is not None:
        settings["model_seeds"] = list(model_seeds)
        settings["fp32_models"] = (f"the {workload} model trained with seed s per model seed "
                                   "s (its recipe with seed s); TQ and baseline seed s")
    json_path = None if out_dir is None else Path(out_dir) / "tq.json"
    kept = _resumed(json_path, workload, settings) if resume and json_path else {}
    fp32_by_model: dict[str, float] = {}
    runs: list[dict[str, Any]] = list(kept.get("runs", []))
    gains: dict[str, Any] = dict(kept.get("coding_gain_db", {}))
    done_keys = {_run_key(r) for r in runs}
    base_bits = [int(b) for b in bits if float(b) == int(b) and 2 <= int(b) <= 7]
    total = len(seeds) * len(retrain_epochs) * (
        len(transforms) * len(bits) + (2 * len(base_bits) if baselines else 0))
    done = [len(runs)]
    kept_runs, started = len(runs), time.perf_counter()
    if runs:
        log_line(progress, f"resuming {json_path}: {len(runs)} runs kept")

    def result_dict(complete: bool) -> dict[str, Any]:
        fp32 = reference[1] if reference is not None else (
            statistics.fmean(fp32_by_model.values()) if fp32_by_model else None)
        result: dict[str, Any] = {
            "benchmark": "tq",
            "workload": workload,
            "complete": complete,
            "fp32_accuracy": fp32,
            "settings": settings,
            "coding_gain_db": gains,
            "summary": _summarize(runs),
            "runs": runs,
            "timings": {"total": time.perf_counter() - t0},
        }
        if model_seeds is not None:
            result["fp32_accuracy_by_model_seed"] = fp32_by_model
        return result

    def log(run: dict[str, Any]) -> None:
        done[0] += 1
        done_keys.add(_run_key(run))
        left = time_left(time.perf_counter() - started, done[0] - kept_runs, total - done[0])
        log_line(progress, f"[{done[0]}/{total}] {_label(run)} seed {run['seed']}: "
                           f"{run['accuracy']:.2f} % ({run['seconds']:.1f} s)"
                           + (f"; {left}" if left else ""))
        if json_path is not None:          # each run saved: an interrupted bench resumes
            _write(json_path, result_dict(False))

    tasks = []
    for seed in seeds:
        if reference is None:  # one model per seed
            model, fp32, fp32_pred = _fp32(spec.pretrained(seed=seed, progress=progress),
                                           data)
            fp32_by_model[str(seed)] = fp32
            extra = {"model_seed": seed, "fp32_accuracy": fp32}
        else:
            model, fp32, fp32_pred = reference
            extra = {}
        for transform in transforms:
            todo = [(b, e) for b in bits for e in retrain_epochs
                    if ("tq", transform, float(b), e, seed) not in done_keys]
            if todo:
                tasks.append((seed, transform, todo, model, fp32_pred, extra))
        if baselines and any(
                (name, None, float(b), e, seed) not in done_keys
                for b in base_bits for e in retrain_epochs
                for name in _baseline_names(e)):
            tasks.append((seed, None, base_bits, model, fp32_pred, extra))
    shared = (data, retrain_epochs, calib_size, frozenset(done_keys), spec.method_options,
              progress and jobs == 1)

    def accept(run: dict[str, Any], seed_gains: dict[str, Any] | None) -> None:
        if seed_gains is not None:
            gains[str(run["seed"])] = seed_gains
        runs.append(run)
        log(run)

    if jobs == 1:   # in this process: every run is logged and saved as it ends
        for task in tasks:
            _group(shared, task, accept)
    else:
        log_line(progress and len(tasks) > 1,
                 f"{len(tasks)} groups of runs over {min(jobs, len(tasks))} worker processes "
                 f"(a (seed, transform) analysis with its runs, or a seed's baselines)")
        for _, (group_runs, seed_gains) in run_tasks(_group, tasks, shared, jobs):
            for run in group_runs:
                accept(run, seed_gains)
    # plan order (seed, then transform, then the baselines), whatever order the tasks ended in
    runs.sort(key=lambda r: (list(seeds).index(r["seed"]),
                             list(transforms).index(r["transform"]) if r["method"] == "tq"
                             else len(transforms)))

    result = result_dict(True)
    if json_path is not None:
        _write(json_path, result)
        if plot:
            plot_tq(result, Path(out_dir) / "tq.png")
    return result


def _group(shared: tuple[Any, ...], task: tuple[Any, ...],
           on_run: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One task of :func:`bench_tq`: a (seed, transform) analysis and its runs, or (transform
    ``None``) a seed's baselines; ``on_run(run, gains)`` is called as each run ends (in this
    process). Returns the runs and the analysis's coding gains (``None`` for baselines)."""
    data, retrain_epochs, calib_size, done_keys, method_options, progress = shared
    seed, transform, todo, model, fp32_pred, extra = task
    out: list[dict[str, Any]] = []
    if transform is None:
        def each(run: dict[str, Any]) -> None:
            out.append(run)
            if on_run is not None:
                on_run(run, None)
        _baselines(model, data, todo, retrain_epochs, seed, progress, fp32_pred, extra, each,
                   done_keys, method_options)
        return out, None
    t = time.perf_counter()
    analysis = analyze_tq(model, data, transform=transform, seed=seed, calib_size=calib_size)
    t_analysis = time.perf_counter() - t
    for b, epochs in todo:
        t = time.perf_counter()
        res = quantize_tq(model, data, bits=b, transform=transform, seed=seed,
                          retrain_epochs=epochs, analysis=analysis, calib_size=calib_size,
                          progress=progress)
        metrics = _network_metrics(res.model, res.qweights, data, fp32_pred)
        out.append({
            "method": "tq", "transform": transform, "target_bits": float(b),
            "average_bits": res.info["average_bits"], "retrain_epochs": epochs,
            "seed": seed, **extra, **metrics,
            "weight_only_accuracy": evaluate(res.model, data.x_test, data.y_test),
            "pruned_channels": {n: v["pruned_channels"] for n, v in res.info["layers"].items()},
            "seconds": time.perf_counter() - t + t_analysis,
        })
        if on_run is not None:
            on_run(out[-1], analysis.gains)
    return out, analysis.gains


def _run_key(run: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a run: method, transform, target bits, retraining epochs, seed."""
    return (run["method"], run["transform"], float(run["target_bits"]),
            run["retrain_epochs"], run["seed"])


def _write(path: Path, result: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(result, indent=2) + "\n").encode())


def _resumed(path: Path, workload: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The result kept in ``path``, an earlier bench of the same workload and settings (an
    absent file: nothing)."""
    try:
        old = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot resume from {path}: {exc}") from None
    if not isinstance(old, dict) or old.get("benchmark") != "tq" or not isinstance(
            old.get("runs"), list):
        raise ValueError(f"Cannot resume from {path}: not a tq bench result")
    for key, want in (("workload", workload), ("settings", settings)):
        if old.get(key) != json.loads(json.dumps(want)):
            raise ValueError(f"Cannot resume from {path}: it was written with other {key} "
                             f"({old.get(key)!r}); remove it or run without --resume")
    return old


def _check_model_seeds(model_seeds: Sequence[int]) -> None:
    for s in model_seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"Model seeds must be non-negative integers, not {s!r} "
                             f"(in {list(model_seeds)!r})")
    if not model_seeds:
        raise ValueError("bench_tq needs at least one model seed")
    if len(set(model_seeds)) != len(model_seeds):
        raise ValueError(f"Model seeds must be distinct, not {list(model_seeds)!r}")


def _check_budgets(bits: Sequence[float], retrain_epochs: Sequence[int],
                   spec: Workload) -> None:
    """The checks of :func:`quantize_tq`, made before any model is trained or quantized."""
    from hwq.quant.tq import smallest_bits

    need, weights = smallest_bits(spec.build())  # the shapes, not the values
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int | float) or not (
                math.isfinite(b) and 0 < b <= 8):
            raise ValueError(f"TQ average bits must be a number in (0, 8], not {b!r}")
        if b * weights < need:
            raise ValueError(f"TQ average bits must be at least {need / weights:.4g} for the "
                             f"{spec.name} model (its smallest allocation), not {b!r}")
    for e in retrain_epochs:
        if isinstance(e, bool) or not isinstance(e, int) or e < 0:
            raise ValueError(f"Retrain epochs must be non-negative integers, not {e!r}")
    if not bits or not retrain_epochs:
        raise ValueError("bench_tq needs at least one target (bits) and one retraining budget")


def _fp32(model: torch.nn.Module, data: Any
          ) -> tuple[torch.nn.Module, float, np.ndarray]:
    """The model (eval mode), its test accuracy (%) and its test predictions."""
    model.eval()
    with torch.no_grad():
        pred = model(data.x_test).argmax(dim=1).numpy()
    return model, evaluate(model, data.x_test, data.y_test), pred


def _baseline_names(epochs: int) -> tuple[str, str]:
    """The baseline methods at a retraining budget: uniform PTQ or QAT, and INQ."""
    return ("uniform-qat" if epochs else "uniform", "inq")


def _baselines(model, data, bits, retrain_epochs, seed, progress, fp32_pred, extra,
               log=None, done=frozenset(), method_options=None) -> list[dict[str, Any]]:
    """uniform / uniform-qat and inq at each width of ``bits``, but the runs whose
    :func:`_run_key` is in ``done``; ``average_bits`` is the stored weight bits over
    ``model``'s conv/linear weights; ``log`` is called per run; ``method_options`` are the
    workload's defaults per method (:attr:`hwq.workloads.Workload.method_options`, for example
    the residual nets' lower retraining lr)."""
    from hwq.quant.inq import quantize_inq
    from hwq.quant.uniform import quantize_uniform, quantize_uniform_qat

    n_weights = sum(mod.weight.numel() for _, mod in weight_layers(model))
    defaults = method_options or {}
    runs = []
    for b in bits:
        for epochs in retrain_epochs:
            for name in _baseline_names(epochs):
                if (name, None, float(b), epochs, seed) in done:
                    continue
                t = time.perf_counter()
                folded = fold_batchnorm(model)
                if name == "uniform":
                    q = quantize_uniform(folded, data, bits=b)
                elif name == "uniform-qat":
                    q = quantize_uniform_qat(folded, data, bits=b, epochs=epochs, seed=seed,
                                             progress=progress,
                                             **defaults.get("uniform-qat", {}))
                else:
                    q = quantize_inq(folded, data, bits=b, epochs=math.ceil(epochs / 3),
                                     seed=seed, progress=progress, **defaults.get("inq", {}))
                metrics = _network_metrics(folded, q, data, fp32_pred)
                runs.append({
                    "method": name, "transform": None, "target_bits": float(b),
                    "average_bits": metrics["weight_bits_total"] / n_weights,
                    "retrain_epochs": epochs, "seed": seed, **extra, **metrics,
                    "weight_only_accuracy": evaluate(folded, data.x_test, data.y_test),
                    "seconds": time.perf_counter() - t,
                })
                if log is not None:
                    log(runs[-1])
    return runs


def _label(run: dict[str, Any]) -> str:
    name = run["method"] if run["transform"] is None else f"tq-{run['transform']}"
    return f"{name} {run['target_bits']:g}b {run['retrain_epochs']}ep"


def _summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(_label(r), []).append(r)
    out = {}
    for label, rs in groups.items():
        acc = [r["accuracy"] for r in rs]
        out[label] = {
            "method": rs[0]["method"], "transform": rs[0]["transform"],
            "target_bits": rs[0]["target_bits"], "retrain_epochs": rs[0]["retrain_epochs"],
            "seeds": len(rs),
            "accuracy_mean": statistics.fmean(acc),
            "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "accuracy_min": min(acc), "accuracy_max": max(acc),
            "test_nll_mean": statistics.fmean(r["test_nll"] for r in rs),
            "flips_mean": statistics.fmean(r["flips"] for r in rs),
            "average_bits_mean": statistics.fmean(r["average_bits"] for r in rs),
            "mismatches": sum(r["mismatches"] for r in rs),
        }
        if "model_seed" in rs[0]:
            out[label]["model_seeds"] = [r["model_seed"] for r in rs]
    return out


def format_tq(result: dict[str, Any]) -> str:
    """The summary as a text table (flips: mean test images predicted unlike fp32)."""
    by_model = result.get("fp32_accuracy_by_model_seed")
    name = result.get("workload", "digits")
    images = result.get("settings", {}).get("test_images", 540)
    if by_model:
        acc = list(by_model.values())
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        head = (f"{name} fp32 {result['fp32_accuracy']:.2f} +/- {std:.2f} % over {len(acc)} "
                f"models (seeds {' '.join(by_model)}; TQ seed = model seed)  (golden integer "
                f"networks, {images} test images, mean +/- std over models, flips vs own fp32)")
    else:
        head = (f"{name} fp32 {result['fp32_accuracy']:.2f} %  (golden integer networks, "
                f"{images} test images, mean +/- std over seeds)")
    lines = [head,
             f"{'configuration':<28}{'avg bits':>9}{'accuracy %':>16}{'test NLL':>10}"
             f"{'flips':>7}"]
    for label, s in sorted(result["summary"].items(),
                           key=lambda kv: (kv[1]["target_bits"], kv[1]["retrain_epochs"],
                                           kv[0])):
        lines.append(f"{label:<28}{s['average_bits_mean']:>9.3f}"
                     f"{s['accuracy_mean']:>9.2f} +/- {s['accuracy_std']:<4.2f}"
                     f"{s['test_nll_mean']:>10.4f}{s.get('flips_mean', math.nan):>7.1f}")
    return "\n".join(lines)


def plot_tq(result: dict[str, Any], path: str | Path) -> Path:
    """Accuracy vs average bits: one line per TQ transform and budget, baselines as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    series: dict[str, list[dict[str, Any]]] = {}
    for s in result["summary"].values():
        name = s["method"] if s["transform"] is None else f"tq-{s['transform']}"
        series.setdefault(f"{name}, {s['retrain_epochs']} ep", []).append(s)
    for ax, zoom in zip(axes, (False, True), strict=True):
        for label, ss in sorted(series.items()):
            ss = sorted(ss, key=lambda s: s["average_bits_mean"])
            x = [s["average_bits_mean"] for s in ss]
            y = [s["accuracy_mean"] for s in ss]
            e = [s["accuracy_std"] for s in ss]
            tq_series = label.startswith("tq")
            linestyle = (0, (4, 2)) if label.endswith(" 0 ep") else "-"
            ax.errorbar(x, y, yerr=e, label=label, linestyle=linestyle if tq_series else ":",
                        marker="o" if tq_series else "s", capsize=3)
        ax.axhline(result["fp32_accuracy"], color="k", linewidth=0.8, label="fp32")
        ax.set_xlabel("average weight bits (TQ: basis included)")
        ax.set_ylabel("test accuracy, integer network (%)")
        ax.grid(alpha=0.3)
        if zoom:
            ax.set_ylim(result["fp32_accuracy"] - 3.0, 100.2)
            ax.set_title("zoom: within 3 points of fp32")
        else:
            ax.set_title(f"{result.get('workload', 'digits')}: TQ vs baselines (golden model)")
            ax.legend(fontsize=7, ncol=2)
    path = save_figure(fig, path)
    return path
