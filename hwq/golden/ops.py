"""Integer ops of the golden model: linear, conv2d, maxpool 2x2, flatten.

Activations are NCHW (``(N, C, H, W)``) or ``(N, K)`` int64 arrays; conv weights are
``(C_out, C_in, k, k)``, linear weights ``(C_out, K)``, as in PyTorch. ``linear`` and
``conv2d`` return raw accumulators (no bias); ``hwq.golden.requant.requantize`` turns
them into activations. Everything is exact integer arithmetic.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hwq.golden._checks import (
    as_int_array,
    check_int,
    check_ndim,
    check_range,
    signed_bits_for,
    signed_range,
)
from hwq.golden.gemm import int_matmul, matmul_dtype

ACT_BITS = (2, 16)
ACC_BITS = (2, 62)


def _check_acts(x: object, act_bits: int | None, ndim: int, layout: str) -> np.ndarray:
    arr = as_int_array(x, "Activations")
    check_ndim(arr, ndim, "Activations", layout)
    if act_bits is not None:
        act_bits = check_int(act_bits, "Activation bit width", *ACT_BITS)
        lo, hi = signed_range(act_bits)
        check_range(arr, lo, hi, "Activations", f"{act_bits}-bit signed")
    return arr


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
    xa = _check_acts(x, act_bits, 2, "(N, K)")
    wa = as_int_array(w, "Linear weights")
    check_ndim(wa, 2, "Linear weights", "(C_out, K)")
    if xa.shape[1] != wa.shape[1]:
        raise ValueError(
            f"Linear input has K={xa.shape[1]} features but the weights expect K={wa.shape[1]}"
        )
    return int_matmul(xa, wa.T)


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output height/width of a convolution: ``(size + 2*padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def conv2d(
    x: object, w: object, *, stride: int = 1, padding: int = 0, act_bits: int | None = None
) -> np.ndarray:
    """Accumulators of a 2-D convolution (square kernel, zero padding, groups = 1).

    ``acc[n, c, i, j] = sum_{ci, u, v} xpad[n, ci, i*stride + u, j*stride + v] * w[c, ci, u, v]``
    where ``xpad`` is ``x`` with ``padding`` zeros on every side. Computed as im2col
    followed by one exact GEMM (float32/float64 BLAS when exact, int64 otherwise).

    Parameters
    ----------
    x : int array (N, C_in, H, W)
    w : int array (C_out, C_in, k, k)
    stride : int >= 1
    padding : int >= 0
    """
    xa = _check_acts(x, act_bits, 4, "(N, C, H, W)")
    wa = as_int_array(w, "Conv weights")
    check_ndim(wa, 4, "Conv weights", "(C_out, C_in, k, k)")
    stride = check_int(stride, "Conv stride", 1, 1 << 16)
    padding = check_int(padding, "Conv padding", 0, 1 << 16)
    c_out, c_in, kh, kw = wa.shape
    if kh != kw:
        raise ValueError(f"Conv kernel must be square, not {kh}x{kw}")
    if xa.shape[1] != c_in:
        raise ValueError(f"Conv input has {xa.shape[1]} channels but the weights expect {c_in}")
    n, _, h, wd = xa.shape
    ho, wo = (conv2d_output_size(s, kh, stride, padding) for s in (h, wd))
    if ho < 1 or wo < 1:
        raise ValueError(
            f"Conv input {h}x{wd} with padding {padding} is smaller than the {kh}x{kh} kernel"
        )
    k = c_in * kh * kw
    x_max = int(np.abs(xa).max()) if xa.size else 0
    w_max = int(np.abs(wa).max()) if wa.size else 0
    dtype = matmul_dtype(k, x_max, w_max)
    xp = np.pad(xa.astype(dtype, copy=False), ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride][:, :, :ho, :wo]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, k)
    out = np.matmul(cols, wa.reshape(c_out, k).T.astype(dtype))
    return out.astype(np.int64).reshape(n, ho, wo, c_out).transpose(0, 3, 1, 2)


def maxpool2d(x: object) -> np.ndarray:
    """2x2 max pooling, stride 2; an odd last row/column is dropped (as PyTorch does)."""
    xa = _check_acts(x, None, 4, "(N, C, H, W)")
    n, c, h, w = xa.shape
    if h < 2 or w < 2:
        raise ValueError(f"Maxpool 2x2 needs an input of at least 2x2, not {h}x{w}")
    ho, wo = h // 2, w // 2
    return xa[:, :, : 2 * ho, : 2 * wo].reshape(n, c, ho, 2, wo, 2).max(axis=(3, 5))


def flatten(x: object) -> np.ndarray:
    """``(N, C, H, W) -> (N, C*H*W)`` in PyTorch order (channel-major). No arithmetic."""
    xa = as_int_array(x, "Activations")
    if xa.ndim < 2:
        raise ValueError(f"Flatten needs a batch axis (ndim >= 2), not shape {xa.shape}")
    return xa.reshape(xa.shape[0], -1)


__all__ = [
    "accumulator_bits",
    "accumulator_range",
    "check_accumulator",
    "conv2d",
    "conv2d_output_size",
    "flatten",
    "int_matmul",
    "linear",
    "maxpool2d",
    "worst_case_accumulator_bits",
]
