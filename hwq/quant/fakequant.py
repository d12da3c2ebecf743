"""Fake-quantized torch models that mirror the integer network.

Small quantizer modules in the style of Brevitas, one vocabulary (``bit_width``, ``signed``,
``narrow_range``, ``scale``), the integer view :meth:`to_int` apart from the dequantized
:meth:`forward`:

* :class:`IntQuant` -- ``scale * clamp(round(x / scale), min_int, max_int)`` with a
  straight-through estimator (STE) for the rounding;
* :class:`IntWeightQuantPerChannel` -- symmetric per-output-channel INT(b) weights,
  ``scale[c] = max|w_c| / max_int`` (trainable through the STE);
* :class:`FixedWeightQuant` -- the frozen integer weights of any method (a
  :class:`~hwq.quant.base.QuantizedWeight`);
* :class:`ActQuant` -- signed ``bit_width`` activations with a calibrated per-tensor scale,
  ``relu=True`` clamping at 0 (ReLU fused into the requantization);
* :class:`QuantLayer` -- a ``Conv2d``/``Linear`` with its weight and output quantizers;
* :class:`FakeQuantModel` -- the whole network.

:class:`FakeQuantModel` has two forward paths:

``exact`` (eval mode, the default there)
    the integer arithmetic of :mod:`hwq.golden` carried out in torch: integer activations
    and weights held in float64 (convolutions and sums are exact below ``2**53``; checked),
    bias ``round_half_even(b / (s_in * s_w[c]))`` in accumulator units, requantization
    ``clamp(((acc + bias) * M + 2**(S-1)) >> S, lo, hi)`` in int64 with the ``(M, S)`` of
    :func:`hwq.golden.multiplier_from_scale`. Its integer outputs equal
    :func:`hwq.golden.run` on :meth:`FakeQuantModel.to_network` bit for bit; ``forward``
    returns them times the output scale (float64).
``float`` (train mode, or ``exact = False``)
    the usual differentiable fake quantization in float32: dequantized weights and biases,
    ``s_out * clamp(round_ste(y / s_out), lo, hi)`` after every layer. It differs from the
    integer network only by float rounding, rounding ties (half-even here, half-up in the
    requantization) and the ``2**-24`` relative error of ``M * 2**-S``; quantization-aware
    training uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwq import ir
from hwq.golden.eltwise import add_weights
from hwq.golden.requant import multiplier_from_scale, requantize
from hwq.quant.base import QuantizedWeight
from hwq.quant.graph import INPUT, GraphModel, conv_padding

__all__ = [
    "CALIBRATIONS",
    "ActQuant",
    "FakeQuantModel",
    "FixedWeightQuant",
    "IntQuant",
    "IntWeightQuantPerChannel",
    "QuantLayer",
    "max_int",
    "min_int",
    "round_ste",
]

#: Activation calibration methods of :meth:`ActQuant.calibrate`.
CALIBRATIONS = ("max", "percentile")
_EXACT_LIMIT = 1 << 53  # float64 holds every integer below this exactly
_INT64_MAX = (1 << 63) - 1


def min_int(bit_width: int, signed: bool = True, narrow_range: bool = False) -> int:
    """Smallest integer of the quantized range.

    >>> min_int(8), min_int(8, narrow_range=True), min_int(8, signed=False)
    (-128, -127, 0)
    """
    if not signed:
        return 0
    return -(1 << (bit_width - 1)) + int(narrow_range)


def max_int(bit_width: int, signed: bool = True, narrow_range: bool = False) -> int:
    """Largest integer of the quantized range.

    >>> max_int(8), max_int(3), max_int(8, signed=False)
    (127, 3, 255)
    >>> max_int(8, signed=False, narrow_range=True)
    254
    """
    if signed:
        return (1 << (bit_width - 1)) - 1
    return (1 << bit_width) - 1 - int(narrow_range)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``torch.round`` (half to even) forward, identity gradient (straight-through)."""
    return x + (torch.round(x) - x).detach()


def _check_bit_width(bit_width: int, lo: int, hi: int, what: str) -> int:
    if isinstance(bit_width, bool) or not isinstance(bit_width, int) or not lo <= bit_width <= hi:
        raise ValueError(f"{what} bit width must be an integer in {lo}..{hi}, not {bit_width!r}")
    return bit_width


