"""The common interface of the weight-quantization methods.

Every method (``uniform``, ``uniform-qat``, ``inq``, ``slq``, ``mlq``, ...) is a function ::

    quantize_<method>(model, data, *, bits, seed, progress, **options)
        -> dict[str, QuantizedWeight]

registered by name in :mod:`hwq.quant.methods`. Its contract:

* ``model`` is the **BatchNorm-folded** float model (:func:`fold_batchnorm`): a
  :class:`~hwq.quant.graph.GraphModel` whose weight layers are the ``Conv2d``/``Linear``
  modules listed by :func:`weight_layers`. Methods that retrain do so without BatchNorm, in place.
* ``data`` has the tensors ``x_train``, ``y_train``, ``x_test``, ``y_test``
  (:class:`hwq.workloads.digits.DigitsData`); methods train on ``x_train``/``y_train`` only
  (:func:`hwq.workloads.train.fit`).
* ``bits`` is the weight code width; a value the method does not support raises
  ``ValueError`` naming the allowed range. ``seed`` seeds every random choice;
  ``progress`` shows progress bars on stderr. Unknown ``**options`` raise ``TypeError``.
* It returns one :class:`QuantizedWeight` per weight layer, keyed by the module name of
  :func:`weight_layers`, and leaves ``model`` holding the dequantized weights
  (:func:`apply_weights`), so that evaluating ``model`` gives the weight-only quantized
  accuracy. Biases stay float; :func:`hwq.quant.integerize.integerize` quantizes them.

Everything after the weights (activation scales, bias, requantization, the integer IR) is
:func:`hwq.quant.integerize.integerize`'s job and is common to all methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwq.ir import WeightSpec
from hwq.quant.graph import SUPPORTED, fold_batchnorm, trace

__all__ = [
    "SUPPORTED",
    "QuantizedWeight",
    "apply_weights",
    "fold_batchnorm",
    "trace",
    "weight_layers",
]


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """One layer's quantized weights: integer values, per-channel scale, storage format.

    The float weight the integers stand for is ``values * scale[c]`` for output channel
    ``c`` (:meth:`dequantize`).

    Parameters
    ----------
    values : int64 array, the layer's weight shape
        ``(C_out, C_in, k, k)`` or ``(C_out, K)``; every value representable in ``spec``.
    scale : float64 array, shape (C_out,)
        finite, positive weight scale of each output channel (a per-layer scale is repeated).
    spec : hwq.ir.WeightSpec
        the hardware format: kind ``"int"``/``"pot"``/``"codebook"``, bit widths broadcastable
        to the weight shape, the codebook table (``table_bits <= 8``).
    """

    values: np.ndarray
    scale: np.ndarray
    spec: WeightSpec

    def __post_init__(self) -> None:
        values = np.asarray(self.values)
        if values.dtype.kind not in "iu":
            raise TypeError(f"Quantized weight values must be integers, not dtype {values.dtype}")
        values = values.astype(np.int64)
        if values.ndim not in (2, 4):
            raise ValueError("Quantized weight values must be (C_out, K) or (C_out, C_in, k, k), "
                             f"not shape {values.shape}")
        scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
        if scale.shape != (values.shape[0],):
            raise ValueError(f"Weight scale must have one value per output channel, "
                             f"shape ({values.shape[0]},), not {scale.shape}")
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"Weight scales must be finite and positive, not {scale.tolist()}")
        if not isinstance(self.spec, WeightSpec):
            raise TypeError(f"spec must be an hwq.ir.WeightSpec, not {type(self.spec).__name__}")
        self.spec.validate(values, "Quantized weight")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "scale", scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def dequantize(self) -> np.ndarray:
        """The float64 weights ``values * scale[c]``, in the weight shape."""
        return self.values * self.scale.reshape((-1,) + (1,) * (self.values.ndim - 1))

    def storage_bits(self) -> int:
        """Bits of the weight codes plus the codebook table (as the IR counts them)."""
        return self.spec.storage_bits(self.shape) + self.spec.table_storage_bits()


# --- model structure ------------------------------------------------------------------------
# Tracing, the supported layers and BatchNorm folding live in :mod:`hwq.quant.graph`.


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``Conv2d`` and ``Linear`` modules of ``model`` with their qualified names.

    In registration order, which for the ``GraphModel`` of :func:`fold_batchnorm` is the
    execution order.
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@torch.no_grad()
def apply_weights(model: nn.Module, qweights: Mapping[str, QuantizedWeight]) -> None:
    """Set each named layer's ``weight`` to its dequantized view ``values * scale``.

    The weights are rounded once to the parameter's dtype; biases are left alone.

    Raises
    ------
    ValueError
        if a name is not a Conv2d/Linear of ``model`` or the shapes differ.
    """
    layers = dict(weight_layers(model))
    for name, qw in qweights.items():
        if name not in layers:
            raise ValueError(f"No Conv2d/Linear named {name!r} in the model; it has "
                             f"{sorted(layers)}")
        weight = layers[name].weight
        if tuple(weight.shape) != qw.shape:
            raise ValueError(f"Layer {name!r}: quantized weight of shape {qw.shape} does not "
                             f"match the weight shape {tuple(weight.shape)}")
        weight.copy_(torch.from_numpy(qw.dequantize()).to(weight.dtype))
