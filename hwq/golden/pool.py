"""Pooling of the golden model: max pooling and average-pool window sums.

Activations are NCHW int64 ``(N, C, H, W)``. Kernel and stride are an int or ``(h, w)``
(stride defaults to the kernel); padding an int, ``(h, w)`` or ``(top, bottom, left, right)``,
at most half the kernel on each side as PyTorch requires. Output sizes are
:func:`~hwq.golden.window.conv_output_size` with dilation 1: ``ceil_mode`` is not supported.
Each op is a Python loop over the ``KH*KW`` kernel taps, vectorized over everything else.
"""

from __future__ import annotations

import numpy as np

from hwq.golden._checks import INT64_MAX, check_acts
from hwq.golden.window import (
    check_pool_padding,
    checked_padding4,
    checked_pair,
    conv_output_size,
)

INT64_MIN = -INT64_MAX - 1


def _geometry(xa, kernel, stride, padding, op):
    kh, kw = checked_pair(kernel, f"{op} kernel")
    sh, sw = (kh, kw) if stride is None else checked_pair(stride, f"{op} stride")
    pads = checked_padding4(padding, f"{op} padding")
    check_pool_padding(pads, (kh, kw), f"{op} padding", padding)
    top, bottom, left, right = pads
    h, w = xa.shape[2:]
    ho = conv_output_size(h, kh, sh, top, bottom) if h else 0
    wo = conv_output_size(w, kw, sw, left, right) if w else 0
    if ho < 1 or wo < 1:
        padded = f" with padding {padding!r}" if any(pads) else ""
        need = f"{max(1, kh - top - bottom)}x{max(1, kw - left - right)}"
        raise ValueError(f"{op} {kh}x{kw}{padded} needs an input of at least {need}, "
                         f"not {h}x{w}")
    return (kh, kw), (sh, sw), pads, (ho, wo)


def _taps(xp, kernel, stride, out_size):
    """Every kernel tap's strided view of the padded input, each ``(N, C, Ho, Wo)``."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_size
    for u in range(kh):
        for v in range(kw):
            yield xp[:, :, u:u + sh * (ho - 1) + 1:sh, v:v + sw * (wo - 1) + 1:sw]


def maxpool2d(
    x: object,
    kernel: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, ...] = 0,
) -> np.ndarray:
    """Max pooling: ``y[n, c, i, j] = max_{u, v} xpad[n, c, i*sh + u, j*sw + v]``.

    Padded positions never win (PyTorch's implicit -infinity padding): with padding at
    most half the kernel every window holds at least one input value. ``maxpool2d(x)`` is
    2x2 stride 2, an odd last row/column dropped.

    Parameters
    ----------
    x : int array (N, C, H, W)
    kernel : int or (kh, kw), in 1..65536
    stride : int or (sh, sw), optional (default: the kernel)
    padding : int, (h, w) or (top, bottom, left, right), each at most half the kernel

    Returns
    -------
    int64 array (N, C, Ho, Wo), values taken from ``x``.
    """
    xa = check_acts(x, None, 4, "(N, C, H, W)")
    kernel, stride, pads, size = _geometry(xa, kernel, stride, padding, "Maxpool")
    top, bottom, left, right = pads
    xp = np.pad(xa, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=INT64_MIN)
    taps = _taps(xp, kernel, stride, size)
    out = next(taps).copy()
    for tap in taps:
        np.maximum(out, tap, out=out)
    return out


def _check_sum_bound(xa: np.ndarray, count: int, op: str) -> None:
    peak = int(np.abs(xa).max()) if xa.size else 0
    if peak * count > INT64_MAX:
        raise ValueError(f"{op} sum of {count} values up to {peak} in magnitude overflows int64")


def avgpool2d_sum(
    x: object,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, ...] = 0,
) -> np.ndarray:
    """Average-pool window sums: ``y[n, c, i, j] = sum_{u, v} xpad[n, c, i*sh + u, j*sw + v]``.

    ``xpad`` has zero padding, so ``y / (kh*kw)`` is PyTorch's ``AvgPool2d`` with
    ``count_include_pad=True``; the division is left to a later requant (1/(kh*kw) folded
    into its multiplier), not done here.

    Parameters
    ----------
    x : int array (N, C, H, W)
    kernel : int or (kh, kw), in 1..65536
    stride : int or (sh, sw), optional (default: the kernel)
    padding : int, (h, w) or (top, bottom, left, right), each at most half the kernel

    Returns
    -------
    int64 array (N, C, Ho, Wo); exact (refused if ``kh*kw * max|x|`` exceeds int64).
    """
    xa = check_acts(x, None, 4, "(N, C, H, W)")
    kernel, stride, pads, size = _geometry(xa, kernel, stride, padding, "Avgpool")
    _check_sum_bound(xa, kernel[0] * kernel[1], "Avgpool window")
    top, bottom, left, right = pads
    xp = np.pad(xa, ((0, 0), (0, 0), (top, bottom), (left, right)))
    taps = _taps(xp, kernel, stride, size)
    out = next(taps).copy()
    for tap in taps:
        out += tap
    return out


def global_avgpool_sum(x: object) -> np.ndarray:
    """Sum over the whole plane: ``(N, C, H, W) -> (N, C, 1, 1)``, ``y = sum_{h, w} x``.

    The global average pool before its requant (``1/(H*W)`` folded into the multiplier).
    """
    xa = check_acts(x, None, 4, "(N, C, H, W)")
    h, w = xa.shape[2:]
    if h < 1 or w < 1:
        raise ValueError(f"Global avgpool input must be at least 1x1, not {h}x{w}")
    _check_sum_bound(xa, h * w, "Global avgpool")
    return xa.sum(axis=(2, 3), keepdims=True)


__all__ = ["avgpool2d_sum", "global_avgpool_sum", "maxpool2d"]
