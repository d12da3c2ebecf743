"""One-dimensional k-means (Lloyd) with a fixed zero cluster, frozen centroids and fixed members.

The weight-sharing quantizers (SLQ/MLQ, :mod:`hwq.quant.slq`) cluster each layer's weights
into ``k`` shared values: centroid 0 is exactly 0 and never moves, some centroids may be
frozen (their weights are already quantized), and the frozen weights keep their cluster.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["assign", "kmeans_1d", "pot_ladder"]


def pot_ladder(max_abs: float, k: int) -> np.ndarray:
    """Initial centroids on the power-of-two ladder: ``0, +m, -m, +m/2, -m/2, ...``.

    ``m = 2**floor(log2(max_abs))``; centroid ``2i-1`` is ``m / 2**(i-1)`` and centroid
    ``2i`` its negative, for ``i = 1..(k-1)/2``. An all-zero layer (``max_abs = 0``) uses
    ``m = 1``.

    Parameters
    ----------
    max_abs : float
        Largest weight magnitude of the layer, >= 0.
    k : int
        Number of clusters, odd and >= 3.

    Returns
    -------
    np.ndarray
        float64, shape ``(k,)``.

    Examples
    --------
    >>> pot_ladder(0.3, 5).tolist()
    [0.0, 0.25, -0.25, 0.125, -0.125]
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 3 or k % 2 == 0:
        raise ValueError(f"Cluster count must be an odd integer >= 3, not {k!r}")
    if not (math.isfinite(max_abs) and max_abs >= 0):
        raise ValueError(f"Largest weight magnitude must be finite and >= 0, not {max_abs!r}")
    # frexp: max_abs = f * 2**e with f in [0.5, 1), so floor(log2(max_abs)) = e - 1 exactly
    m = math.ldexp(1.0, math.frexp(max_abs)[1] - 1) if max_abs > 0 else 1.0
    mags = m / np.ldexp(1.0, np.arange((k - 1) // 2))
    out = np.zeros(k)
    out[1::2], out[2::2] = mags, -mags
    return out


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of each ``x`` (ties go to the lower index).

    Examples
    --------
    >>> assign(np.array([0.1, 0.15, 0.2, -0.4]), np.array([0.0, 0.3, -0.3])).tolist()
    [0, 0, 1, 2]
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return np.argmin(np.abs(x[:, None] - centroids[None, :]), axis=1)


def kmeans_1d(
    x: np.ndarray,
    init: np.ndarray,
    *,
    frozen: np.ndarray | None = None,
    fixed: np.ndarray | None = None,
    iterations: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations on scalars with a zero cluster and frozen centroids.

    Each iteration assigns every free element to its nearest centroid, then moves every
    centroid that is not frozen to the mean of its members: ``c_j = mean(x_i : label_i = j)``.
    A cluster left empty keeps its centroid. Centroid 0 must be 0 and is always frozen. After
    the iterations the free elements are assigned once more, so the labels returned are
    nearest-centroid labels of the centroids returned.

    Parameters
    ----------
    x : array of float
        The elements, flattened.
    init : array of float, shape (k,)
        Initial centroids; ``init[0]`` must be 0.
    frozen : bool array, shape (k,), optional
        Centroids that do not move (index 0 is frozen regardless).
    fixed : int array, shape like ``x``, optional
        Label of each element that keeps its cluster (an already quantized weight), ``-1``
        for a free element.
    iterations : int, default 10
        Lloyd iterations (>= 0).

    Returns
    -------
    centroids : np.ndarray
        float64, shape (k,).
    labels : np.ndarray
        int64, the flattened shape of ``x``.

    Examples
    --------
    >>> c, lab = kmeans_1d(np.array([-1.0, -0.9, 0.05, 0.1, 0.8, 1.0]), np.array([0.0, 0.5, -0.5]))
    >>> c.round(6).tolist(), lab.tolist()
    ([0.0, 0.9, -0.95], [2, 2, 0, 0, 1, 1])
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    c = np.array(init, dtype=np.float64).reshape(-1)
    k = c.size
    if k < 1 or c[0] != 0:
        raise ValueError(f"Centroid 0 must be exactly 0 (the zero cluster), not {c[:1].tolist()}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"Lloyd iterations must be an integer >= 0, not {iterations!r}")
    frz = np.zeros(k, bool) if frozen is None else np.array(frozen, dtype=bool).reshape(-1)
    if frz.shape != (k,):
        raise ValueError(f"Frozen flags must have shape ({k},), not {frz.shape}")
    frz[0] = True
    if fixed is None:
        fix = np.full(x.size, -1, dtype=np.int64)
    else:
        fix = np.asarray(fixed, dtype=np.int64).reshape(-1)
        if fix.shape != x.shape or (fix < -1).any() or (fix >= k).any():
            raise ValueError(f"Fixed labels must be -1 or 0..{k - 1}, one per element")
    free = fix < 0
    labels = fix.copy()
    movable = np.flatnonzero(~frz)
    for _ in range(iterations):
        labels[free] = assign(x[free], c)
        if movable.size == 0:
            break
        sums = np.bincount(labels, weights=x, minlength=k)
        counts = np.bincount(labels, minlength=k)
        upd = movable[counts[movable] > 0]
        c[upd] = sums[upd] / counts[upd]
    labels[free] = assign(x[free], c)
    return c, labels
