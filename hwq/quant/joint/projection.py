"""``V = Proj(W + Y)``: the alternating sparse / bit-width projection of ``joint``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwq.quant.joint.encoding import LayerSize, _best_index, _header_bits, layer_size
from hwq.quant.joint.kmeans import KMeansResult, kmeans_zero
from hwq.quant.joint.knapsack import _scores, choose_bits, knapsack_masks

__all__: list[str] = []


@dataclass
class _Plan:
    masks: list[np.ndarray]        # flattened bool, per layer
    bits: list[int]
    centroids: list[np.ndarray]    # (2**b + 1,) per layer, [0] = 0
    v: list[np.ndarray]            # flattened float64 quantized values, per layer
    distortion: float


def _planned_sizes(masks: Sequence[np.ndarray], bits: Sequence[int], table_bits: int
                   ) -> list[LayerSize]:
    return [layer_size(m, value_width=b, levels=min(1 << b, int(m.sum())),
                       table_bits=table_bits) for m, b in zip(masks, bits, strict=True)]


class _Projector:
    """``V = Proj(X)`` onto {size <= budget, per-layer k-means codebooks}, alternating."""

    def __init__(self, budget: int, b_min: int, b_max: int, *, table_bits: int, solver: str,
                 rounds: int, kmeans_iterations: int, snap: bool):
        self.budget, self.b_min, self.b_max = budget, b_min, b_max
        self.table_bits, self.solver, self.rounds = table_bits, solver, rounds
        self.iterations, self.snap = kmeans_iterations, snap

    def sparse(self, xs: list[np.ndarray], bits: list[int], widths: list[int],
               importance: Sequence[np.ndarray | float] | None = None) -> list[np.ndarray]:
        """Knapsack masks at per-nonzero cost ``b + r``, then exact trimming to the budget."""
        numels = [x.size for x in xs]
        fixed = sum(_header_bits(n) + (1 << b) * self.table_bits
                    for n, b in zip(numels, bits, strict=True))
        cost = [b + r for b, r in zip(bits, widths, strict=True)]
        masks = knapsack_masks(xs, cost, self.budget - fixed, importance=importance)
        score = _scores(xs, cost, importance)
        flat = np.concatenate(masks)
        bounds = np.cumsum(numels)[:-1]
        while True:
            masks = np.split(flat, bounds)
            total = sum(s.total_bits for s in _planned_sizes(masks, bits, self.table_bits))
            excess = total - self.budget
            if excess <= 0:
                return [m.copy() for m in masks]
            kept = np.flatnonzero(flat)
            if kept.size == 0:  # only headers and tables left: cannot happen if fixed fits
                raise ValueError(f"A size budget of {self.budget} bits does not even hold the "
                                 f"layer headers and codebooks")
            drop = max(1, math.ceil(excess / max(cost)))
            flat[kept[np.argsort(score[kept], kind="stable")[:drop]]] = False

    def quantizers(self, xs: list[np.ndarray], masks: list[np.ndarray]
                   ) -> list[dict[int, KMeansResult]]:
        out = []
        for x, m in zip(xs, masks, strict=True):
            nz = x[m]
            out.append({b: kmeans_zero(nz, 1 << b, iterations=self.iterations, snap=self.snap)
                        for b in range(self.b_min, self.b_max + 1)} if nz.size else {})
        return out

    def bit_widths(self, masks: list[np.ndarray], kms: list[dict[int, KMeansResult]],
                   bits: list[int]) -> list[int]:
        bs = list(range(self.b_min, self.b_max + 1))
        sizes = _planned_sizes(masks, [self.b_min] * len(masks), self.table_bits)
        other = sum(s.index_bits + s.header_bits for s in sizes)
        costs, dists = [], []
        for m, km in zip(masks, kms, strict=True):
            nnz = int(m.sum())
            costs.append([b * nnz + min(1 << b, nnz) * self.table_bits for b in bs])
            dists.append([km[b].error if km else 0.0 for b in bs])
        choice = choose_bits(costs, dists, self.budget - other, solver=self.solver)
        if choice is None:  # keep the current widths (feasible by construction)
            return bits
        return [bs[j] for j in choice]

    def __call__(self, xs: list[np.ndarray], bits: list[int],
                 importance: Sequence[np.ndarray | float] | None = None) -> _Plan:
        widths = [_best_index(np.abs(x) >= np.quantile(np.abs(x), 0.9))[0] for x in xs]
        for _ in range(self.rounds):
            masks = self.sparse(xs, bits, widths, importance)
            widths = [_best_index(m)[0] for m in masks]
            kms = self.quantizers(xs, masks)
            bits = self.bit_widths(masks, kms, bits)
        # a last sparse step fills what the bit widths left of the budget
        masks = self.sparse(xs, bits, widths, importance)
        vs, cents, dist = [], [], 0.0
        for x, m, b in zip(xs, masks, bits, strict=True):
            v = np.zeros_like(x)
            if m.any():
                r = kmeans_zero(x[m], 1 << b, iterations=self.iterations, snap=self.snap)
                v[m] = r.centroids[r.labels]
                cents.append(r.centroids)
                dist += r.error
            else:
                cents.append(np.zeros((1 << b) + 1))
            dist += float(np.sum(x[~m] ** 2))
            vs.append(v)
        masks = [v != 0 for v in vs]
        return _Plan(masks=masks, bits=list(bits), centroids=cents, v=vs, distortion=dist)
