"""Integer ops of the golden model: linear, flatten, the accumulator bounds, and the index.

Activations are NCHW (``(N, C, H, W)``) or ``(N, K)`` int64 arrays; linear weights are
``(C_out, K)``, as in PyTorch. ``linear`` and ``conv2d`` return raw accumulators (no bias);
``hwq.golden.requant.requantize`` turns them into activations. Everything is exact integer
arithmetic. The other ops live by concept and are re-exported here: convolution in
:mod:`~hwq.golden.conv`, pooling in :mod:`~hwq.golden.pool`, the elementwise add in
:mod:`~hwq.golden.eltwise`, window geometry in :mod:`~hwq.golden.window`.
"""

from __future__ import annotations

import numpy as np

from hwq.golden._checks import (
    ACT_BITS,
    as_int_array,
    check_acts,
    check_int,
    check_ndim,
    signed_bits_for,
    signed_range,
)
from hwq.golden.conv import conv2d
from hwq.golden.eltwise import AddMultipliers, add, add_multipliers
from hwq.golden.gemm import int_matmul
from hwq.golden.pool import avgpool2d_sum, global_avgpool_sum, maxpool2d
from hwq.golden.window import conv2d_output_size, conv_output_size, padding4, pair

ACC_BITS = (2, 62)


def accumulator_range(
    w: object, act_bits: int, bias: object | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel range of ``acc + bias`` over all ``act_bits``-bit signed inputs.

    ``w`` is ``(C_out, ...)``; each output channel's sum reaches its maximum when every
    activation sits at the end of its range that the weight's sign favours.
    """
    wt = as_int_array(w, "Weights")
    act_bits = check_int(act_bits, "Activation bit width", *ACT_BITS)
    a_lo, a_hi = signed_range(act_bits)
    flat = wt.reshape(wt.shape[0], -1)
    w_peak = max(-int(flat.min()), int(flat.max())) if flat.size else 0
    if w_peak * (1 << (act_bits - 1)) * max(flat.shape[1], 1) >= 1 << 62:
        flat = flat.astype(object)  # exact Python integers when int64 could overflow
    hi = np.where(flat > 0, flat * a_hi, flat * a_lo).sum(axis=1)
    lo = np.where(flat > 0, flat * a_lo, flat * a_hi).sum(axis=1)
    if bias is not None:
        b = as_int_array(bias, "Bias").reshape(-1)
        hi, lo = hi + b, lo + b
    return lo, hi  # int64, or object arrays of Python ints for huge ranges


def accumulator_bits(w: object, act_bits: int, bias: object | None = None) -> int:
    """Fewest signed bits that hold every possible ``acc + bias`` of the layer."""
    lo, hi = accumulator_range(w, act_bits, bias)
    if lo.size == 0:
        return 1
    return signed_bits_for(int(lo.min()), int(hi.max()))


def worst_case_accumulator_bits(k: int, act_bits: int, weight_min: int, weight_max: int) -> int:
    """Accumulator width for any length-``k`` dot product of the given ranges (no bias).

    >>> worst_case_accumulator_bits(576, 8, -128, 127)   # int8 x int8, K = 576
    25
    """
    k = check_int(k, "Reduction length K", 1, 1 << 40)
    a_lo, a_hi = signed_range(check_int(act_bits, "Activation bit width", *ACT_BITS))
    products = [a * w for a in (a_lo, a_hi) for w in (weight_min, weight_max)]
    return signed_bits_for(k * min(products + [0]), k * max(products + [0]))


def check_accumulator(w: object, act_bits: int, acc_bits: int, bias: object | None = None) -> int:
    """Raise ``ValueError`` if ``acc_bits`` cannot hold every ``acc + bias``; return the need."""
    acc_bits = check_int(acc_bits, "Accumulator bit width", *ACC_BITS)
    need = accumulator_bits(w, act_bits, bias)
    if need > acc_bits:
        raise ValueError(
            f"Accumulator of {acc_bits} bits can overflow: this layer needs {need} bits "
            f"(weights {as_int_array(w, 'Weights').shape}, {act_bits}-bit activations)"
        )
    return need


def linear(x: object, w: object, *, act_bits: int | None = None) -> np.ndarray:
    """Accumulators of a fully connected layer: ``acc[n, c] = sum_k x[n, k] * w[c, k]``.

    Parameters
    ----------
    x : int array (N, K)
    w : int array (C_out, K)
    act_bits : int, optional
        if given, ``x`` must be ``act_bits``-bit signed.
    """
    xa = check_acts(x, act_bits, 2, "(N, K)")
    wa = as_int_array(w, "Linear weights")
    check_ndim(wa, 2, "Linear weights", "(C_out, K)")
    if xa.shape[1] != wa.shape[1]:
        raise ValueError(
            f"Linear input has K={xa.shape[1]} features but the weights expect K={wa.shape[1]}"
        )
    return int_matmul(xa, wa.T)


def flatten(x: object) -> np.ndarray:
    """``(N, C, H, W) -> (N, C*H*W)`` in PyTorch order (channel-major). No arithmetic."""
    xa = as_int_array(x, "Activations")
    if xa.ndim < 2:
        raise ValueError(f"Flatten needs a batch axis (ndim >= 2), not shape {xa.shape}")
    return xa.reshape(xa.shape[0], -1)


__all__ = [
    "ACT_BITS",
    "AddMultipliers",
    "accumulator_bits",
    "accumulator_range",
    "add",
    "add_multipliers",
    "avgpool2d_sum",
    "check_accumulator",
    "conv2d",
    "conv2d_output_size",
    "conv_output_size",
    "flatten",
    "global_avgpool_sum",
    "int_matmul",
    "linear",
    "maxpool2d",
    "padding4",
    "pair",
    "worst_case_accumulator_bits",
]
