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

import copy
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from hwq.golden._checks import signed_range
from hwq.ir import WeightSpec
from hwq.quant import transforms as tf
from hwq.quant.base import QuantizedWeight, apply_weights, fold_batchnorm, weight_layers
from hwq.quant.fakequant import FakeQuantModel, IntWeightQuantPerChannel, round_ste
from hwq.quant.graph import FloatNode, GraphModel, PaddedConv2d, conv_padding
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
from hwq.workloads.train import fit

__all__ = [
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
    "uniform_quantize",
]

#: Bit depths of the coefficient blocks (0 = pruned; the INT formats are 2..8 bits).
BIT_DEPTHS = (0, 2, 3, 4, 5, 6, 7, 8)
BASIS_SUFFIX = "_basis"
#: Output distortion measures (``distortion=``): ``mse`` of the logits (the paper), ``fisher``.
DISTORTIONS = ("mse", "fisher")


def uniform_quantize(t: np.ndarray, step: float, bits: int) -> np.ndarray:
    """Integer codes ``clip(round_half_even(t / step), -2^(R-1), 2^(R-1) - 1)`` (int64).

    ``bits = 0`` gives all zeros.

    >>> uniform_quantize(np.array([-1.0, -0.26, 0.05, 0.9]), 0.25, 3).tolist()
    [-4, -1, 0, 3]
    >>> uniform_quantize(np.array([0.7]), 0.25, 0).tolist()
    [0]
    """
    if bits == 0:
        return np.zeros(np.shape(t), dtype=np.int64)
    lo, hi = signed_range(bits)
    return np.clip(np.rint(np.asarray(t) / step), lo, hi).astype(np.int64)


# --- per-layer plan -------------------------------------------------------------------------


@dataclass(eq=False)
class LayerPlan:
    """How one weight layer is transformed, split into blocks and quantized.

    Attributes
    ----------
    name : str
        the layer's name in the folded model.
    variant : {"row", "column"}
        the mixing axis (``column`` with ``has_basis=False`` for untransformed layers:
        blocks of output channels).
    transform : Transform
    has_basis : bool
        whether a basis layer is inserted (False: identity, no extra layer).
    blocks : list of int arrays
        coefficient channel indices of each block (contiguous, in ``transform.values``
        order).
    depths : tuple of int
        allowed bit depths of the blocks (``BIT_DEPTHS`` or ``2..8``).
    coef : float64 array (rows, m)
        the coefficients ``T`` as vectors (``as_vectors(Theta) @ U``).
    """

    name: str
    variant: str
    transform: Transform
    has_basis: bool
    blocks: list[np.ndarray]
    depths: tuple[int, ...]
    coef: np.ndarray
    weight_shape: tuple[int, ...]
    basis_bits: int = 8

    @property
    def m(self) -> int:
        return self.transform.size

    def block_bits(self, k: int, depth: int) -> int:
        """Storage bits of block ``k`` at ``depth``: coefficients plus its basis rows."""
        channels = len(self.blocks[k])
        coef = self.coef.shape[0] * channels * depth
        basis = self.m * channels if (self.has_basis and depth > 0) else 0
        return int(coef + basis * self.basis_bits)


def _from_vectors(v: np.ndarray, shape: tuple[int, ...], variant: str) -> np.ndarray:
    """Inverse of :func:`as_vectors` for a weight of ``shape``."""
    s4 = shape if len(shape) == 4 else (shape[0], shape[1], 1, 1)
    if variant == "row":
        a = v.reshape(s4[0], s4[2], s4[3], s4[1]).transpose(0, 3, 1, 2)
    else:
        a = v.reshape(s4[1], s4[2], s4[3], s4[0]).transpose(3, 0, 1, 2)
    return a.reshape(shape)


# --- gradient covariance --------------------------------------------------------------------


