"""Sliding-window geometry shared by convolution and pooling.

Kernel, stride and dilation are given as an int or an ``(h, w)`` pair; padding as an int,
an ``(h, w)`` pair or ``(top, bottom, left, right)``. The output size is PyTorch's
(``ceil_mode=False``)::

    out = floor((size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) / stride) + 1
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from hwq.golden._checks import check_int

SIZE_MAX = 1 << 16  # largest kernel, stride, dilation or padding accepted by the ops


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_tuple(value: object, name: str, lengths: tuple[int, ...], allowed: str) -> tuple:
    """``value`` as a tuple of Python ints: ``(v,)`` for an integer, else its items."""
    if _is_int(value):
        return (int(value),)
    if isinstance(value, np.ndarray):
        items = list(value) if value.ndim == 1 else None
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = list(value)
    else:
        items = None
    if items is None or not all(_is_int(v) for v in items):
        raise TypeError(f"{name} must be {allowed}, not {value!r}")
    if len(items) not in lengths:
        raise ValueError(f"{name} must be {allowed}, not {value!r}")
    return tuple(int(v) for v in items)


def pair(value: object, name: str) -> tuple[int, int]:
    """An int or a 2-sequence of ints as ``(h, w)``; no range check.

    Bools, floats and strings are refused; NumPy integers are accepted.

    >>> pair(3, "Kernel"), pair((3, 1), "Kernel")
    ((3, 3), (3, 1))
    """
    t = _int_tuple(value, name, (2,), "an integer or a pair of integers (h, w)")
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


def padding4(value: object, name: str) -> tuple[int, int, int, int]:
    """Padding as ``(top, bottom, left, right)``, every side non-negative.

    ``p`` gives ``(p, p, p, p)``; ``(ph, pw)`` gives ``(ph, ph, pw, pw)``; four values are
    taken as ``(top, bottom, left, right)``.

    >>> padding4(1, "Padding"), padding4((1, 2), "Padding"), padding4((0, 1, 2, 3), "Padding")
    ((1, 1, 1, 1), (1, 1, 2, 2), (0, 1, 2, 3))
    """
    allowed = ("a non-negative integer, a pair (h, w) or four integers "
               "(top, bottom, left, right)")
    t = _int_tuple(value, name, (2, 4), allowed)
    if len(t) == 1:
        t = t * 4
    elif len(t) == 2:
        t = (t[0], t[0], t[1], t[1])
    if min(t) < 0:
        raise ValueError(f"{name} must be {allowed}, not {value!r}")
    return t


def checked_pair(value: object, name: str, lo: int = 1, hi: int = SIZE_MAX) -> tuple[int, int]:
    """:func:`pair`, then both values checked to lie in ``lo..hi``."""
    p = pair(value, name)
    if not (lo <= p[0] <= hi and lo <= p[1] <= hi):
        what = "an integer" if _is_int(value) else "integers"
        raise ValueError(f"{name} must be {what} in {lo}..{hi}, not {value!r}")
    return p


def checked_padding4(value: object, name: str, hi: int = SIZE_MAX) -> tuple[int, int, int, int]:
    """:func:`padding4`, then every side checked to be at most ``hi``."""
    p = padding4(value, name)
    if max(p) > hi:
        what = "an integer" if _is_int(value) else "integers"
        raise ValueError(f"{name} must be {what} in 0..{hi}, not {value!r}")
    return p


def conv_output_size(
    size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int = 1
) -> int:
    """Output length of a convolution or pooling window along one axis (PyTorch's formula).

    ``floor((size + pad_lo + pad_hi - dilation*(kernel-1) - 1) / stride) + 1``; a result
    below 1 means the (dilated) kernel does not fit the padded input.

    >>> conv_output_size(32, 3, 2, 1, 1), conv_output_size(7, 3, 1, 0, 0, dilation=3)
    (16, 1)
    """
    size = check_int(size, "Input size", 0, 1 << 40)
    kernel = check_int(kernel, "Kernel size", 1, 1 << 40)
    stride = check_int(stride, "Stride", 1, 1 << 40)
    pad_lo = check_int(pad_lo, "Padding", 0, 1 << 40)
    pad_hi = check_int(pad_hi, "Padding", 0, 1 << 40)
    dilation = check_int(dilation, "Dilation", 1, 1 << 40)
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output height/width, ``padding`` each side: ``(size + 2*padding - kernel) // stride + 1``."""
    return conv_output_size(size, kernel, stride, padding, padding)


def check_pool_padding(pads: tuple[int, int, int, int], kernel: tuple[int, int], name: str,
                       value: object) -> None:
    """Refuse padding above half the kernel on any side (PyTorch's rule for pooling)."""
    kh, kw = kernel
    top, bottom, left, right = pads
    if 2 * max(top, bottom) > kh or 2 * max(left, right) > kw:
        raise ValueError(
            f"{name} must be at most half the kernel on each side (as in PyTorch), "
            f"not {value!r} for a {kh}x{kw} kernel"
        )


__all__ = ["conv2d_output_size", "conv_output_size", "padding4", "pair"]
