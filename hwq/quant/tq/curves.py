"""TQ's measurements on the float model: the gradient covariance of each transformed
layer and the operational rate-distortion curves of its blocks (steps 2 and 4 of
:mod:`hwq.quant.tq`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwq.quant.base import weight_layers
from hwq.quant.graph import conv_padding
from hwq.quant.tq.plan import (
    LayerPlan,
    _from_vectors,
    uniform_quantize,
)
from hwq.quant.transforms import (
    as_vectors,
)

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
