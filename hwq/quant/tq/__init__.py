"""``tq``: Transform Quantization (Young, Zhe, Taubman, Girod, TPAMI 2021).

Per weight layer, a transform ``U`` of one weight axis (:mod:`hwq.quant.transforms`) turns
the weights into coefficients whose bit depths are allocated by rate-distortion
optimization over blocks of transform channels; the layer then runs as two integer layers.

Pipeline of :func:`quantize_tq` (on the BatchNorm-folded float model):

1. **Calibration set**: ``calib_size`` training images drawn with ``seed``.
2. **Covariances** per transformed layer (variant ``row``: the input-channel axis, ``m =
   C_in``): ``C_tt = X^T X / rows`` of the weight vectors, and the gradient covariance
   ``C_gg = (1 / (P N rows)) sum_p G_p^T G_p`` with ``G_p = d(sum_i v_pi^T y_i) / dTheta``
   reshaped to vectors, ``y_i`` the network's logits for calibration image ``i`` and
   ``v_pi ~ N(0, I)`` independent per image and probe ``p = 1..probes``. Since the ``v_pi``
   are independent and zero-mean, ``E[G_p^T G_p] = sum_i J_i^T J_i`` (the cross terms
   vanish): an unbiased estimate of the per-image ``E[(dy/dtheta)(dy/dtheta)^T]`` summed
   over the logits, from one backward pass per probe. Damped to ``C_gg + eps I``,
   ``eps = damping * trace(C_gg) / m``.
3. **Transform** ``elt`` / ``klt`` / ``identity`` and the **coding gain** in dB of all
   three (reported in ``info["coding_gain_db"]``). The ELT's ``U`` is scaled by one scalar
   so that the coefficients have the weights' mean energy (``trace(U^T C_tt U) = trace
   C_tt``; it does not change the gain, it keeps retraining well conditioned).
4. **Operational rate-distortion curves**: the coefficient channels (sorted by decreasing
   ``lambda``) are split into ``blocks`` contiguous blocks (``numpy.array_split``; 16 by
   default, fewer if the layer has fewer channels). For each block ``k``, bit depth ``R``
   and step ``Delta`` of a grid, only that block is quantized,
   ``q = Delta clip(round(t / Delta), -2^(R-1), 2^(R-1) - 1)`` (``R = 0``: ``q = 0``), and
   the output distortion ``D = mean_i ||y_i - y^_i||^2`` (logits, calibration images) is
   measured; ``D_k(R)`` is the smallest over the grid ``Delta = Delta_0 2^(-g/3)``,
   ``g = 0..grid-1``, ``Delta_0 = max|t_k| / (2^(R-1) - 1/2)``. ``R`` ranges over
   ``{0, 2, ..., 8}``: the hardware's INT formats are 2..8 bits, so there is no 1-bit depth.
5. **Allocation**: ``R_k = argmin_R D_k(R) + lambda * bits_k(R)``, ``bits_k(R) =
   coefficients_k * R + [R > 0] * basis_bits * (block channels) * m`` (a kept channel also
   keeps its row of the basis); ``lambda`` is bisected (log scale) to the largest average
   rate not above the target (see *Average bits*). Zero-bit blocks are **pruned**: their
   coefficient channels and basis rows are removed. The first block of each layer keeps
   at least 2 bits (a layer keeps at least one channel).
6. **Integerization** (structural): a transformed ``Conv2d`` ``name`` becomes
   ``Conv2d 1x1 name_basis`` (weights ``B = diag(Delta) U^-1[kept]``, no bias, INT
   ``basis_bits`` per output channel) followed by ``Conv2d k x k name`` (the integer
   coefficients ``round(T / Delta)``, scale 1, the original bias and padding, INT with a
   bit width per input channel: ``WeightSpec`` bits of shape ``(1, C_kept, 1, 1)``). The
   per-block steps sit in the basis rows, since ``T U^-1 x = (T diag(1/Delta)) (diag(Delta)
   U^-1 x)``. The model and the :class:`~hwq.quant.base.QuantizedWeight` s are what the
   generic :func:`hwq.quant.integerize.integerize` takes.
7. Optional **retraining** (``retrain_epochs``): the fake-quant model (8-bit activations as
   in the integer network, straight-through estimator) trains the coefficients at their
   allocated depths and steps, and the basis (INT ``basis_bits``, per-row scale
   recomputed), with Adam (``lr``) and a cosine schedule. The coefficients and basis are
   trained in natural units (``T``, ``U^-1``; the step folding is a fixed parametrization).

Output distortion (``distortion``)
----------------------------------
``mse`` (default, the paper): the squared error of the logits, ``||y - y^||^2``, both in the
probes of ``C_gg`` (``v ~ N(0, I)``) and in the curves. ``fisher``: the softmax's Fisher
metric ``(y - y^)^T (diag(p) - p p^T) (y - y^)``, ``p = softmax(y)`` (twice the second-order
KL divergence of the predictions; blind to a shift of all logits), in the curves and in the
probes (``v ~ N(0, diag(p) - p p^T)``, so ``C_gg`` is the Gauss-Newton matrix of the
cross-entropy). On digits it lowers the ELT's test cross-entropy but does not change the
accuracy beyond the test set's noise.

Layers that are not transformed -- the ``Linear`` classifier (its row basis would be
``128 x 128``, more weights than the layer), convolutions whose mixing axis has one
channel (the first conv, ``C_in = 1``: every row transform is the scalar 1, coding gain
0 dB for all three) and convolutions with fewer weight vectors than channels (``C_tt``
singular, e.g. the first conv in the column variant) -- are quantized by the same
allocation with the identity and no basis: blocks of *output* channels, a step per block as
the per-output-channel scale, a bit width per output channel in ``2..8`` (not pruned).

Variant ``column`` (``T = U^T Theta``, mixing output channels): the coefficient conv
``name`` (``C_kept`` outputs, a step and bit width per output channel, no bias) is followed
by ``Conv2d 1x1 name_basis`` (``S = U^-T`` restricted to the kept channels, INT
``basis_bits``, the original bias; the ReLU follows it).

Average bits
------------
``average_bits = (sum over every weight op of the integer network of its code bits) /
(number of Conv2d/Linear weights of the original network)``: coefficient weights at their
allocated widths, the basis weights at ``basis_bits``, untransformed layers at their widths,
pruned channels at 0; biases and requantization constants are not counted. It equals
``network.weight_storage_bits() / original weight count`` of the integerized network.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hwq.quant.base import QuantizedWeight, weight_layers
from hwq.quant.fakequant import FakeQuantModel
from hwq.quant.graph import GraphModel
from hwq.quant.tq.allocation import allocate, allocation_bits
from hwq.quant.tq.analysis import TQAnalysis, _threads, analyze_tq
from hwq.quant.tq.build import StepWeightQuant, _build, _fold_parametrizations
from hwq.quant.tq.curves import (
    BlockCurves,
    gradient_covariances,
    output_distortion,
    output_probe,
)
from hwq.quant.tq.plan import (
    BASIS_SUFFIX,
    BIT_DEPTHS,
    DISTORTIONS,
    LayerPlan,
    _check_positive_int,
    smallest_bits,
    uniform_quantize,
)
from hwq.workloads.train import fit

__all__ = [
    "BASIS_SUFFIX",
    "BIT_DEPTHS",
    "BlockCurves",
    "DISTORTIONS",
    "LayerPlan",
    "StepWeightQuant",
    "TQAnalysis",
    "TQResult",
    "allocate",
    "allocation_bits",
    "analyze_tq",
    "gradient_covariances",
    "output_distortion",
    "output_probe",
    "quantize_tq",
    "smallest_bits",
    "uniform_quantize",
]


@dataclass(eq=False)
class TQResult:
    """What :func:`quantize_tq` returns.

    Attributes
    ----------
    model : GraphModel
        the transformed float model holding the dequantized weights (basis layers
        ``<name>_basis`` inserted), BatchNorm-free: what to integerize.
    qweights : dict of str -> QuantizedWeight
        one per Conv2d/Linear of ``model``.
    info : dict
        JSON-serializable: ``average_bits``, ``coding_gain_db`` per layer and transform,
        per-layer allocations, ``lambda``, ``timings``...
    """

    model: GraphModel
    qweights: dict[str, QuantizedWeight]
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):  # model, qweights, info = quantize_tq(...)
        return iter((self.model, self.qweights, self.info))



def quantize_tq(
    model: nn.Module,
    data: Any,
    *,
    bits: float,
    transform: str = "elt",
    variant: str = "row",
    blocks: int = 16,
    retrain_epochs: int = 0,
    seed: int = 0,
    progress: bool = True,
    calib_size: int = 256,
    probes: int = 16,
    damping: float = 1e-3,
    grid: int = 8,
    basis_bits: int = 8,
    distortion: str = "mse",
    lr: float = 1e-3,
    batch_size: int = 64,
    act_bits: int = 8,
    calibration: str = "max",
    percentile: float = 99.99,
    num_threads: int | None = 1,
    analysis: TQAnalysis | None = None,
) -> TQResult:
    """Transform-quantize ``model`` to an average of ``bits`` bits per original weight.

    Parameters
    ----------
    model : nn.Module
        the float model (BatchNorm is folded here; ``model`` is not modified).
    data : object
        ``x_train``, ``y_train`` (:class:`hwq.workloads.digits.DigitsData`); the
        calibration images are ``calib_size`` of ``x_train``, retraining uses all of it.
    bits : float
        target average bits per weight of the original network, basis included (see the
        module docstring, *Average bits*); > 0.
    transform : {"elt", "klt", "identity"}, default "elt"
    variant : {"row", "column"}, default "row"
    blocks : int, default 16
        blocks of coefficient channels per layer.
    retrain_epochs : int, default 0
        epochs of STE retraining at the allocated depths (0: none).
    seed : int, default 0
        calibration subset, random projections, retraining order.
    progress : bool, default True
    calib_size, probes, damping, grid
        calibration images, random projections of the gradient covariance, relative
        damping ``eps = damping * trace(C_gg) / m``, step-grid points per (block, depth).
    basis_bits : int, default 8
        INT width of the basis layers (2..8).
    distortion : {"mse", "fisher"}, default "mse"
        output distortion of the curves and of the gradient covariance (module
        docstring, *Output distortion*); ``mse`` is the paper's.
    lr, batch_size, num_threads
        retraining (Adam, cosine schedule, no weight decay).
    act_bits, calibration, percentile
        activation quantization simulated during retraining.

    Returns
    -------
    TQResult
        ``(model, qweights, info)``; ``info["coding_gain_db"][layer][transform]`` in dB.

    Raises
    ------
    ValueError
        a bad option (named, with the allowed values), or a target below the smallest
        allocation.
    """
    t_start = time.perf_counter()
    if isinstance(bits, bool) or not isinstance(bits, int | float) or not (
            math.isfinite(bits) and 0 < bits <= 8):
        raise ValueError(f"TQ average bits must be a number in (0, 8], not {bits!r}")
    _check_positive_int("retrain epochs", retrain_epochs, 0)
    need, weights = smallest_bits(model if analysis is None else analysis.folded,
                                  variant=variant, blocks=blocks, basis_bits=basis_bits)
    if bits * weights < need:  # before the analysis, which takes seconds
        raise ValueError(f"TQ average bits must be at least {need / weights:.4g} for this "
                         f"model (its smallest allocation, {need} bits for {weights} "
                         f"weights), not {bits!r}")
    settings = dict(transform=transform, variant=variant, blocks=blocks, seed=seed,
                    calib_size=calib_size, probes=probes, damping=damping, grid=grid,
                    basis_bits=basis_bits, distortion=distortion)
    if analysis is None:
        analysis = analyze_tq(model, data, num_threads=num_threads, **settings)
    elif analysis.settings != settings:
        diff = sorted(k for k in settings if settings[k] != analysis.settings[k])
        raise ValueError(f"TQ analysis was made with other settings ({', '.join(diff)})")
    plans, curves = analysis.plans, analysis.curves
    if len(curves) != len(plans):
        raise ValueError("TQ analysis has no distortion curves (made with curves=False)")
    timings = dict(analysis.timings)
    x_train = data.x_train

    # allocation
    t = time.perf_counter()
    original_weights = analysis.original_weights
    choice, lam = allocate(plans, curves, bits * original_weights)
    total_bits = allocation_bits(plans, choice)
    timings["allocation"] = time.perf_counter() - t

    # build the transformed model and its quantized weights
    new_model, qweights, quants, layer_info = _build(analysis.folded, plans, curves, choice,
                                                     basis_bits)
    t = time.perf_counter()
    if retrain_epochs:
        fq = FakeQuantModel.from_float(new_model, quants, act_bits=act_bits)
        fq.calibrate(x_train, calibration, percentile)
        fit(fq, x_train, data.y_train, epochs=retrain_epochs, lr=lr, batch_size=batch_size,
            optimizer="adam", weight_decay=0.0, schedule="cosine", seed=seed,
            num_threads=num_threads, progress=progress, desc=f"tq {transform} {bits}b")
    new_model.eval()
    with torch.no_grad(), _threads(num_threads):
        named = dict(weight_layers(new_model))
        qweights = {n: q.quantized_weight(named[n].weight) for n, q in quants.items()}
        _fold_parametrizations(new_model, qweights)
    timings["retrain"] = time.perf_counter() - t
    timings["quantize"] = time.perf_counter() - t_start

    stored = sum(q.storage_bits() for q in qweights.values())
    if stored != total_bits:  # the allocation's accounting must be what the IR stores
        raise RuntimeError(f"TQ stored {stored} weight bits, the allocation {total_bits}")
    info: dict[str, Any] = {
        "method": "tq",
        "transform": transform,
        "variant": variant,
        "target_bits": float(bits),
        "average_bits": total_bits / original_weights,
        "weight_bits_total": int(total_bits),
        "original_weight_count": original_weights,
        "average_bits_definition": "sum of the code bits of every weight op of the integer "
                                   "network (coefficients, basis, untransformed layers) / "
                                   "number of Conv2d/Linear weights of the original network",
        "basis_bits": basis_bits,
        "blocks": blocks,
        "retrain_epochs": retrain_epochs,
        "lambda": lam,
        "coding_gain_db": analysis.gains,
        "coding_gain_terms_db": analysis.gain_terms,
        "layers": layer_info,
        "options": dict(calib_size=calib_size, probes=probes, damping=damping, grid=grid,
                        distortion=distortion, lr=lr, seed=seed),
        "timings": timings,
    }
    return TQResult(new_model, qweights, info)