def gradient_covariances(model: nn.Module, x: torch.Tensor, layers: dict[str, str], *,
                         probes: int, seed: int, batch_size: int = 256,
                         distortion: str = "mse") -> dict[str, np.ndarray]:
    """Random-projection estimates of the gradient covariance of the named layers.

    ``C_gg = (1 / (P N rows)) sum_p G_p^T G_p``, ``G_p`` the gradient of
    ``sum_i v_pi^T y_i`` (``y_i`` the logits of image ``i``, ``v_pi ~ N(0, I)``) w.r.t. the
    layer's weights, as ``(rows, m)`` vectors of the layer's variant (see the module
    docstring; unbiased for the per-image ``sum_o E[(dy_o/dtheta)(dy_o/dtheta)^T]``).

    Parameters
    ----------
    model : nn.Module
        float model (not modified; gradients are computed on a copy).
    x : torch.Tensor
        calibration images ``(N, ...)``.
    layers : dict of str -> {"row", "column"}
        layer name -> variant.
    probes : int
        ``P >= 1`` random projections.
    distortion : {"mse", "fisher"}
        the probes' covariance (:func:`output_probe`): ``I``, or the softmax's Fisher
        matrix (then ``C_gg`` estimates ``sum_i J_i^T F_i J_i``).
    """
    net = copy.deepcopy(model).eval()
    named = dict(weight_layers(net))
    for p in net.parameters():
        p.requires_grad_(False)
    for name in layers:
        named[name].weight.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    sums = {name: 0.0 for name in layers}
    count = {name: 0 for name in layers}
    n = x.shape[0]
    for _ in range(probes):
        for start in range(0, n, batch_size):
            xb = x[start:start + batch_size]
            for name in layers:
                named[name].weight.grad = None
            y = net(xb)
            v = output_probe(y.detach(), torch.randn(y.shape, generator=gen, dtype=y.dtype),
                             distortion)
            (y * v).sum().backward()
            for name, variant in layers.items():
                g = as_vectors(named[name].weight.grad, variant)
                sums[name] = sums[name] + g.T @ g
                count[name] = g.shape[0]
    return {name: sums[name] / (probes * n * count[name]) for name in layers}


# --- rate-distortion curves -----------------------------------------------------------------


@dataclass(eq=False)
class BlockCurves:
    """Operational distortion of every block at every depth (one layer).

    ``distortion[k, r]`` the output distortion with only block ``k`` quantized at
    ``depths[r]`` bits and its best step ``step[k, r]``.
    """

    distortion: np.ndarray
    step: np.ndarray


def output_probe(y: torch.Tensor, z: torch.Tensor, distortion: str = "mse") -> torch.Tensor:
    """The probe ``v`` of :func:`gradient_covariances` from ``z ~ N(0, I)`` (rows = images).

    ``mse``: ``v = z`` (covariance ``I``); ``fisher``: ``v = a - p (1^T a)``, ``a = sqrt(p) z``,
    ``p = softmax(y)``, whose covariance is ``F = diag(p) - p p^T`` (the metric of
    :func:`output_distortion`), so that ``E[G^T G] = sum_i J_i^T F_i J_i``.
    """
    if distortion == "mse":
        return z
    p = torch.softmax(y, dim=-1)
    a = p.sqrt() * z
    return a - p * a.sum(dim=-1, keepdim=True)


def output_distortion(y: torch.Tensor, y_ref: torch.Tensor, distortion: str = "mse"
                      ) -> torch.Tensor:
    """Mean over images (axis -2) of the output distortion of ``y`` against ``y_ref``.

    ``mse``: ``||y - y_ref||^2``; ``fisher``: ``d^T (diag(p) - p p^T) d`` with ``d = y -
    y_ref``, ``p = softmax(y_ref)`` (twice the second-order KL divergence).
    """
    if distortion == "mse":
        return ((y - y_ref) ** 2).sum(dim=-1).mean(dim=-1).double()
    d = (y - y_ref).double()
    p = torch.softmax(y_ref.double(), dim=-1)
    return ((p * d ** 2).sum(dim=-1) - (p * d).sum(dim=-1) ** 2).mean(dim=-1)


