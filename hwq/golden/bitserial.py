"""The PE arithmetic, decomposed as the hardware does it.

* Bit-serial: an ``INT(b)`` weight is a sum of bit-planes, the most significant one
  negative: ``w = -2**(b-1) * p[b-1] + sum_{i < b-1} 2**i * p[i]`` with ``p[i]`` in {0, 1}.
  A bit-serial PE computes one plane per cycle: ``acc += coef[i] * (x . p[i])``.
* Shift-add: a ``POT(b)`` code (sign, k) contributes ``+/-(x << (k - 1))``, nothing for
  ``k = 0``.

Both must equal the direct product; the tests assert it, and the RTL is checked
against these functions plane by plane.
"""

from __future__ import annotations

import numpy as np

from hwq.golden._checks import as_int_array, check_int
from hwq.golden.formats import IntFormat, PotFormat
from hwq.golden.gemm import int_matmul


def plane_coefficients(bits: int) -> np.ndarray:
    """Weight of each bit-plane: ``[1, 2, ..., 2**(b-2), -2**(b-1)]``.

    >>> plane_coefficients(4).tolist()
    [1, 2, 4, -8]
    """
    bits = check_int(bits, "Bit-serial weight bit width", *IntFormat.BITS)
    coef = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    coef[-1] = -coef[-1]
    return coef


def bitplanes(w: object, bits: int) -> np.ndarray:
    """Bit-planes of ``INT(bits)`` weights: uint8 array of shape ``(bits, *w.shape)``.

    >>> bitplanes([-8, 5], 4).T.tolist()
    [[0, 0, 0, 1], [1, 0, 1, 0]]
    """
    codes = IntFormat(bits).encode(w).astype(np.int64)
    shifts = np.arange(bits, dtype=np.int64).reshape((bits,) + (1,) * codes.ndim)
    return ((codes[None] >> shifts) & 1).astype(np.uint8)


def from_bitplanes(planes: object) -> np.ndarray:
    """Inverse of :func:`bitplanes`: ``sum_i coef[i] * planes[i]``."""
    p = as_int_array(planes, "Bit-planes")
    coef = plane_coefficients(p.shape[0]).reshape((-1,) + (1,) * (p.ndim - 1))
    return (coef * p).sum(axis=0)


def bitserial_linear(x: object, w: object, bits: int) -> np.ndarray:
    """``x @ w.T`` computed plane by plane: ``sum_i coef[i] * (x @ p[i].T)``.

    ``x`` is (N, K) signed activations, ``w`` (C_out, K) ``INT(bits)`` weights.
    """
    xa = as_int_array(x, "Activations")
    planes = bitplanes(w, bits).astype(np.int64)
    coef = plane_coefficients(bits)
    acc = np.zeros((xa.shape[0], planes.shape[1]), dtype=np.int64)
    for i in range(bits):  # one cycle of the PE per plane (bits <= 8 iterations)
        acc += coef[i] * int_matmul(xa, planes[i].T)
    return acc


def shift_add_linear(x: object, codes: object, bits: int) -> np.ndarray:
    """``x @ w.T`` for ``POT(bits)`` weight codes (C_out, K), by shifts and adds only."""
    xa = as_int_array(x, "Activations")
    fmt = PotFormat(bits)
    c = as_int_array(codes, "POT codes")
    fmt.decode(c)  # validates the codes
    k = c & ((1 << (bits - 1)) - 1)
    negative = ((c >> (bits - 1)) & 1).astype(bool)
    shifted = np.left_shift(xa[:, None, :], np.maximum(k - 1, 0)[None])  # (N, C_out, K)
    term = np.where(k[None] > 0, np.where(negative[None], -shifted, shifted), 0)
    return term.sum(axis=2)
