"""Integerization: (folded float model, quantized weights, calibration data) -> integer IR.

Common to every weight-quantization method. For each ``Conv2d``/``Linear`` with input scale
``s_in`` (the previous layer's output scale, or the input scale), weight scales ``s_w[c]``
and output scale ``s_out``:

* weights: the method's integer ``values`` and :class:`~hwq.ir.WeightSpec`, unchanged;
* bias: ``round_half_even(b[c] / (s_in * s_w[c]))``, int32, in accumulator units;
* requantization: ``(M[c], S[c]) = multiplier_from_scale(s_in * s_w[c] / s_out)``, clamp
  ``0..2**(a-1)-1`` when a ReLU follows (fused), ``-2**(a-1)..2**(a-1)-1`` otherwise;
* activation scales (signed symmetric, ``a = act_bits``): calibrated in order on ``calib_x``,
  ``s = stat(|y|) / (2**(a-1) - 1)`` with ``stat`` the maximum or a percentile, ``y`` the
  layer's real pre-activation given the quantized layers upstream (see
  :meth:`FakeQuantModel.calibrate`). The input scale is calibrated the same way; the last
  layer (the logits) is requantized to ``act_bits`` with its own scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hwq.ir import QuantizedNetwork
from hwq.quant.base import QuantizedWeight, fold_batchnorm, weight_layers
from hwq.quant.fakequant import CALIBRATIONS, FakeQuantModel, FixedWeightQuant

__all__ = ["fake_quant_model", "integerize"]


def fake_quant_model(
    model: nn.Module,
    qweights: Mapping[str, QuantizedWeight],
    calib_x: torch.Tensor,
    *,
    act_bits: int = 8,
    calibration: str = "max",
    percentile: float = 99.99,
) -> FakeQuantModel:
    """The calibrated :class:`FakeQuantModel` of ``model`` with the weights ``qweights``.

    The model wraps a folded copy of ``model`` (:func:`fold_batchnorm`, which also checks
    every layer; a folded model keeps its names, which key ``qweights``), so ``model`` is not
    modified. Parameters as in :func:`integerize`.
    """
    if not isinstance(calib_x, torch.Tensor) or not calib_x.is_floating_point() \
            or calib_x.dim() < 2 or calib_x.shape[0] == 0:
        raise ValueError("Calibration inputs must be a float tensor of shape (N, ...) with "
                         f"N >= 1, not {_describe(calib_x)}")
    if calibration not in CALIBRATIONS:
        raise ValueError(f"Calibration must be one of {', '.join(CALIBRATIONS)}, "
                         f"not {calibration!r}")
    folded = fold_batchnorm(model)  # a checked copy; keeps the names of a folded model
    layers = dict(weight_layers(folded))
    for name, qw in qweights.items():
        if not isinstance(qw, QuantizedWeight):
            raise TypeError(f"qweights[{name!r}] must be a QuantizedWeight, "
                            f"not {type(qw).__name__}")
        if name in layers and tuple(layers[name].weight.shape) != qw.shape:
            raise ValueError(f"Layer {name!r}: quantized weight of shape {qw.shape} does not "
                             f"match the weight shape {tuple(layers[name].weight.shape)}")
    fq = FakeQuantModel.from_float(folded, {n: FixedWeightQuant(q) for n, q in qweights.items()},
                                   act_bits=act_bits)
    fq.calibrate(calib_x, calibration, percentile)
    return fq.eval()


def integerize(
    model: nn.Module,
    qweights: Mapping[str, QuantizedWeight],
    calib_x: torch.Tensor,
    *,
    act_bits: int = 8,
    calibration: str = "max",
    percentile: float = 99.99,
    meta: dict[str, Any] | None = None,
) -> QuantizedNetwork:
    """The integer network of a weight-quantized model.

    Parameters
    ----------
    model : nn.Module
        the float model: any ``torch.fx``-traceable model of the layers
        :mod:`hwq.quant.graph` supports (convolutions of any groups and kernel, BatchNorm
        folded, ReLU/ReLU6/Hardtanh, max and average pools, residual adds, Flatten, Linear).
        Not modified.
    qweights : mapping of str -> QuantizedWeight
        one entry per Conv2d/Linear of the folded model (:func:`weight_layers`).
    calib_x : torch.Tensor, shape (N, *input_shape)
        calibration inputs (e.g. the training images).
    act_bits : int, default 8
        activation width, 2..16, signed.
    calibration : {"max", "percentile"}, default "max"
    percentile : float, default 99.99
        used by ``calibration="percentile"``.
    meta : dict, optional
        JSON-serializable facts stored in the network.

    Returns
    -------
    QuantizedNetwork
        validated; :func:`hwq.golden.run` on it equals ``FakeQuantModel.to_int``.

    Raises
    ------
    ValueError
        an unsupported layer (named), weights missing or extra, a bad option.
    """
    fq = fake_quant_model(model, qweights, calib_x, act_bits=act_bits,
                          calibration=calibration, percentile=percentile)
    return fq.to_network(meta)


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