@torch.no_grad()
def _layer_curves(plan: LayerPlan, layer: nn.Module, h_in: torch.Tensor,
                  rest: Callable[[torch.Tensor], torch.Tensor], y_ref: torch.Tensor, grid: int,
                  distortion: str = "mse") -> BlockCurves:
    """Output distortion and best step of every block at every depth; ``rest`` maps the
    layer's output (candidates stacked on the batch axis) to the model's output."""
    theta_v = as_vectors(layer.weight, plan.variant)
    u_inv = plan.transform.U_inv
    bias = layer.bias
    nb, nr = len(plan.blocks), len(plan.depths)
    dist = np.full((nb, nr), np.inf)
    steps = np.ones((nb, nr))
    factors = 2.0 ** (-np.arange(grid) / 3.0)
    for k, idx in enumerate(plan.blocks):
        t = plan.coef[:, idx]
        peak = float(np.abs(t).max())
        for r, depth in enumerate(plan.depths):
            if depth == 0 or peak == 0:
                cands = [(1.0, np.zeros_like(t))]
            else:
                d0 = peak / ((1 << (depth - 1)) - 0.5)
                fs = factors if depth <= 4 else factors[:3]  # clipping barely helps at R > 4
                cands = [(d0 * f, d0 * f * uniform_quantize(t, d0 * f, depth)) for f in fs]
            ws = []
            for _, q in cands:
                w = theta_v + (q - t) @ u_inv[idx, :]
                ws.append(torch.from_numpy(_from_vectors(w, plan.weight_shape, plan.variant)))
            if isinstance(layer, nn.Conv2d):
                t_, b_, l_, r_ = conv_padding(layer)
                hp = F.pad(h_in, (l_, r_, t_, b_)) if any((t_, b_, l_, r_)) else h_in
                conv = dict(stride=layer.stride, dilation=layer.dilation)
                if layer.groups == 1:      # every candidate in one conv, then candidate-major
                    w_all = torch.cat(ws).to(h_in.dtype)
                    b_all = None if bias is None else bias.repeat(len(ws))
                    out = F.conv2d(hp, w_all, b_all, **conv)
                    g = len(ws)
                    out = out.reshape(out.shape[0], g, -1, *out.shape[2:]).transpose(0, 1)
                    out = out.reshape(-1, *out.shape[2:])
                else:
                    out = torch.cat([F.conv2d(hp, w.to(h_in.dtype), bias, groups=layer.groups,
                                              **conv) for w in ws])
            else:
                w_all = torch.cat(ws).to(h_in.dtype)
                b_all = None if bias is None else bias.repeat(len(ws))
                out = F.linear(h_in, w_all, b_all)
                out = out.reshape(out.shape[0], len(ws), -1).transpose(0, 1).reshape(
                    -1, out.shape[1] // len(ws))
            y = rest(out).reshape(len(ws), *y_ref.shape)
            d = output_distortion(y, y_ref, distortion).numpy()
            best = int(np.argmin(d))
            dist[k, r], steps[k, r] = d[best], cands[best][0]
    return BlockCurves(dist, steps)


# --- allocation -----------------------------------------------------------------------------


def allocation_bits(plans: Sequence[LayerPlan], choice: Sequence[np.ndarray]) -> int:
    """Total storage bits of an allocation (``choice[l][k]`` index into ``depths``)."""
    return sum(p.block_bits(k, p.depths[int(r)]) for p, c in zip(plans, choice, strict=True)
               for k, r in enumerate(c))


def _choose(plans: Sequence[LayerPlan], curves: Sequence[BlockCurves], lam: float
            ) -> list[np.ndarray]:
    out = []
    for p, c in zip(plans, curves, strict=True):
        cost = np.array([[p.block_bits(k, d) for d in p.depths] for k in range(len(p.blocks))],
                        dtype=np.float64)
        out.append(np.argmin(c.distortion + lam * cost, axis=1))
    return out


def allocate(plans: Sequence[LayerPlan], curves: Sequence[BlockCurves], budget_bits: float,
             *, iterations: int = 200) -> tuple[list[np.ndarray], float]:
    """Lagrangian bit allocation: the largest total rate not above ``budget_bits``.

    Per block ``R_k = argmin_R D_k(R) + lambda * bits_k(R)``; the total bits are
    non-increasing in ``lambda`` (for two multipliers ``l1 < l2`` with optima ``R1, R2``,
    adding the two optimality inequalities gives ``(l2 - l1)(bits(R2) - bits(R1)) <= 0``),
    so ``log lambda`` is bisected.

    Returns
    -------
    (choice, lambda)
        ``choice[l][k]`` index into ``plans[l].depths``.

    Raises
    ------
    ValueError
        if even the smallest allocation exceeds the budget.
    """
    lo, hi = -40.0, 40.0  # log10 lambda
    c_hi = _choose(plans, curves, 10.0 ** hi)
    if allocation_bits(plans, c_hi) > budget_bits:
        raise ValueError(f"TQ target is below the smallest allocation "
                         f"({allocation_bits(plans, c_hi)} bits > {budget_bits:.0f})")
    c_lo = _choose(plans, curves, 10.0 ** lo)
    if allocation_bits(plans, c_lo) <= budget_bits:
        return c_lo, 10.0 ** lo
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if allocation_bits(plans, _choose(plans, curves, 10.0 ** mid)) <= budget_bits:
            hi = mid
        else:
            lo = mid
    return _choose(plans, curves, 10.0 ** hi), 10.0 ** hi


# --- quantizers for retraining --------------------------------------------------------------


class StepWeightQuant(nn.Module):
    """Fixed-step INT weights with a bit width per element group (straight-through).

    ``forward(w) = step * clamp(round_ste(w / step), lo, hi)`` with ``lo = -2^(R-1)``,
    ``hi = 2^(R-1) - 1`` broadcast from ``bits``; the steps do not train.

    Parameters
    ----------
    step : float64 array broadcastable to the weight
        e.g. ``(C_out, 1, 1, 1)`` (a step per output channel) or ``()``.
    bits : int array broadcastable to the weight, values 2..8
    channel_scale : float64 array (C_out,)
        the per-output-channel scale of the :class:`QuantizedWeight` (equal to ``step``
        along axis 0 when the step varies per output channel, else 1).
    """

    def __init__(self, step: np.ndarray, bits: np.ndarray, channel_scale: np.ndarray):
        super().__init__()
        bits = np.asarray(bits, dtype=np.int64)
        self.register_buffer("step", torch.as_tensor(np.asarray(step, np.float64)))
        self.register_buffer("lo", torch.as_tensor(-(2.0 ** (bits - 1))))
        self.register_buffer("hi", torch.as_tensor(2.0 ** (bits - 1) - 1))
        self.register_buffer("_scale", torch.as_tensor(np.asarray(channel_scale, np.float64)))
        self.bits = bits

    def scale(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        return self._scale

    def to_int(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.detach().double()
        return torch.clamp(torch.round(w / self.step), self.lo, self.hi).to(torch.int64)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        step = self.step.to(weight.dtype)
        q = torch.clamp(round_ste(weight / step), self.lo.to(weight.dtype),
                        self.hi.to(weight.dtype))
        return q * step

    def quantized_weight(self, weight: torch.Tensor) -> QuantizedWeight:
        return QuantizedWeight(values=self.to_int(weight).numpy(), scale=self._scale.numpy(),
                               spec=WeightSpec(kind="int", bits=self.bits))


class _Scale(nn.Module):
    """Parametrization ``weight = original * factor`` (a fixed broadcastable factor)."""

    def __init__(self, factor: np.ndarray):
        super().__init__()
        self.register_buffer("factor", torch.as_tensor(np.asarray(factor, np.float32)))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.factor.to(w.dtype)


# --- result ---------------------------------------------------------------------------------


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


# --- the method -----------------------------------------------------------------------------


def smallest_bits(model: nn.Module, *, variant: str = "row", blocks: int = 16,
                  basis_bits: int = 8) -> tuple[int, int]:
    """``(bits, weights)``: the fewest storage bits any TQ allocation of ``model`` takes, from
    its layer shapes alone, and its original weight count.

    The allocation :func:`allocate` cannot go below: every block of an untransformed layer at
    2 bits; a transformed layer's first block at 2 bits with its basis rows and its other
    blocks at depth 0 (:func:`analyze_tq` keeps a channel per layer). The smallest average
    ``bits`` target is ``bits / weights``.
    """
    check_variant(variant)
    _check_positive_int("blocks", blocks)
    total = weights = 0
    for _, m in weight_layers(model):
        weights += int(m.weight.numel())
        mixed = _is_transformed(m, variant)
        rows, size = as_vectors(m.weight.detach(), variant if mixed else "column").shape
        plan = LayerPlan(
            name="", variant=variant if mixed else "column",
            transform=Transform("identity", np.eye(size), np.eye(size), np.zeros(size)),
            has_basis=mixed, depths=BIT_DEPTHS if mixed else BIT_DEPTHS[1:],
            blocks=list(np.array_split(np.arange(size), min(blocks, size))),
            coef=np.zeros((rows, size)), weight_shape=tuple(m.weight.shape),
            basis_bits=basis_bits)
        for k in range(len(plan.blocks)):
            allowed = [d for d in plan.depths if not (mixed and k == 0 and d == 0)]
            total += min(plan.block_bits(k, d) for d in allowed)
    return total, weights


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"TQ {name} must be an integer >= {minimum}, not {value!r}")
    return value


def _is_transformed(module: nn.Module, variant: str) -> bool:
    """A Conv2d whose mixing axis has ``m > 1`` channels and at least ``m`` vectors.

    With fewer vectors than channels ``C_tt`` is singular and the coding gain infinite
    (e.g. the first conv's column variant: 9 vectors of 16 output channels).
    """
    if not isinstance(module, nn.Conv2d) or module.groups != 1:
        return False          # a grouped (depthwise) conv keeps its own weights
    m, other = ((module.in_channels, module.out_channels) if variant == "row"
                else (module.out_channels, module.in_channels))
    return 1 < m <= other * module.kernel_size[0] * module.kernel_size[1]


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


def _normalized(tr: Transform, c_tt: np.ndarray) -> Transform:
    """Scale an ELT so that ``trace(U^T C_tt U) = trace(C_tt)`` (KLT, identity unchanged)."""
    if tr.name != "elt":
        return tr
    energy = float(np.trace(tr.U.T @ c_tt @ tr.U))
    if energy <= 0:
        return tr
    c = math.sqrt(float(np.trace(c_tt)) / energy)
    return Transform(tr.name, tr.U * c, tr.U_inv / c, tr.values * c * c)


def _build(folded: GraphModel, plans: list[LayerPlan], curves: list[BlockCurves],
           choice: list[np.ndarray], basis_bits: int):
    """The transformed model, its weight quantizers and the per-layer report.

    A transformed layer becomes two nodes: ``row``: the basis (1x1, named ``<name>_basis``)
    then the coefficient conv (``<name>``); ``column``: the coefficient conv (``<name>``)
    then the basis, whose output the layer's readers then read.
    """
    by_name = {p.name: (p, c, ch) for p, c, ch in zip(plans, curves, choice, strict=True)}
    out: OrderedDict[str, nn.Module] = OrderedDict()
    nodes: list[FloatNode] = []
    renamed: dict[str, str] = {}
    quants: dict[str, nn.Module] = {}
    report: dict[str, Any] = {}
    modules = dict(folded.named_children())
    for node in folded.nodes:
        name = node.name
        inputs = tuple(renamed.get(t, t) for t in node.inputs)
        module = modules.get(name)
        if name not in by_name:
            if module is not None:
                out[name] = copy.deepcopy(module)
            nodes.append(FloatNode(name, node.kind, inputs, node.params))
            continue
        plan, curve, ch = by_name[name]
        depth = np.zeros(plan.m, dtype=np.int64)
        step = np.ones(plan.m)
        for k, idx in enumerate(plan.blocks):
            depth[idx] = plan.depths[int(ch[k])]
            step[idx] = curve.step[k, int(ch[k])]
        kept = np.flatnonzero(depth > 0)
        coef = plan.coef[:, kept]
        shape = plan.weight_shape
        report[name] = {
            "transformed": plan.has_basis,
            "variant": plan.variant if plan.has_basis else None,
            "transform": plan.transform.name if plan.has_basis else None,
            "block_sizes": [len(b) for b in plan.blocks],
            "block_bits": [int(plan.depths[int(r)]) for r in ch],
            "block_steps": [float(curve.step[k, int(r)]) for k, r in enumerate(ch)],
            "channels": plan.m,
            "kept_channels": len(kept),
            "pruned_channels": plan.m - len(kept),
            "weight_bits": int(sum(plan.block_bits(k, plan.depths[int(r)])
                                   for k, r in enumerate(ch))),
        }
        if not plan.has_basis:  # identity, blocks of output channels, step = channel scale
            conv = copy.deepcopy(module)
            bshape = (-1,) + (1,) * (len(shape) - 1)
            q = StepWeightQuant(step.reshape(bshape), depth.reshape(bshape), step)
            conv.weight.requires_grad_(True)
            if conv.bias is not None:
                conv.bias.requires_grad_(True)
            out[name] = conv
            quants[name] = q
            nodes.append(FloatNode(name, node.kind, inputs, node.params))
            continue
        u_inv = plan.transform.U_inv[kept, :]
        kh, kw = shape[2], shape[3]
        geometry = dict(stride=module.stride, dilation=module.dilation,
                        hwq_padding=conv_padding(module))
        if plan.variant == "row":
            c_out, c_in = shape[0], shape[1]
            t_w = _from_vectors(coef, (c_out, len(kept), kh, kw), "row")
            basis = nn.Conv2d(c_in, len(kept), 1, bias=False)
            basis.weight = nn.Parameter(torch.from_numpy(u_inv[:, :, None, None]).float())
            coef_conv = PaddedConv2d(len(kept), c_out, (kh, kw), bias=module.bias is not None,
                                     **geometry)
            coef_conv.weight = nn.Parameter(torch.from_numpy(t_w).float())
            if module.bias is not None:
                coef_conv.bias = nn.Parameter(module.bias.detach().clone())
            # weights = parameters in natural units; Delta moves into the basis rows
            parametrize.register_parametrization(
                coef_conv, "weight", _Scale(1.0 / step[kept].reshape(1, -1, 1, 1)))
            parametrize.register_parametrization(
                basis, "weight", _Scale(step[kept].reshape(-1, 1, 1, 1)))
            out[name + BASIS_SUFFIX] = basis
            out[name] = coef_conv
            nodes += [FloatNode(name + BASIS_SUFFIX, "conv", inputs),
                      FloatNode(name, "conv", (name + BASIS_SUFFIX,))]
            quants[name + BASIS_SUFFIX] = IntWeightQuantPerChannel(basis_bits)
            quants[name] = StepWeightQuant(np.float64(1.0),
                                           depth[kept].reshape(1, -1, 1, 1),
                                           np.ones(c_out))
        else:
            c_out, c_in = shape[0], shape[1]
            t_w = _from_vectors(coef, (len(kept), c_in, kh, kw), "column")
            coef_conv = PaddedConv2d(c_in, len(kept), (kh, kw), bias=False, **geometry)
            coef_conv.weight = nn.Parameter(torch.from_numpy(t_w).float())
            basis = nn.Conv2d(len(kept), c_out, 1, bias=module.bias is not None)
            basis.weight = nn.Parameter(torch.from_numpy(u_inv.T[:, :, None, None].copy())
                                        .float())
            if module.bias is not None:
                basis.bias = nn.Parameter(module.bias.detach().clone())
            out[name] = coef_conv
            out[name + BASIS_SUFFIX] = basis
            nodes += [FloatNode(name, "conv", inputs),
                      FloatNode(name + BASIS_SUFFIX, "conv", (name,))]
            renamed[name] = name + BASIS_SUFFIX
            quants[name] = StepWeightQuant(step[kept].reshape(-1, 1, 1, 1),
                                           depth[kept].reshape(-1, 1, 1, 1), step[kept])
            quants[name + BASIS_SUFFIX] = IntWeightQuantPerChannel(basis_bits)
    model = GraphModel(nodes, dict(out), one_d=folded.one_d)
    for p in model.parameters():
        p.requires_grad_(True)
    return model, {}, quants, report


def _fold_parametrizations(model: nn.Module, qweights: dict[str, QuantizedWeight]) -> None:
    """Remove the step parametrizations and set every layer to its dequantized weights."""
    for _, m in weight_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    apply_weights(model, qweights)
