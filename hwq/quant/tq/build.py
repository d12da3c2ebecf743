"""TQ's integer structure: a transformed layer as a basis and a coefficient layer, and the
weight quantizers that retrain them (steps 6-7 of :mod:`hwq.quant.tq`)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from hwq.ir import WeightSpec
from hwq.quant.base import QuantizedWeight, apply_weights, weight_layers
from hwq.quant.fakequant import IntWeightQuantPerChannel, round_ste
from hwq.quant.graph import FloatNode, GraphModel, PaddedConv2d, conv_padding
from hwq.quant.tq.curves import (
    BlockCurves,
)
from hwq.quant.tq.plan import (
    BASIS_SUFFIX,
    LayerPlan,
    _from_vectors,
)

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
