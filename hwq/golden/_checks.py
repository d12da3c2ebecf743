"""Input validation shared by the golden model: one message template everywhere."""

from __future__ import annotations

import numbers

import numpy as np

INT64_MAX = 2**63 - 1
ACT_BITS = (2, 16)  # allowed activation bit widths


def check_int(value: object, name: str, lo: int, hi: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``lo..hi``, else raise.

    >>> check_int(4, "Weight bit width", 2, 8)
    4
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return int(value)


def check_positive(value: object, name: str) -> float:
    """Return ``value`` as a ``float`` if it is a finite positive real number, else raise.

    >>> check_positive(0.5, "Input scale")
    0.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite positive number, not {value!r}")
    if not 0 < float(value) < float("inf"):
        raise ValueError(f"{name} must be a finite positive number, not {value!r}")
    return float(value)


def as_int_array(x: object, name: str) -> np.ndarray:
    """``x`` as an int64 array; float, bool, object or out-of-int64 input is refused."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, not dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > INT64_MAX:
        raise ValueError(f"{name} has values above the int64 range (max {int(arr.max())})")
    return arr.astype(np.int64, copy=False)


def check_range(arr: np.ndarray, lo: int, hi: int, name: str, allowed: str) -> None:
    """Raise ``ValueError`` naming the first value of ``arr`` outside ``lo..hi``."""
    if arr.size == 0:
        return
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must be {allowed} ({lo}..{hi}); {int(bad.sum())} value(s) are not, "
            f"first {int(arr[index])} at index {index}"
        )


def check_ndim(arr: np.ndarray, ndim: int, name: str, layout: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {layout}, not shape {arr.shape}")


def check_acts(x: object, act_bits: int | None, ndim: int, layout: str) -> np.ndarray:
    """``x`` as int64 activations of ``ndim`` dimensions, ``act_bits``-bit signed if given."""
    arr = as_int_array(x, "Activations")
    check_ndim(arr, ndim, "Activations", layout)
    if act_bits is not None:
        act_bits = check_int(act_bits, "Activation bit width", *ACT_BITS)
        lo, hi = signed_range(act_bits)
        check_range(arr, lo, hi, "Activations", f"{act_bits}-bit signed")
    return arr


def per_channel(v: object, channels: int, name: str) -> np.ndarray:
    """``v`` as an int64 array of shape ``(channels,)``; a scalar is repeated."""
    arr = as_int_array(v, name)
    if arr.ndim == 0:
        arr = np.full(channels, int(arr), dtype=np.int64)
    if arr.shape != (channels,):
        raise ValueError(f"{name} must have one value per channel, shape ({channels},), "
                         f"not {arr.shape}")
    return arr


def signed_range(bits: int | np.ndarray) -> tuple:
    """Range ``(lo, hi)`` of a ``bits``-bit two's complement integer (``bits`` an int or an
    integer array, element-wise).

    >>> signed_range(8)
    (-128, 127)
    """
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def signed_bits_for(lo: int | np.ndarray, hi: int | np.ndarray) -> int | np.ndarray:
    """Fewest bits of a two's complement integer that holds every value in ``lo..hi``: the
    narrowest width, at least 1 (ints, or integer arrays element-wise).

    >>> signed_bits_for(-128, 127), signed_bits_for(0, 128), signed_bits_for(0, 0)
    (8, 9, 1)
    >>> signed_bits_for(np.array([3, -1, 4]), np.array([3, -1, 4])).tolist()
    [3, 1, 4]
    """
    if isinstance(lo, numbers.Integral) and isinstance(hi, numbers.Integral):
        return max((-int(lo) - 1).bit_length() if lo < 0 else 0,
                   int(hi).bit_length() if hi > 0 else 0) + 1
    lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    return np.maximum(_bit_length(np.where(lo < 0, -lo - 1, 0)),
                      _bit_length(np.maximum(hi, 0))) + 1


def _bit_length(v: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of each non-negative int64, exactly (no float rounding)."""
    out = np.zeros(v.shape, dtype=np.int64)
    for i in range(63):
        out = np.where(v >> i > 0, i + 1, out)
    return out
