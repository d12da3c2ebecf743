"""Exact integer matrix products, through BLAS when that is exact.

A float GEMM is exact on integers while every partial sum is an integer the float type
represents exactly: below 2**24 in float32, 2**53 in float64. The bound used is
``K * max|a| * max|b|``, which bounds every partial sum whatever the summation order.
"""

from __future__ import annotations

import numpy as np

FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53


def product_bound(k: int, a_max: int, b_max: int) -> int:
    """Largest magnitude any partial sum of a length-``k`` dot product can reach."""
    return int(k) * int(a_max) * int(b_max)


def matmul_dtype(k: int, a_max: int, b_max: int) -> np.dtype:
    """The cheapest dtype in which ``a @ b`` is exact: float32, float64 or int64."""
    bound = product_bound(k, a_max, b_max)
    if bound < FLOAT32_EXACT:
        return np.dtype(np.float32)
    if bound < FLOAT64_EXACT:
        return np.dtype(np.float64)
    if bound > np.iinfo(np.int64).max:
        raise ValueError(
            f"integer product bound {bound} (K={k}, max|a|={a_max}, max|b|={b_max}) "
            "exceeds int64: the accumulator would overflow"
        )
    return np.dtype(np.int64)


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact ``a @ b`` of int64 arrays, returned as int64.

    ``a`` is (..., K) and ``b`` is (K, N). Uses float32 or float64 BLAS when the
    partial-sum bound allows (``matmul_dtype``), int64 otherwise.
    """
    k = a.shape[-1]
    a_max = int(np.abs(a).max()) if a.size else 0
    b_max = int(np.abs(b).max()) if b.size else 0
    dtype = matmul_dtype(k, a_max, b_max)
    if dtype == np.int64:
        return np.matmul(a, b)
    out = np.matmul(a.astype(dtype), b.astype(dtype))
    return out.astype(np.int64)