class IntQuant(nn.Module):
    """Integer quantization with a given scale: ``clamp(round(x / scale), min_int, max_int)``.

    Parameters
    ----------
    bit_width : int
    signed : bool, default True
    narrow_range : bool, default False
        drop the most negative (signed) or the largest (unsigned) integer, making a signed
        range symmetric: ``-(2**(b-1) - 1) .. 2**(b-1) - 1``.

    Examples
    --------
    >>> q = IntQuant(4, narrow_range=True)
    >>> x = torch.tensor([-1.0, -0.26, 0.05, 0.9])
    >>> q.to_int(x, torch.tensor(0.125)).tolist()
    [-7.0, -2.0, 0.0, 7.0]
    >>> q(x, torch.tensor(0.125)).tolist()
    [-0.875, -0.25, 0.0, 0.875]
    """

    def __init__(self, bit_width: int, *, signed: bool = True, narrow_range: bool = False):
        super().__init__()
        self.bit_width = _check_bit_width(bit_width, 1 + int(signed), 16, "Quantizer")
        self.signed = bool(signed)
        self.narrow_range = bool(narrow_range)

    @property
    def min_int(self) -> int:
        return min_int(self.bit_width, self.signed, self.narrow_range)

    @property
    def max_int(self) -> int:
        return max_int(self.bit_width, self.signed, self.narrow_range)

    def to_int(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The integers (in ``x``'s float dtype): ``clamp(round_half_even(x / scale))``."""
        return torch.clamp(torch.round(x / scale), self.min_int, self.max_int)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Dequantized ``scale * to_int(x)``; gradient straight through the rounding and
        zero where the clamp is active."""
        return torch.clamp(round_ste(x / scale), self.min_int, self.max_int) * scale

    def extra_repr(self) -> str:
        return f"bit_width={self.bit_width}, signed={self.signed}, narrow_range={self.narrow_range}"


class IntWeightQuantPerChannel(nn.Module):
    """Symmetric per-output-channel INT(b) weights: ``scale[c] = max|w_c| / (2**(b-1) - 1)``.

    The narrow signed range ``-(2**(b-1) - 1) .. 2**(b-1) - 1`` keeps the levels symmetric;
    the scale is recomputed from the current weights at every call and does not take
    gradients (it is a statistic); an all-zero channel gets scale 1.

    Parameters
    ----------
    bit_width : int
        2..8 (the hardware INT formats).
    """

    def __init__(self, bit_width: int):
        super().__init__()
        self.bit_width = _check_bit_width(bit_width, 2, 8, "INT weight")
        self.quant = IntQuant(bit_width, signed=True, narrow_range=True)

    def scale(self, weight: torch.Tensor) -> torch.Tensor:
        """Per-channel scale, float64, shape ``(C_out,)``."""
        peak = weight.detach().double().abs().reshape(weight.shape[0], -1).amax(dim=1)
        return torch.where(peak > 0, peak / self.quant.max_int, torch.ones_like(peak))

    def to_int(self, weight: torch.Tensor) -> torch.Tensor:
        """Integer weights, int64, rounded in float64."""
        s = _per_channel(self.scale(weight), weight.ndim)
        return self.quant.to_int(weight.detach().double(), s).to(torch.int64)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        s = _per_channel(self.scale(weight), weight.ndim).to(weight.dtype)
        return self.quant(weight, s)

    def quantized_weight(self, weight: torch.Tensor) -> QuantizedWeight:
        """The :class:`QuantizedWeight` of ``weight`` (format ``int``, ``bit_width`` bits)."""
        return QuantizedWeight(
            values=self.to_int(weight).numpy(),
            scale=self.scale(weight).numpy(),
            spec=ir.WeightSpec(kind="int", bits=np.int64(self.bit_width)),
        )

    def extra_repr(self) -> str:
        return f"bit_width={self.bit_width}, signed=True, narrow_range=True"


class FixedWeightQuant(nn.Module):
    """Frozen quantized weights (any format): ``forward`` ignores the float weight.

    Parameters
    ----------
    qweight : QuantizedWeight
        what a quantization method returned for the layer.
    """

    def __init__(self, qweight: QuantizedWeight):
        super().__init__()
        self.qweight = qweight
        self.register_buffer("values", torch.from_numpy(qweight.values.astype(np.float64)))
        self.register_buffer("_scale", torch.from_numpy(qweight.scale.copy()))

    def scale(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Per-channel scale, float64, shape ``(C_out,)``."""
        return self._scale

    def to_int(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        return self.values.to(torch.int64)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        s = _per_channel(self._scale, self.values.ndim)
        return (self.values * s).to(weight.dtype)

    def quantized_weight(self, weight: torch.Tensor | None = None) -> QuantizedWeight:
        return self.qweight

    def extra_repr(self) -> str:
        return f"kind={self.qweight.spec.kind!r}, max_bits={self.qweight.spec.max_bits()}"


class ActQuant(nn.Module):
    """Signed symmetric ``bit_width`` activations with one calibrated scale per tensor.

    The integer range is the full two's complement range ``-2**(b-1) .. 2**(b-1) - 1``
    (what the hardware stores); the scale maps the calibrated peak to ``2**(b-1) - 1``.
    ``relu=True`` clamps at 0 instead (ReLU fused into the requantization, ``lo = 0``).

    Parameters
    ----------
    bit_width : int
        2..16.
    relu : bool, default False
    """

    def __init__(self, bit_width: int, *, relu: bool = False):
        super().__init__()
        self.bit_width = _check_bit_width(bit_width, 2, 16, "Activation")
        self.signed = True
        self.narrow_range = False
        self.clamp_lo = 0.0 if relu else -math.inf
        self.clamp_hi = math.inf
        self.quant = IntQuant(bit_width, signed=True, narrow_range=False)
        self.register_buffer("scale", torch.tensor(float("nan"), dtype=torch.float64))

    @property
    def relu(self) -> bool:
        """Whether the output is clamped at 0 (a fused ReLU)."""
        return self.clamp_lo >= 0

    @relu.setter
    def relu(self, value: bool) -> None:
        if value:
            self.clamp(0.0, math.inf)
        elif self.clamp_lo == 0:
            self.clamp_lo = -math.inf

    def clamp(self, lo: float, hi: float) -> None:
        """Fuse a float clamp ``[lo, hi]`` (ReLU, ReLU6, Hardtanh) into the output."""
        self.clamp_lo, self.clamp_hi = max(self.clamp_lo, lo), min(self.clamp_hi, hi)

    def _bound(self, value: float, default: int) -> int:
        if not math.isfinite(value):
            return default
        if value == 0:
            return 0
        if not self.calibrated:
            raise RuntimeError("Activation quantizer is not calibrated; call calibrate() first")
        q = round(value / float(self.scale))
        return int(min(max(q, self.quant.min_int), self.quant.max_int))

    @property
    def lo(self) -> int:
        """Integer clamp low bound: ``round(clamp_lo / scale)`` within the range."""
        return self._bound(self.clamp_lo, self.quant.min_int)

    @property
    def hi(self) -> int:
        """Integer clamp high bound: ``round(clamp_hi / scale)`` within the range."""
        return self._bound(self.clamp_hi, self.quant.max_int)

    @property
    def calibrated(self) -> bool:
        return bool(torch.isfinite(self.scale))

    def _scale(self, dtype: torch.dtype) -> torch.Tensor:
        if not self.calibrated:
            raise RuntimeError("Activation quantizer is not calibrated; call calibrate() first")
        return self.scale.to(dtype)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, method: str = "max", percentile: float = 99.99) -> float:
        """Set the scale from sample values: ``stat(|x|) / (2**(b-1) - 1)``; returns it.

        ``stat`` is the maximum (``"max"``) or the ``percentile``-th percentile
        (``"percentile"``) of ``|x|`` over every element (after the ReLU if ``relu``); a
        zero statistic (a dead tensor) gives scale 1.
        """
        values = x.detach().double().clamp(self.clamp_lo, self.clamp_hi)
        mag = values.abs().reshape(-1).numpy()
        if mag.size == 0:
            raise ValueError("Cannot calibrate an activation scale on no data")
        if method == "max":
            stat = float(mag.max())
        elif method == "percentile":
            if not (isinstance(percentile, int | float) and 0 < percentile <= 100):
                raise ValueError(f"Calibration percentile must be in (0, 100], not {percentile!r}")
            stat = float(np.percentile(mag, percentile))
        else:
            raise ValueError(f"Calibration must be one of {', '.join(CALIBRATIONS)}, "
                             f"not {method!r}")
        if not np.isfinite(stat):
            raise ValueError("Calibration data holds NaN or infinity")
        scale = stat / self.quant.max_int if stat > 0 else 1.0
        self.scale.fill_(scale)
        return scale

    def to_int(self, x: torch.Tensor) -> torch.Tensor:
        """Integers (in ``x``'s float dtype), round half to even, clamped to ``lo..hi``."""
        return torch.clamp(torch.round(x / self._scale(x.dtype)), self.lo, self.hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self._scale(x.dtype)
        return torch.clamp(round_ste(x / s), self.lo, self.hi) * s

    def extra_repr(self) -> str:
        clamp = (f"clamp=({self.clamp_lo:g}, {self.clamp_hi:g})" if math.isfinite(self.clamp_hi)
                 else f"relu={self.relu}")
        return (f"bit_width={self.bit_width}, signed=True, narrow_range=False, {clamp}, "
                f"scale={float(self.scale):.6g}")


class QuantLayer(nn.Module):
    """A ``Conv2d`` or ``Linear`` with a weight quantizer and an output quantizer.

    The float module is shared, not copied: training the quant layer trains ``module``.

    Parameters
    ----------
    module : nn.Conv2d or nn.Linear
    weight_quant : IntWeightQuantPerChannel or FixedWeightQuant
    output_quant : ActQuant
    """

    def __init__(self, module: nn.Conv2d | nn.Linear, weight_quant: nn.Module,
                 output_quant: ActQuant):
        super().__init__()
        if not isinstance(module, nn.Conv2d | nn.Linear):
            raise TypeError(f"QuantLayer wraps a Conv2d or Linear, not {type(module).__name__}")
        self.module = module
        self.weight_quant = weight_quant
        self.output_quant = output_quant

    @property
    def is_conv(self) -> bool:
        return isinstance(self.module, nn.Conv2d)

    def _bias(self) -> torch.Tensor:
        b = self.module.bias
        return b if b is not None else torch.zeros(self.module.weight.shape[0],
                                                   dtype=self.module.weight.dtype)

    def _linear_op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if self.is_conv:
            m = self.module
            t, bottom, left, r = conv_padding(m)
            if any((t, bottom, left, r)):
                x = F.pad(x, (left, r, t, bottom))
            return F.conv2d(x, w, b, stride=m.stride, dilation=m.dilation, groups=m.groups)
        return F.linear(x, w, b)

    # -- float (STE) path --------------------------------------------------------------------

    def forward_float(self, x: torch.Tensor, input_scale: float) -> torch.Tensor:
        """Fake-quantized float output for a fake-quantized input of scale ``input_scale``."""
        w = self.weight_quant(self.module.weight)
        acc_scale = (input_scale * self.weight_quant.scale(self.module.weight)).to(x.dtype)
        b = round_ste(self._bias() / acc_scale) * acc_scale
        return self.output_quant(self._linear_op(x, w, b))

    forward = forward_float

    # -- integer (exact) path ----------------------------------------------------------------

    def accumulator_params(self, input_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer weights, integer bias and accumulator scale for input scale ``s_in``.

        ``bias[c] = round_half_even(b[c] / (s_in * s_w[c]))`` must fit int32; the
        accumulator scale is ``s_in * s_w[c]`` (float64).
        """
        w_int = self.weight_quant.to_int(self.module.weight).numpy()
        acc_scale = float(input_scale) * self.weight_quant.scale(self.module.weight).numpy()
        bias = np.rint(self._bias().detach().double().numpy() / acc_scale)
        if (np.abs(bias) >= float(1 << 31)).any():
            c = int(np.argmax(np.abs(bias)))
            raise ValueError(f"Bias of channel {c} is {bias[c]:.6g} accumulator units, outside "
                             f"int32 (accumulator scale {acc_scale[c]:.3g})")
        return w_int, bias.astype(np.int64), acc_scale

    def integer_params(self, input_scale: float) -> tuple[np.ndarray, ir.Requant]:
        """Integer weights and the requantization for an input of scale ``s_in``.

        The bias as in :meth:`accumulator_params`;
        ``(M[c], S[c]) = multiplier_from_scale(s_in * s_w[c] / s_out)``; the clamp
        ``lo..hi`` of the output quantizer.
        """
        w_int, bias, acc_scale = self.accumulator_params(input_scale)
        s_out = float(self.output_quant.scale)
        if not np.isfinite(s_out):
            raise RuntimeError("Output quantizer is not calibrated; call calibrate() first")
        mult = multiplier_from_scale(acc_scale / s_out)
        rq = ir.Requant(bias=bias, M=mult.M, S=mult.S,
                        lo=self.output_quant.lo, hi=self.output_quant.hi)
        return w_int, rq

    def accumulate(self, x_int: torch.Tensor, w_int: np.ndarray) -> torch.Tensor:
        """Exact accumulators (int64) of integer activations held in float64."""
        w = torch.from_numpy(w_int.astype(np.float64))
        peak = float(x_int.abs().max()) if x_int.numel() else 0.0
        bound = peak * float(np.abs(w_int).reshape(w_int.shape[0], -1).sum(axis=1).max())
        if bound >= _EXACT_LIMIT:
            raise ValueError(f"Accumulator bound {bound:.3g} exceeds 2**53: the float64 "
                             "fake-quant path would not be exact")
        return self._linear_op(x_int, w, None).to(torch.int64)

    @torch.no_grad()
    def forward_int(self, x_int: torch.Tensor, input_scale: float,
                    acc: torch.Tensor | None = None) -> torch.Tensor:
        """Integer output (float64 holding integers) for integer input of scale ``input_scale``
        (``acc``: the accumulators of ``x_int`` if already computed)."""
        w_int, rq = self.integer_params(input_scale)
        if acc is None:
            acc = self.accumulate(x_int, w_int)
        return requantize_torch(acc, rq).double()

    def to_op(self, name: str, input_scale: float, inputs: tuple[str, ...] = ()
              ) -> ir.Conv2d | ir.Linear:
        """This layer as an IR op (reading ``inputs``)."""
        w_int, rq = self.integer_params(input_scale)
        spec = self.weight_quant.quantized_weight(self.module.weight).spec
        common: dict[str, Any] = dict(name=name, inputs=inputs, weight=w_int, spec=spec,
                                      requant=rq, out_scale=float(self.output_quant.scale))
        if self.is_conv:
            m = self.module
            return ir.Conv2d(stride=tuple(m.stride), padding=conv_padding(m),
                             dilation=tuple(m.dilation), groups=m.groups, **common)
        return ir.Linear(**common)


def requantize_torch(acc: torch.Tensor, rq: ir.Requant) -> torch.Tensor:
    """:func:`hwq.golden.requantize` in torch int64, channel on axis 1 (bit-exact).

    Products ``(acc + bias) * M`` beyond int64 go to :func:`hwq.golden.requantize` itself.
    """
    shape = [1] * acc.dim()
    shape[1] = -1
    b, m, s = (torch.from_numpy(v).reshape(shape) for v in (rq.bias, rq.M, rq.S))
    t = acc.to(torch.int64) + b
    peak = int(t.abs().max()) if t.numel() else 0
    if peak > _INT64_MAX // int(rq.M.max()) and bool((t.abs() > _INT64_MAX // m).any()):
        y = requantize(acc.to(torch.int64).cpu().numpy(), rq.bias, rq.M, rq.S,
                       lo=rq.lo, hi=rq.hi)
        return torch.from_numpy(y).to(acc.device)
    p = t * m
    half = p >> 1
    rounded = torch.bitwise_right_shift(
        half + torch.bitwise_left_shift(torch.ones_like(s), (s - 2).clamp(min=0)),
        (s - 1).clamp(min=0))
    y = torch.where(s == 1, half + (p & 1), rounded)
    return y.clamp(rq.lo, rq.hi)


def _per_channel(scale: torch.Tensor, ndim: int) -> torch.Tensor:
    return scale.reshape((-1,) + (1,) * (ndim - 1))


class PoolQuant(nn.Module):
    """An average pool (window or global) with its output quantizer.

    Integer path: the exact window sums of the integer input (zero padding counted), then
    ``requantize`` with ``(M, S) = multiplier_from_scale(s_in / (KH*KW * s_out))`` and bias 0.

    Parameters
    ----------
    module : nn.AvgPool2d or nn.AdaptiveAvgPool2d (output 1)
    output_quant : ActQuant
    """

    def __init__(self, module: nn.Module, output_quant: ActQuant):
        super().__init__()
        self.module = module
        self.output_quant = output_quant

    @property
    def is_global(self) -> bool:
        return isinstance(self.module, nn.AdaptiveAvgPool2d)

    def window(self, x: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int],
                                               tuple[int, int, int, int]]:
        if self.is_global:
            return (x.shape[2], x.shape[3]), (1, 1), (0, 0, 0, 0)
        m = self.module
        k, s, p = (tuple(v) if isinstance(v, tuple | list) else (v, v)
                   for v in (m.kernel_size, m.stride, m.padding))
        return k, s, (p[0], p[0], p[1], p[1])

    def window_sum(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Exact window sums of ``x`` (float64 holding integers) and the window size."""
        (kh, kw), stride, (t, b, l, r) = self.window(x)
        ones = torch.ones((x.shape[1], 1, kh, kw), dtype=torch.float64)
        xp = F.pad(x.double(), (l, r, t, b)) if any((t, b, l, r)) else x.double()
        return F.conv2d(xp, ones, stride=stride, groups=x.shape[1]), kh * kw

    def requant(self, channels: int, input_scale: float, count: int) -> ir.Requant:
        s_out = float(self.output_quant.scale)
        mult = multiplier_from_scale(np.full(channels, input_scale / (count * s_out)))
        return ir.Requant(bias=np.zeros(channels, np.int64), M=mult.M, S=mult.S,
                          lo=self.output_quant.lo, hi=self.output_quant.hi)

    @torch.no_grad()
    def int_step(self, xs: list[torch.Tensor], scales: list[float], calibrate: Any
                 ) -> torch.Tensor:
        acc, count = self.window_sum(xs[0])
        if calibrate is not None:
            self.output_quant.calibrate(acc * (scales[0] / count), *calibrate)
        rq = self.requant(acc.shape[1], scales[0], count)
        self._count = count
        return requantize_torch(acc.to(torch.int64), rq).double()

    def forward_float(self, xs: list[torch.Tensor], scales: list[float]) -> torch.Tensor:
        return self.output_quant(self.module(xs[0]))

    def to_op(self, name: str, inputs: tuple[str, ...], scales: list[float],
              in_shape: tuple[int, ...]) -> ir.Op:
        c, h, w = in_shape
        scale = float(self.output_quant.scale)
        if self.is_global:
            return ir.GlobalAvgPool2d(name=name, inputs=inputs, out_scale=scale,
                                      requant=self.requant(c, scales[0], h * w))
        k, s, p = self.window(torch.zeros(1, c, h, w))
        return ir.AvgPool2d(name=name, inputs=inputs, kernel=k, stride=s, padding=p,
                            out_scale=scale, requant=self.requant(c, scales[0], k[0] * k[1]))


class AddQuant(nn.Module):
    """The residual add ``a + b`` with its output quantizer.

    Integer path: ``requant(a * wa + b * wb)`` with ``wa / wb ~= s_a / s_b``
    (:func:`hwq.golden.eltwise.add_weights`, to half an ``act_bits`` LSB when small weights
    allow) and ``(M, S) = multiplier_from_scale(acc_scale / s_out)``, bias 0.
    """

    def __init__(self, output_quant: ActQuant):
        super().__init__()
        self.output_quant = output_quant

    def weights(self, scales: list[float]):
        tol = 2.0 ** -(self.output_quant.bit_width + 1)
        return add_weights(scales[0], scales[1], max_weight=ir.ADD_WEIGHT_MAX, rel_tol=tol)

    def requant(self, channels: int, scales: list[float]) -> ir.Requant:
        w = self.weights(scales)
        mult = multiplier_from_scale(np.full(channels, w.acc_scale /
                                             float(self.output_quant.scale)))
        return ir.Requant(bias=np.zeros(channels, np.int64), M=mult.M, S=mult.S,
                          lo=self.output_quant.lo, hi=self.output_quant.hi)

    @torch.no_grad()
    def int_step(self, xs: list[torch.Tensor], scales: list[float], calibrate: Any
                 ) -> torch.Tensor:
        a, b = xs
        if calibrate is not None:
            self.output_quant.calibrate(a * scales[0] + b * scales[1], *calibrate)
        w = self.weights(scales)
        acc = (a * w.wa + b * w.wb).to(torch.int64)
        return requantize_torch(acc, self.requant(a.shape[1], scales)).double()

    def forward_float(self, xs: list[torch.Tensor], scales: list[float]) -> torch.Tensor:
        return self.output_quant(xs[0] + xs[1])

    def to_op(self, name: str, inputs: tuple[str, ...], scales: list[float],
              in_shape: tuple[int, ...]) -> ir.Add:
        w = self.weights(scales)
        return ir.Add(name=name, inputs=inputs, weights=(w.wa, w.wb),
                      requant=self.requant(in_shape[0], scales),
                      out_scale=float(self.output_quant.scale))


#: Step kinds of :class:`FakeQuantModel` whose output has its own (requantized) scale.
_REQUANT_KINDS = ("layer", "pool", "add")


class FakeQuantModel(nn.Module):
    """A quantized network in torch: the input quantizer and one step per IR op.

    Build it with :meth:`from_float`, then :meth:`calibrate` the activation scales.
    ``forward`` runs the exact integer path in eval mode (unless ``exact`` is False) and the
    differentiable float fake-quant path in train mode (see the module docstring).

    Parameters
    ----------
    steps : mapping of name -> module
        :class:`QuantLayer` (conv, linear), :class:`PoolQuant` (average pools),
        :class:`AddQuant`, ``nn.MaxPool2d`` or ``nn.Flatten``; the names become the IR op
        names.
    plan : list of (name, kind, inputs)
        the steps in execution order, ``kind`` one of ``layer``, ``pool``, ``add``,
        ``maxpool``, ``flatten``; ``inputs`` names steps or ``"input"``.
    act_bits : int
        activation width, 2..16.
    one_d : bool
        1-D model: ``(N, C, L)`` inputs run as ``(N, C, 1, L)``.
    """

    def __init__(self, steps: Mapping[str, nn.Module], plan: list[tuple[str, str, tuple]],
                 *, act_bits: int, one_d: bool = False):
        super().__init__()
        self.act_bits = _check_bit_width(act_bits, 2, 16, "Activation")
        self.input_quant = ActQuant(act_bits)
        self.layers = nn.ModuleDict(dict(steps))
        self.plan = [(n, k, tuple(i)) for n, k, i in plan]
        self.one_d = bool(one_d)
        self.input_shape: tuple[int, ...] | None = None
        self.exact = True

    @classmethod
    def from_float(cls, model: GraphModel, weight_quants: Mapping[str, nn.Module], *,
                   act_bits: int = 8) -> FakeQuantModel:
        """Wrap the layers of a BatchNorm-free :class:`~hwq.quant.graph.GraphModel`
        (:func:`~hwq.quant.graph.fold_batchnorm`).

        Each conv/linear named ``n`` gets ``weight_quants[n]`` and an ``act_bits`` output
        quantizer, each average pool and add an output quantizer. A clamp (ReLU, ReLU6,
        Hardtanh) is fused into the output quantizer of the conv, linear, add or average
        pool before it (also across max pools and flattens, which commute with it) when
        nothing else reads that output. The float modules are shared with ``model``.
        """
        if not isinstance(model, GraphModel):
            raise TypeError("FakeQuantModel.from_float takes the GraphModel of "
                            f"hwq.quant.fold_batchnorm, not {type(model).__name__}")
        layers = {n: m for n, m in model.named_children()}
        weighted = [n.name for n in model.nodes if n.kind in ("conv", "linear")]
        missing = [n for n in weighted if n not in weight_quants]
        extra = sorted(set(weight_quants) - set(weighted))
        if missing or extra:
            raise ValueError(f"Weight quantizers must match the weight layers: missing "
                             f"{missing}, unknown {extra}")
        readers = model.consumers()
        nodes = {n.name: n for n in model.nodes}
        alias: dict[str, str] = {INPUT: INPUT}
        steps: dict[str, nn.Module] = {}
        plan: list[tuple[str, str, tuple]] = []
        for node in model.nodes:
            inputs = tuple(alias[t] for t in node.inputs)
            if node.kind == "clamp":
                target = _clamp_target(node, nodes, readers)
                steps[target].output_quant.clamp(node.params["lo"], node.params["hi"])
                alias[node.name] = inputs[0]
                continue
            alias[node.name] = node.name
            module = layers.get(node.name)
            if node.kind in ("conv", "linear"):
                step, kind = QuantLayer(module, weight_quants[node.name], ActQuant(act_bits)), \
                    "layer"
            elif node.kind in ("avgpool", "gap"):
                step, kind = PoolQuant(module, ActQuant(act_bits)), "pool"
            elif node.kind == "add":
                step, kind = AddQuant(ActQuant(act_bits)), "add"
            elif node.kind in ("maxpool", "flatten"):
                step, kind = module, node.kind
            else:
                raise ValueError(f"Layer {node.name!r} ({node.kind}) is not supported")
            steps[node.name] = step
            plan.append((node.name, kind, inputs))
        return cls(steps, plan, act_bits=act_bits, one_d=model.one_d)

    def quant_layers(self) -> list[tuple[str, QuantLayer]]:
        return [(n, m) for n, m in self.layers.items() if isinstance(m, QuantLayer)]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(2) if self.one_d and x.dim() == 3 else x

    # -- calibration and the integer path ---------------------------------------------------

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, method: str = "max", percentile: float = 99.99) -> None:
        """Set the input and every output scale from calibration inputs ``x``, in order.

        Each output is calibrated on its real value (``(acc + bias) * acc_scale`` of a
        layer, the window mean of a pool, ``a * s_a + b * s_b`` of an add) computed by the
        exact integer path through the already calibrated steps before it, so the scales
        see the quantization error of everything upstream.
        """
        if method not in CALIBRATIONS:
            raise ValueError(f"Calibration must be one of {', '.join(CALIBRATIONS)}, "
                             f"not {method!r}")
        x = self._prepare(x)
        self.input_shape = tuple(int(s) for s in x.shape[1:])
        self.input_quant.calibrate(x.detach().double(), method, percentile)
        self._run_int(x, calibrate=(method, percentile))

    @torch.no_grad()
    def _run_int(self, x: torch.Tensor, outputs: list[torch.Tensor] | None = None, *,
                 calibrate: Any = None) -> tuple[torch.Tensor, float]:
        x = self._prepare(x)
        env = {INPUT: self.input_quant.to_int(x.detach().double())}
        scales = {INPUT: float(self.input_quant.scale)}
        last = {t: i for i, (_, _, inputs) in enumerate(self.plan) for t in inputs}
        for i, (name, kind, inputs) in enumerate(self.plan):
            step = self.layers[name]
            xs, ss = [env[t] for t in inputs], [scales[t] for t in inputs]
            if kind == "layer":
                s_in = ss[0]
                acc = None
                if calibrate is not None:
                    w_int, bias, acc_scale = step.accumulator_params(s_in)
                    acc = step.accumulate(xs[0], w_int)
                    shape = (1, -1) + (1,) * (acc.dim() - 2)
                    real = ((acc + torch.from_numpy(bias).reshape(shape)).double()
                            * torch.from_numpy(acc_scale).reshape(shape))
                    step.output_quant.calibrate(real, *calibrate)
                y = step.forward_int(xs[0], s_in, acc)
            elif kind in ("pool", "add"):
                y = step.int_step(xs, ss, calibrate)
            else:
                y = step(xs[0])
            env[name] = y
            scales[name] = float(step.output_quant.scale) if kind in _REQUANT_KINDS else ss[0]
            if outputs is not None:
                outputs.append(y)
            for t in set(inputs):
                if last[t] == i and t != self.plan[-1][0]:
                    del env[t]
        out = self.plan[-1][0]
        return env[out], scales[out]

    # -- forward paths -----------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.exact:
            return self.forward_float(x)
        y, scale = self._run_int(x)
        return y * scale

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable fake quantization (float32 in, float32 out)."""
        env = {INPUT: self.input_quant(self._prepare(x))}
        scales = {INPUT: float(self.input_quant.scale)}
        for name, kind, inputs in self.plan:
            step = self.layers[name]
            xs, ss = [env[t] for t in inputs], [scales[t] for t in inputs]
            if kind == "layer":
                env[name] = step.forward_float(xs[0], ss[0])
            elif kind in ("pool", "add"):
                env[name] = step.forward_float(xs, ss)
            else:
                env[name] = step(xs[0])
            scales[name] = float(step.output_quant.scale) if kind in _REQUANT_KINDS else ss[0]
        return env[self.plan[-1][0]]

    @torch.no_grad()
    def to_int(self, x: torch.Tensor, *, trace: bool = False) -> Any:
        """Integer outputs (int64) of the last op, like :func:`hwq.golden.run`.

        With ``trace=True``, the list of every op's output (one per IR op: clamps are fused).
        """
        outputs: list[torch.Tensor] = []
        h, _ = self._run_int(x, outputs if trace else None)
        return [o.to(torch.int64) for o in outputs] if trace else h.to(torch.int64)

    # -- export ------------------------------------------------------------------------------

    @torch.no_grad()
    def to_network(self, meta: dict[str, Any] | None = None) -> ir.QuantizedNetwork:
        """The integer network (:class:`hwq.ir.QuantizedNetwork`) this model computes."""
        if self.input_shape is None or not self.input_quant.calibrated:
            raise RuntimeError("FakeQuantModel is not calibrated; call calibrate() first")
        ops: list[ir.Op] = []
        scales = {INPUT: float(self.input_quant.scale)}
        shapes = {INPUT: self.input_shape}
        for name, kind, inputs in self.plan:
            step = self.layers[name]
            ss = [scales[t] for t in inputs]
            if kind == "layer":
                op = step.to_op(name, ss[0], inputs)
            elif kind in ("pool", "add"):
                op = step.to_op(name, inputs, ss, shapes[inputs[0]])
            elif kind == "maxpool":
                m = step
                k, s, p = (tuple(v) if isinstance(v, tuple | list) else (v, v)
                           for v in (m.kernel_size, m.stride, m.padding))
                op = ir.MaxPool2d(name=name, inputs=inputs, kernel=k, stride=s,
                                  padding=(p[0], p[0], p[1], p[1]))
            else:
                op = ir.Flatten(name=name, inputs=inputs)
            ops.append(op)
            shapes[name] = op.output_shape([shapes[t] for t in inputs])
            scales[name] = op.scale(ss)
        return ir.QuantizedNetwork(input_shape=self.input_shape, act_bits=self.act_bits,
                                   input_scale=float(self.input_quant.scale), ops=ops,
                                   meta=dict(meta or {}))


def _clamp_target(node: Any, nodes: dict[str, Any], readers: dict[str, list[str]]) -> str:
    """The step whose output quantizer a clamp node fuses into, through max pools,
    flattens and other clamps that nothing else reads."""
    reader, t = node.name, node.inputs[0]
    while t in nodes and readers[t] == [reader]:
        kind = nodes[t].kind
        if kind in ("conv", "linear", "add", "avgpool", "gap"):
            return t
        if kind not in ("maxpool", "flatten", "clamp"):
            break
        reader, t = t, nodes[t].inputs[0]
    what = node.params.get("what", "ReLU")
    raise ValueError(f"{what} {node.name!r} must follow a Conv2d or Linear (or an add or "
                     "average pool) whose output nothing else reads: hwq fuses it into their "
                     "requantization")
