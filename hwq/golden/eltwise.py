"""Elementwise add of two activation tensors (the residual add), with its requant.

Each input is rescaled to the output scale by its own positive integer multiplier and the
two share one shift::

    y = clamp((a*ma + b*mb + 2**(s-1)) >> s, lo, hi)

``>>`` is an arithmetic (floor) shift, so adding ``2**(s-1)`` rounds half up, as in
:func:`~hwq.golden.requant.requantize`; ``lo = 0`` fuses a following ReLU.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hwq.golden._checks import (
    as_int_array,
    check_int,
    check_range,
    per_channel,
    signed_range,
)
from hwq.golden.requant import M_BITS, M_MAX, S_MAX, S_MIN

ADD_INPUT_BITS = 16  # inputs are at most 16-bit signed activations


def add(a: object, b: object, *, ma: object, mb: object, s: object, lo: int, hi: int
        ) -> np.ndarray:
    """Requantized sum of two tensors: ``y = clamp((a*ma + b*mb + 2**(s-1)) >> s, lo, hi)``.

    Exact in int64: with ``|a|, |b| <= 2**15`` and ``ma, mb < 2**24``,
    ``|a*ma + b*mb| < 2**40``, and adding ``2**(s-1) <= 2**61`` stays below ``2**63``.

    Parameters
    ----------
    a, b : int arrays of one shape ``(N, C, ...)``, 16-bit signed
    ma, mb : int or int array (C,)
        multipliers in ``1..2**24-1`` (per channel, axis 1).
    s : int or int array (C,)
        shift in ``1..62``.
    lo, hi : int
        clamp bounds of the output (``lo = 0``: ReLU).

    Returns
    -------
    int64 array of ``a``'s shape with values in ``lo..hi``.

    >>> add([[3]], [[-1]], ma=1, mb=1, s=1, lo=-128, hi=127).tolist()   # 2/2 = 1
    [[1]]
    >>> add([[1, 1]], [[2, 0]], ma=[1, 3], mb=1, s=2, lo=-128, hi=127).tolist()  # 3/4, 3/4
    [[1, 1]]
    """
    aa = as_int_array(a, "Add input a")
    bb = as_int_array(b, "Add input b")
    if aa.shape != bb.shape:
        raise ValueError(f"Add inputs must have the same shape, not {aa.shape} and {bb.shape}")
    if aa.ndim < 2:
        raise ValueError(f"Add inputs must have a channel axis (N, C, ...), not shape {aa.shape}")
    in_lo, in_hi = signed_range(ADD_INPUT_BITS)
    check_range(aa, in_lo, in_hi, "Add input a", f"{ADD_INPUT_BITS}-bit signed")
    check_range(bb, in_lo, in_hi, "Add input b", f"{ADD_INPUT_BITS}-bit signed")
    channels = aa.shape[1]
    ma_c = per_channel(ma, channels, "Add multiplier ma")
    mb_c = per_channel(mb, channels, "Add multiplier mb")
    s_c = per_channel(s, channels, "Add shift s")
    check_range(ma_c, 1, M_MAX, "Add multiplier ma", f"a positive {M_BITS}-bit integer")
    check_range(mb_c, 1, M_MAX, "Add multiplier mb", f"a positive {M_BITS}-bit integer")
    check_range(s_c, S_MIN, S_MAX, "Add shift s", "a shift")
    lo = check_int(lo, "Clamp low bound", -(1 << 62), 1 << 62)
    hi = check_int(hi, "Clamp high bound", lo, 1 << 62)
    shape = (1, channels) + (1,) * (aa.ndim - 2)
    ma_c, mb_c, s_c = (v.reshape(shape) for v in (ma_c, mb_c, s_c))
    t = aa * ma_c + bb * mb_c  # |t| < 2**40
    y = (t + np.left_shift(1, s_c - 1)) >> s_c
    return np.clip(y, lo, hi)


class AddMultipliers(NamedTuple):
    """Integer form of ``y = a*scale_a/scale_out + b*scale_b/scale_out`` for :func:`add`."""

    ma: int | np.ndarray
    mb: int | np.ndarray
    s: int | np.ndarray


def _scale(value: object, name: str) -> np.ndarray:
    try:
        r = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"Add {name} must be a finite positive float, not {value!r}") from None
    bad = ~np.isfinite(r) | (r <= 0)
    if bad.any():
        raise ValueError(
            f"Add {name} must be a finite positive float, not {float(r[bad].ravel()[0])!r}"
        )
    return r


def add_multipliers(scale_a: object, scale_b: object, scale_out: object) -> AddMultipliers:
    """``(ma, mb, s)`` with ``ma * 2**-s`` nearest ``scale_a/scale_out``, likewise ``mb``.

    The shift is shared: chosen so that the larger multiplier has 24 significant bits
    (``2**23 <= max(ma, mb) < 2**24``) when ``s`` stays within 1..62 (tiny ratios keep
    ``s = 62`` and smaller multipliers). Both round to nearest (ties to even) from the
    float64 ratios, so ``|ma * 2**-s - scale_a/scale_out| <= 2**-(s+1)`` (likewise ``mb``):
    the sum ``(a*ma + b*mb) * 2**-s`` is within ``(|a| + |b|) * 2**-(s+1)`` of the real
    ``a*ra + b*rb``, that is at most ``(|a| + |b|) * max(ra, rb) * 2**-24`` when normalized;
    :func:`add` then rounds to the nearest integer (half up).

    Scalars give Python ints; arrays (broadcast together, e.g. per channel) give int64
    arrays.

    >>> add_multipliers(0.5, 0.25, 1.0)
    AddMultipliers(ma=8388608, mb=4194304, s=24)
    >>> add_multipliers(0.02, 0.03, 0.04)   # ratios 0.5 and 0.75
    AddMultipliers(ma=8388608, mb=12582912, s=24)

    Raises
    ------
    ValueError
        a scale that is not finite and positive, a ratio ``max(scale_a, scale_b)/scale_out``
        of ``2**23 - 0.25`` or more (``s`` would be below 1), or ratios so far apart that the
        smaller multiplier rounds to 0.
    """
    sa, sb, so = (_scale(v, n) for v, n in
                  ((scale_a, "scale_a"), (scale_b, "scale_b"), (scale_out, "scale_out")))
    scalar = sa.ndim == sb.ndim == so.ndim == 0
    sa, sb, so = np.broadcast_arrays(sa, sb, so)
    ra, rb = sa / so, sb / so
    r = np.maximum(ra, rb)
    limit = (M_MAX + 0.5) / 2  # largest ratio whose multiplier at s = 1 rounds to <= M_MAX
    big = r >= limit
    if big.any():
        i = np.argwhere(big)[0] if big.ndim else ()
        raise ValueError(
            f"Add scale ratio max(scale_a, scale_b) / scale_out must be below {limit} "
            f"(multipliers < 2**{M_BITS} with s >= 1), not {float(r[tuple(i)])!r} "
            f"(scale_a={float(sa[tuple(i)])!r}, scale_b={float(sb[tuple(i)])!r}, "
            f"scale_out={float(so[tuple(i)])!r})"
        )
    _, exp = np.frexp(r)  # r = mant * 2**exp, 0.5 <= mant < 1
    s = np.minimum(M_BITS - exp.astype(np.int64), S_MAX)
    carry = np.rint(np.ldexp(r, s)) > M_MAX  # the larger mantissa rounded up to 2**24
    s = np.where(carry, s - 1, s)  # s >= 1: the ratio limit keeps exp <= 23, no carry at 23
    ma = np.rint(np.ldexp(ra, s)).astype(np.int64)
    mb = np.rint(np.ldexp(rb, s)).astype(np.int64)
    zero = (ma == 0) | (mb == 0)
    if zero.any():
        i = tuple(np.argwhere(zero)[0]) if zero.ndim else ()
        raise ValueError(
            f"Add scales scale_a={float(sa[i])!r}, scale_b={float(sb[i])!r}, "
            f"scale_out={float(so[i])!r} are too far apart: with the larger multiplier at "
            f"{M_BITS} bits (or s = {S_MAX}) the smaller rounds to 0"
        )
    if scalar:
        return AddMultipliers(int(ma), int(mb), int(s))
    return AddMultipliers(ma, mb, s)


__all__ = ["AddMultipliers", "add", "add_multipliers"]


class AddWeights(NamedTuple):
    """Integer input weights of an add and the float scale of ``a*wa + b*wb``."""

    wa: int
    wb: int
    acc_scale: float    # a*scale_a + b*scale_b ~= (a*wa + b*wb) * acc_scale
    rel_error: float    # |wa/wb - scale_a/scale_b| / (scale_a/scale_b)


def add_weights(scale_a: float, scale_b: float, *, max_weight: int = 127,
                rel_tol: float = 2.0 ** -9) -> AddWeights:
    """Small positive integers ``wa, wb`` with ``wa / wb ~= scale_a / scale_b``.

    The pair with the smallest ``max(wa, wb)`` whose ratio is within ``rel_tol`` (relative)
    of the scale ratio, or, when none up to ``max_weight`` is, the closest pair; the smaller
    weights cost the core fewer micro-ops. ``acc_scale`` is exact for the input of the larger
    scale (``scale_a / wa`` or ``scale_b / wb``); the other is off by ``rel_error``. The
    default ``rel_tol`` is half an 8-bit LSB.

    >>> add_weights(0.02, 0.01)
    AddWeights(wa=2, wb=1, acc_scale=0.01, rel_error=0.0)
    >>> w = add_weights(0.0123, 0.0456)
    >>> (w.wa, w.wb), round(w.rel_error, 5)
    ((7, 26), 0.00188)
    """
    for name, v in (("scale_a", scale_a), ("scale_b", scale_b)):
        if not (isinstance(v, int | float | np.floating) and np.isfinite(v) and v > 0):
            raise ValueError(f"Add {name} must be a finite positive float, not {v!r}")
    max_weight = check_int(max_weight, "Add weight limit", 1, 1 << 15)
    r = float(scale_a) / float(scale_b)
    best: tuple[float, int, int] | None = None
    for wb in range(1, max_weight + 1):
        wa = int(np.clip(np.rint(r * wb), 1, max_weight))
        err = abs(wa / wb - r) / r
        if best is None or err < best[0] - 1e-15:
            best = (err, wa, wb)
        if err <= rel_tol:
            break
    # the same search with the roles swapped (a ratio below 1 / max_weight or above)
    for wa in range(1, max_weight + 1):
        wb = int(np.clip(np.rint(wa / r), 1, max_weight))
        err = abs(wa / wb - r) / r
        if err < best[0] - 1e-15 and (best[0] > rel_tol or max(wa, wb) < max(best[1:])):
            best = (err, wa, wb)
        if err <= rel_tol:
            break
    err, wa, wb = best
    # exact for the input of the larger scale (the one that dominates the sum)
    acc_scale = float(scale_a) / wa if r > 1 else float(scale_b) / wb
    return AddWeights(wa=wa, wb=wb, acc_scale=acc_scale, rel_error=float(err))
