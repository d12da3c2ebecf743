"""1-D k-means with a fixed exact zero: the per-layer codebooks of ``joint``."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["KMeansResult", "kmeans_zero"]


@dataclass(frozen=True, eq=False)
class KMeansResult:
    """A 1-D clustering with a fixed zero.

    Attributes
    ----------
    centroids : np.ndarray
        float64 ``(k + 1,)``; ``centroids[0] == 0`` is the fixed zero.
    labels : np.ndarray
        int64, one per element: the index of its nearest centroid (0 = snapped to zero).
    distortion : np.ndarray
        float64, ``sum (x - centroids[labels])**2`` after each assignment step.
    converged : bool
        the last assignment equals the one before (a fixed point of Lloyd's algorithm).
    """

    centroids: np.ndarray
    labels: np.ndarray
    distortion: np.ndarray
    converged: bool

    @property
    def error(self) -> float:
        """Final distortion ``sum (x - Q(x))**2``."""
        return float(self.distortion[-1])


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of each ``x``; a tie goes to the smaller centroid."""
    order = np.argsort(centroids, kind="stable")
    c = centroids[order]
    mid = (c[1:] + c[:-1]) / 2
    return order[np.searchsorted(mid, x, side="left")]


def kmeans_zero(
    x: np.ndarray, levels: int, *, init: np.ndarray | None = None, iterations: int = 100,
    snap: bool = True,
) -> KMeansResult:
    """Lloyd's k-means of scalars into ``levels`` free centroids plus a fixed exact zero.

    Each iteration assigns every element to its nearest centroid among ``0, c_1..c_k``, then
    moves each free centroid to the mean of its members, ``c_j = mean(x_i : label_i = j)``
    (an empty cluster keeps its centroid). Both steps can only lower the distortion
    ``D = sum_i (x_i - c_{label_i})**2``, so the recorded distortions never increase. Stops at
    a fixed point (assignment unchanged) or after ``iterations`` updates.

    Parameters
    ----------
    x : array of float
        The elements (flattened), typically a layer's nonzero weights.
    levels : int
        Free centroids ``k >= 1``.
    init : array of float, shape (k,), optional
        Initial free centroids; default the quantiles ``(j + 1/2) / k`` of ``x``.
    iterations : int, default 100
        Most centroid updates, >= 0.
    snap : bool, default True
        Elements may be assigned to the zero; with ``False`` every element takes one of the
        free centroids (a kept weight stays nonzero) and ``centroids[0]`` is unused.

    Returns
    -------
    KMeansResult

    Examples
    --------
    >>> r = kmeans_zero(np.array([-1.0, -0.9, 0.05, 0.8, 1.0]), 2)
    >>> r.centroids.round(6).tolist(), r.labels.tolist(), r.converged
    ([0.0, -0.95, 0.9], [1, 1, 0, 2, 2], True)
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if isinstance(levels, bool) or not isinstance(levels, numbers.Integral) or levels < 1:
        raise ValueError(f"K-means levels must be an integer >= 1, not {levels!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) \
            or iterations < 0:
        raise ValueError(f"Lloyd iterations must be an integer >= 0, not {iterations!r}")
    if init is None:
        q = (np.arange(levels) + 0.5) / levels
        free = np.quantile(x, q) if x.size else np.zeros(levels)
    else:
        free = np.asarray(init, dtype=np.float64).reshape(-1)
        if free.shape != (levels,):
            raise ValueError(f"Initial centroids must have shape ({levels},), not {free.shape}")
    c = np.concatenate([[0.0], free])

    def nearest(c: np.ndarray) -> np.ndarray:
        return _nearest(x, c) if snap else _nearest(x, c[1:]) + 1

    labels = nearest(c)
    dist = [float(np.sum((x - c[labels]) ** 2))]
    converged = False
    for _ in range(iterations):
        sums = np.bincount(labels, weights=x, minlength=levels + 1)
        counts = np.bincount(labels, minlength=levels + 1)
        upd = np.flatnonzero(counts > 0)
        upd = upd[upd > 0]
        c[upd] = sums[upd] / counts[upd]
        new = nearest(c)
        dist.append(float(np.sum((x - c[new]) ** 2)))
        if np.array_equal(new, labels):
            converged = True
            break
        labels = new
    return KMeansResult(c, labels, np.asarray(dist), converged)
