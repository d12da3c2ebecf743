"""``uniform``: per-channel symmetric linear INT(b) weights -- the baseline.

Output channel ``c`` of a layer gets ``scale[c] = max|w_c| / (2**(b-1) - 1)`` and integers
``clamp(round_half_even(w / scale[c]), -(2**(b-1) - 1), 2**(b-1) - 1)`` (narrow range, so
the levels are symmetric about 0), ``b`` in 2..8 (:class:`IntWeightQuantPerChannel`).

* :func:`quantize_uniform` rounds the trained weights (post-training quantization);
* :func:`quantize_uniform_qat` fine-tunes the model through the quantizers with a
  straight-through estimator (quantization-aware training), then rounds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from hwq.quant.base import QuantizedWeight, apply_weights, weight_layers
from hwq.quant.fakequant import FakeQuantModel, IntWeightQuantPerChannel
from hwq.quant.graph import GraphModel
from hwq.workloads.train import fit

__all__ = ["BITS", "quantize_uniform", "quantize_uniform_qat"]

#: Weight bit widths of the INT formats.
BITS = (2, 8)


def _check_bits(bits: object) -> int:
    lo, hi = BITS
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise ValueError(f"Uniform quantization takes bits in {lo}..{hi}, not {bits!r}")
    return bits


def _quantizers(model: nn.Module, bits: int) -> dict[str, IntWeightQuantPerChannel]:
    layers = weight_layers(model)
    if not layers:
        raise ValueError("Model has no Conv2d or Linear layer to quantize")
    return {name: IntWeightQuantPerChannel(bits) for name, _ in layers}


def _round(model: nn.Module, quants: dict[str, IntWeightQuantPerChannel]
           ) -> dict[str, QuantizedWeight]:
    layers = dict(weight_layers(model))
    qweights = {n: q.quantized_weight(layers[n].weight) for n, q in quants.items()}
    apply_weights(model, qweights)
    return qweights


def quantize_uniform(model: nn.Module, data: Any = None, *, bits: int, seed: int = 0,
                     progress: bool = True) -> dict[str, QuantizedWeight]:
    """Post-training per-channel INT(``bits``) rounding of every Conv2d/Linear weight.

    Parameters
    ----------
    model : nn.Module
        the BatchNorm-folded float model; its weights are replaced by the dequantized ones.
    data : object, optional
        unused (no calibration or training is needed for the weights).
    bits : int
        2..8.
    seed, progress
        unused (deterministic, instant); accepted for the common method signature.

    Returns
    -------
    dict of str -> QuantizedWeight
        format ``int``, ``bits`` bits, per-channel scales.
    """
    bits = _check_bits(bits)
    with torch.no_grad():
        return _round(model, _quantizers(model, bits))


def quantize_uniform_qat(
    model: nn.Module,
    data: Any,
    *,
    bits: int,
    seed: int = 0,
    progress: bool = True,
    epochs: int = 10,
    lr: float = 0.01,
    act_bits: int | None = 8,
    calibration: str = "max",
    percentile: float = 99.99,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    clip_norm: float | None = None,
    num_threads: int | None = 1,
) -> dict[str, QuantizedWeight]:
    """Quantization-aware training of per-channel INT(``bits``) weights, then rounding.

    The float weights stay the trained parameters; every forward pass uses their quantized
    values (scales recomputed from the current weights), and the gradient goes straight
    through the rounding (STE) and is zero where a value is clamped. With ``act_bits``
    (the default) the activations are fake-quantized too, exactly as the integer network
    will quantize them: the :class:`FakeQuantModel` float path, with the input and output
    scales calibrated once on ``data.x_train`` before training and then held fixed (the
    final network is calibrated again by :func:`~hwq.quant.integerize.integerize`). Biases
    are fake-quantized to the accumulator scale. With ``act_bits=None`` only the weights are.

    Parameters
    ----------
    model : nn.Module
        the BatchNorm-folded :class:`~hwq.quant.graph.GraphModel`; trained in place and left
        with the dequantized weights.
    data : object
        with ``x_train``, ``y_train`` (:class:`hwq.workloads.digits.DigitsData`).
    bits : int
        weight bits, 2..8.
    seed : int
        seed of :func:`hwq.workloads.train.fit` (shuffling).
    progress : bool
        progress bar on stderr.
    epochs, lr, batch_size, momentum, weight_decay, schedule, clip_norm, num_threads
        training settings passed to :func:`~hwq.workloads.train.fit` (SGD with momentum,
        cosine decay by default).
    act_bits : int or None, default 8
        activation width simulated during training, or ``None`` for weights only.
    calibration, percentile
        activation calibration during training (see :meth:`ActQuant.calibrate`).

    Returns
    -------
    dict of str -> QuantizedWeight
        format ``int``, ``bits`` bits, per-channel scales.
    """
    bits = _check_bits(bits)
    quants = _quantizers(model, bits)
    settings = dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                    weight_decay=weight_decay, schedule=schedule, clip_norm=clip_norm,
                    seed=seed, num_threads=num_threads, progress=progress,
                    desc=f"uniform-qat {bits}b")
    if act_bits is not None:
        if not isinstance(model, GraphModel):
            raise ValueError("uniform-qat with act_bits needs the folded GraphModel "
                             f"(hwq.quant.fold_batchnorm), not {type(model).__name__}")
        fq = FakeQuantModel.from_float(model, quants, act_bits=act_bits)
        fq.calibrate(data.x_train, calibration, percentile)
        fit(fq, data.x_train, data.y_train, **settings)
    else:
        layers = dict(weight_layers(model))
        for name, q in quants.items():
            parametrize.register_parametrization(layers[name], "weight", q)
        try:
            fit(model, data.x_train, data.y_train, **settings)
        finally:
            for name in quants:
                parametrize.remove_parametrizations(layers[name], "weight",
                                                    leave_parametrized=False)
    model.eval()
    with torch.no_grad():
        return _round(model, quants)
