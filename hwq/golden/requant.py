"""Requantization: accumulator -> activation, and float scale -> integer (M, S).

The hardware computes, per output channel ``c`` (docs/architecture.md)::

    y = clamp(((acc + bias[c]) * M[c] + 2**(S[c] - 1)) >> S[c], lo, hi)

with ``>>`` an arithmetic (floor) shift, ``M`` a positive integer of at most
``M_BITS = 24`` bits and ``S`` in 1..62. Adding ``2**(S-1)`` before the floor shift
rounds half up (ties toward +infinity). ``lo = 0`` gives ReLU.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hwq.golden._checks import (
    INT64_MAX,
    as_int_array,
    check_int,
    check_range,
    per_channel,
    signed_range,
)

M_BITS = 24
M_MAX = (1 << M_BITS) - 1
S_MIN, S_MAX = 1, 62


class Multiplier(NamedTuple):
    """Integer form ``M * 2**-S`` of a float scale, and its absolute error bound."""

    M: np.ndarray  # int64, 1..2**24 - 1
    S: np.ndarray  # int64, 1..62
    error_bound: np.ndarray  # float64: |M * 2**-S - scale| <= 2**-(S + 1)


def multiplier_from_scale(scale: object) -> Multiplier:
    """Convert positive float scales to ``(M, S)`` with ``M * 2**-S`` nearest to ``scale``.

    ``M`` is normalized to 24 significant bits (``2**23 <= M < 2**24``) whenever ``S``
    stays within 1..62, so the relative error is at most ``2**-24``; the absolute error
    is at most ``2**-(S+1)``, hence the requantized value ``(acc + bias) * M * 2**-S``
    differs from ``(acc + bias) * scale`` by at most ``|acc + bias| * 2**-(S+1)``.
    Scales below about ``2**-62`` keep ``S = 62`` with a smaller ``M``. Rounding of
    ``M`` is to nearest, ties to even.

    >>> m = multiplier_from_scale([0.5, 0.1, 3.0])
    >>> m.M.tolist(), m.S.tolist()
    ([8388608, 13421773, 12582912], [24, 27, 22])

    Raises
    ------
    ValueError
        a scale that is not finite and positive, at least ``2**23 - 0.25`` (S would be < 1), or
        so small that ``M`` would round to 0.
    """
    r = np.asarray(scale, dtype=np.float64)
    bad = ~np.isfinite(r) | (r <= 0)
    if bad.any():
        raise ValueError(
            "Requant scale must be a finite positive float, not "
            f"{float(r[bad].ravel()[0])!r}"
        )
    scale_limit = (M_MAX + 0.5) / 2  # largest scale whose M at S = 1 rounds to <= M_MAX
    too_large = r >= scale_limit
    if too_large.any():
        raise ValueError(
            f"Requant scale must be below {scale_limit} (M < 2**{M_BITS} with S >= 1), not "
            f"{float(r[too_large].ravel()[0])!r}"
        )
    mant, exp = np.frexp(r)  # r = mant * 2**exp, 0.5 <= mant < 1
    shift = M_BITS - exp.astype(np.int64)
    m = np.rint(mant * float(1 << M_BITS)).astype(np.int64)
    carry = m > M_MAX  # mantissa rounded up to 2**24
    m = np.where(carry, m >> 1, m)
    shift = np.where(carry, shift - 1, shift)
    # very small scales: saturate S at 62, denormalized M
    small = shift > S_MAX
    if small.any():
        m = np.where(small, np.rint(np.ldexp(r, S_MAX)).astype(np.int64), m)
        shift = np.where(small, S_MAX, shift)
        if (m <= 0).any():
            raise ValueError(
                f"Requant scale must be above 2**-{S_MAX + 1} so that M >= 1, not "
                f"{float(r[m <= 0].ravel()[0])!r}"
            )
    # shift >= 1: the scale limit keeps exp <= 23, and a carry at exp = 23 cannot happen
    return Multiplier(M=m, S=shift, error_bound=np.ldexp(0.5, -shift))


def requantize(
    acc: object,
    bias: object,
    M: object,
    S: object,
    *,
    lo: int,
    hi: int,
    axis: int = 1,
) -> np.ndarray:
    """Requantize accumulators per output channel.

    Parameters
    ----------
    acc : int array
        accumulators, the channel on ``axis`` (``(N, C)`` or ``(N, C, H, W)``).
    bias : int array, shape (C,)
        in accumulator units (int32 range).
    M, S : int arrays, shape (C,)
        multiplier ``1..2**24-1`` and shift ``1..62``.
    lo, hi : int
        clamp bounds of the output activations (``lo = 0``: ReLU).

    Returns
    -------
    int64 array of ``acc``'s shape with values in ``lo..hi``.

    Exact for every input in range: ``(acc + bias) * M`` may need up to 87 bits (48-bit
    accumulators and 24-bit ``M`` need 73); products beyond int64 are computed on 32-bit
    limbs, still vectorized.
    """
    a = as_int_array(acc, "Accumulators")
    if a.ndim < 2:
        raise ValueError(f"Accumulators must have a channel axis (ndim >= 2), not shape {a.shape}")
    channels = a.shape[axis]
    b = per_channel(bias, channels, "Bias")
    m = per_channel(M, channels, "Requant multiplier M")
    s = per_channel(S, channels, "Requant shift S")
    lo_b, hi_b = signed_range(32)
    check_range(b, lo_b, hi_b, "Bias", "int32")
    check_range(m, 1, M_MAX, "Requant multiplier M", f"a positive {M_BITS}-bit integer")
    check_range(s, S_MIN, S_MAX, "Requant shift S", "a shift")
    lo = check_int(lo, "Clamp low bound", -(1 << 62), 1 << 62)
    hi = check_int(hi, "Clamp high bound", lo, 1 << 62)

    shape = [1] * a.ndim
    shape[axis] = channels
    b, m, s = (v.reshape(shape) for v in (b, m, s))
    peak = max(-int(a.min()), int(a.max())) if a.size else 0
    if peak >= 1 << 62:
        raise ValueError(f"Accumulators must be below 2**62 in magnitude, not {peak}")
    t = a + b
    if (np.abs(t) <= INT64_MAX // m).all():
        # the common case: t * M fits int64. Then ((t*M >> 1) + 2**(S-2)) >> (S-1) equals
        # the spec's ((t*M) + 2**(S-1)) >> S exactly for S >= 2 (the dropped bit cannot carry)
        p = t * m
        half = p >> 1
        y = np.where(
            s == 1,
            half + (p & 1),  # (p + 1) >> 1 without overflow
            (half + np.left_shift(1, np.maximum(s - 2, 0))) >> np.maximum(s - 1, 0),
        )
    else:
        q = _shifted_product(t, m, s - 1)
        y = (q >> 1) + (q & 1)  # (q + 1) >> 1 without overflow
    return np.clip(y, lo, hi)


def _shifted_product(t: np.ndarray, m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``floor(t * m / 2**k)`` exactly, saturated to int64, for products beyond 64 bits.

    ``|t| < 2**63``, ``m`` in ``1..2**24-1`` (so ``|t * m| < 2**87``), ``k`` in ``0..61``;
    int64 throughout, on 32-bit limbs: ``t * m = h * 2**32 + l`` with ``0 <= l < 2**32``.
    Saturating ``q`` to int64 keeps the clamped result exact: ``(q + 1) >> 1`` of the int64
    limits is ``-2**62`` / ``2**62``, beyond every clamp bound.
    """
    low32 = (1 << 32) - 1
    b = (t & low32) * m                # 0 <= b < 2**56
    h = (t >> 32) * m + (b >> 32)      # |h| < 2**56
    l = b & low32
    # k >= 32: floor((h * 2**32 + l) / 2**k) = h >> (k - 32), since 0 <= l < 2**32
    high = h >> np.maximum(k - 32, 0)
    # k < 32: h * 2**(32 - k) + (l >> k), where h << (32 - k) may leave int64
    up = np.maximum(32 - k, 0)
    h_max = INT64_MAX >> up            # largest h whose h * 2**up fits int64
    low = np.clip(h, -h_max - 1, h_max) * np.left_shift(1, up) + (l >> np.minimum(k, 32))
    low = np.where(h > h_max, INT64_MAX, np.where(h < -h_max - 1, -INT64_MAX - 1, low))
    return np.where(k >= 32, high, low)


def requantize_reference(acc: int, bias: int, M: int, S: int, lo: int, hi: int) -> int:
    """The spec in plain Python integers (unbounded): the test oracle.

    >>> requantize_reference(3, 0, 1, 1, -128, 127)   # 1.5 rounds half up to 2
    2
    >>> requantize_reference(-3, 0, 1, 1, -128, 127)  # -1.5 rounds half up to -1
    -1
    """
    return min(max(((acc + bias) * M + (1 << (S - 1))) >> S, lo), hi)
