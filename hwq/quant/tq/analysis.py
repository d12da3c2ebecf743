"""The target-independent part of TQ (steps 1-4 of :mod:`hwq.quant.tq`): calibration
set, covariances, transforms, coding gains and curves, computed once per (model, transform,
seed) and allocated to any number of targets."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hwq.quant import transforms as tf
from hwq.quant.base import fold_batchnorm, weight_layers
from hwq.quant.graph import GraphModel
from hwq.quant.tq.curves import (
    BlockCurves,
    _layer_curves,
    gradient_covariances,
)
from hwq.quant.tq.plan import (
    BIT_DEPTHS,
    DISTORTIONS,
    LayerPlan,
    _check_positive_int,
    _is_transformed,
)
from hwq.quant.transforms import (
    TRANSFORMS,
    Transform,
    as_vectors,
    check_transform,
    check_variant,
    coding_gain_db,
    covariance,
    damp,
)


@dataclass(eq=False)
class TQAnalysis:
    """The target-independent part of TQ: transforms, coding gains, distortion curves.

    Made by :func:`analyze_tq`; :func:`quantize_tq` takes it (``analysis=``) to allocate
    several targets without recomputing the curves (the expensive step).
    """

    folded: GraphModel
    plans: list[LayerPlan]
    curves: list[BlockCurves]
    gains: dict[str, dict[str, float]]
    gain_terms: dict[str, dict[str, list[float]]]
    original_weights: int
    settings: dict[str, Any]
    timings: dict[str, float]


def analyze_tq(
    model: nn.Module,
    data: Any,
    *,
    transform: str = "elt",
    variant: str = "row",
    blocks: int = 16,
    seed: int = 0,
    calib_size: int = 256,
    probes: int = 16,
    damping: float = 1e-3,
    grid: int = 8,
    basis_bits: int = 8,
    distortion: str = "mse",
    curves: bool = True,
    num_threads: int | None = 1,
) -> TQAnalysis:
    """Steps 1-4 of TQ (module docstring): covariances, transforms, gains, curves.

    Parameters as in :func:`quantize_tq`; ``curves=False`` stops after the coding gains
    (the analysis then has no curves and cannot be allocated). ``num_threads``: torch
    intra-op threads during the analysis (restored afterwards); 1 by default, since the
    many small forward passes run much slower with several threads on a busy machine.
    """
    with _threads(num_threads):
        return _analyze(model, data, transform=transform, variant=variant, blocks=blocks,
                        seed=seed, calib_size=calib_size, probes=probes, damping=damping,
                        grid=grid, basis_bits=basis_bits, distortion=distortion,
                        curves=curves)


@contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    if num_threads is not None:
        _check_positive_int("number of threads", num_threads)
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _analyze(model: nn.Module, data: Any, *, transform: str, variant: str, blocks: int,
             seed: int, calib_size: int, probes: int, damping: float, grid: int,
             basis_bits: int, distortion: str, curves: bool) -> TQAnalysis:
    check_transform(transform)
    check_variant(variant)
    _check_positive_int("blocks", blocks)
    _check_positive_int("calibration size", calib_size)
    _check_positive_int("probes", probes)
    _check_positive_int("grid", grid)
    _check_positive_int("seed", seed, 0)
    if isinstance(basis_bits, bool) or not isinstance(basis_bits, int) \
            or not 2 <= basis_bits <= 8:
        raise ValueError(f"TQ basis bits must be an integer in 2..8, not {basis_bits!r}")
    if not isinstance(distortion, str) or distortion not in DISTORTIONS:
        raise ValueError(f"TQ distortion must be one of {', '.join(DISTORTIONS)}, "
                         f"not {distortion!r}")
    settings = dict(transform=transform, variant=variant, blocks=blocks, seed=seed,
                    calib_size=calib_size, probes=probes, damping=damping, grid=grid,
                    basis_bits=basis_bits, distortion=distortion)
    timings: dict[str, float] = {}
    folded = fold_batchnorm(model)
    for p in folded.parameters():
        p.requires_grad_(False)
    layers = weight_layers(folded)
    original_weights = sum(int(m.weight.numel()) for _, m in layers)
    gen = torch.Generator().manual_seed(seed)
    x_train = data.x_train
    idx = torch.randperm(x_train.shape[0], generator=gen)[: min(calib_size, x_train.shape[0])]
    x_cal = x_train[idx.sort().values]

    # covariances, transforms, coding gains
    t = time.perf_counter()
    mixing = {name: variant for name, m in layers if _is_transformed(m, variant)}
    c_gg_all = gradient_covariances(folded, x_cal, mixing, probes=probes, seed=seed,
                                    distortion=distortion)
    plans: list[LayerPlan] = []
    gains: dict[str, dict[str, float]] = {}
    gain_terms: dict[str, dict[str, list[float]]] = {}
    for name, m in layers:
        shape = tuple(m.weight.shape)
        vec_variant = variant if name in mixing else "column"
        theta_v = as_vectors(m.weight, vec_variant)
        if name in mixing:
            c_tt = covariance(theta_v)
            c_gg = damp(c_gg_all[name], damping)
            gains[name], gain_terms[name] = {}, {}
            for tname in TRANSFORMS:
                tr = _normalized(tf.transform(tname, c_tt, c_gg), c_tt)
                total, wt, gt = coding_gain_db(c_tt, c_gg, tr.U, tr.U_inv)
                gains[name][tname] = float(total)
                gain_terms[name][tname] = [float(wt), float(gt)]
                if tname == transform:
                    chosen = tr
            depths = BIT_DEPTHS
            has_basis = True
        else:
            n = theta_v.shape[1]
            chosen = Transform("identity", np.eye(n), np.eye(n), np.zeros(n))
            depths = tuple(d for d in BIT_DEPTHS if d > 0)
            has_basis = False
            if isinstance(m, nn.Conv2d) and m.in_channels == 1 and variant == "row":
                gains[name] = dict.fromkeys(TRANSFORMS, 0.0)  # 1 x 1 transforms: no gain
        size = chosen.size
        plans.append(LayerPlan(
            name=name, variant=vec_variant, transform=chosen, has_basis=has_basis,
            blocks=[np.asarray(b) for b in np.array_split(np.arange(size), min(blocks, size))],
            depths=depths, coef=theta_v @ chosen.U, weight_shape=shape, basis_bits=basis_bits))
    timings["transforms"] = time.perf_counter() - t

    # operational rate-distortion curves
    t = time.perf_counter()
    block_curves: list[BlockCurves] = []
    with torch.no_grad():
        env = folded.run_all(x_cal) if curves else {}
        y_ref = env.get(folded.output)
        inputs = {n.name: n.inputs[0] for n in folded.nodes}
        for plan, (name, m) in zip(plans, layers, strict=True) if curves else ():
            def rest(out: torch.Tensor, name: str = name) -> torch.Tensor:
                return folded.run_rest(env, name, out)
            c = _layer_curves(plan, m, env[inputs[name]], rest, y_ref, grid, distortion)
            if plan.has_basis:  # the first block keeps >= 2 bits (a layer keeps a channel)
                c.distortion[0, plan.depths.index(0)] = np.inf
            block_curves.append(c)
    timings["curves"] = time.perf_counter() - t
    return TQAnalysis(folded, plans, block_curves, gains, gain_terms, original_weights, settings,
                      timings)




def _normalized(tr: Transform, c_tt: np.ndarray) -> Transform:
    """Scale an ELT so that ``trace(U^T C_tt U) = trace(C_tt)`` (KLT, identity unchanged)."""
    if tr.name != "elt":
        return tr
    energy = float(np.trace(tr.U.T @ c_tt @ tr.U))
    if energy <= 0:
        return tr
    c = math.sqrt(float(np.trace(c_tt)) / energy)
    return Transform(tr.name, tr.U * c, tr.U_inv / c, tr.values * c * c)
