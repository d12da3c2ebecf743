"""``V = Proj(W + Y)``: the alternating sparse / bit-width projection of ``joint``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwq.quant.joint.encoding import LayerSize, layer_size
from hwq.quant.joint.kmeans import KMeansResult, kmeans_zero
from hwq.quant.joint.knapsack import _scores, choose_bits
from hwq.quant.joint.stream import header_bits, position_bits, position_marginal

__all__ = ["minimum_budget"]


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


def _model_bits(nnz: int, numel: int) -> int:
    """Position bits of ``nnz`` evenly spread nonzeros (the pricing model's length)."""
    n = max(0, min(int(nnz), numel))
    return position_bits((np.arange(n, dtype=np.int64) * numel) // max(n, 1))[2]


def minimum_budget(numels: Sequence[int], b_min: int, table_bits: int) -> int:
    """Bits of the smallest plan with one nonzero in every layer (the worst position).

    Per layer: the header, one ``table_bits`` table entry, a ``b_min``-bit value and the
    position code of a nonzero at the last position (:func:`position_bits`).
    """
    return sum(header_bits(n, 1) + table_bits + b_min
               + position_bits(np.array([n - 1]))[2] for n in numels)


class _Projector:
    """``V = Proj(X)`` onto {size <= budget, per-layer k-means codebooks}, alternating."""

    def __init__(self, budget: int, b_min: int, b_max: int, *, table_bits: int, solver: str,
                 rounds: int, kmeans_iterations: int, snap: bool):
        self.budget, self.b_min, self.b_max = budget, b_min, b_max
        self.table_bits, self.solver, self.rounds = table_bits, solver, rounds
        self.iterations, self.snap = kmeans_iterations, snap
        #: per layer ``(out_channels, input channel read by each weight)``, or None where
        #: the layer's input is not the previous layer's output (set by the caller)
        self.links: list[tuple[int, np.ndarray | None]] | None = None
        #: drop weights reading an empty channel of the previous layer (needs ``links`` of a
        #: chain: each layer reads the previous one's output only)
        self.prune_dead_inputs = False

    def chain(self, score: np.ndarray, offsets: Sequence[int], numels: Sequence[int]
              ) -> list[int]:
        """One weight per layer that every plan keeps: a live path through the network.

        Layer ``l``'s is its best-scored weight among those reading the output channel of
        layer ``l - 1``'s (all its weights where :attr:`links` has no map), so the kept
        weights always connect the input to the output."""
        out, prev = [], None
        for layer, (o, n) in enumerate(zip(offsets, numels, strict=True)):
            s = score[o:o + n]
            link = self.links[layer] if self.links else None
            if prev is not None and link is not None and link[1] is not None:
                s = np.where(link[1] == prev, s, -1.0)
            j = int(np.argmax(s))
            out.append(o + j)
            prev = j // (n // link[0]) if link is not None else None
        return out

    def initial_nnz(self, numels: Sequence[int], bits: Sequence[int]) -> list[int]:
        """A first guess of the nonzeros: one density ``d`` in every layer, priced at
        ``b + log2(1 / d) + 2`` bits per nonzero, filling the budget."""
        total = sum(numels)
        lo, hi = 0.0, 1.0
        for _ in range(40):  # bisection on the density
            d = (lo + hi) / 2
            cost = sum(n * d * (b + math.log2(1 / d) + 2) for n, b in zip(numels, bits,
                                                                        strict=True))
            lo, hi = (d, hi) if cost <= self.budget else (lo, d)
        return [max(1, round(lo * n)) for n in numels] if total else []

    def sparse(self, xs: list[np.ndarray], bits: list[int], nnz: Sequence[int],
               importance: Sequence[np.ndarray | float] | None = None) -> list[np.ndarray]:
        """Knapsack masks, then exact trimming or filling to the budget.

        A nonzero of layer ``l`` costs ``b_l + m_l`` with ``m_l`` the marginal position bits
        of the layer's best code (:func:`position_marginal`) at the network's density
        ``sum(nnz) / sum(numel)`` of the previous plan; the rest of each code (the
        intercept of that tangent), headers and full tables are fixed costs. Every layer
        keeps its best-scored weight (no empty layer). The exact planned size is then
        brought to the budget by dropping the lowest-scored or adding the next-best weights.
        """
        numels = [x.size for x in xs]
        # every layer priced at the network's density: a layer's own (lower) density would
        # price its nonzeros higher and starve it further
        density = sum(nnz) / max(1, sum(numels))
        nnz = [max(1, round(density * n)) for n in numels]
        marg = [position_marginal(n0, n) for n0, n in zip(nnz, numels, strict=True)]
        cost = np.array([b + m for b, m in zip(bits, marg, strict=True)])
        fixed = sum(header_bits(n, 1) + (1 << b) * self.table_bits
                    + _model_bits(n0, n) - m * n0
                    for n, b, n0, m in zip(numels, bits, nnz, marg, strict=True))
        score = _scores(xs, cost, importance)
        offsets = np.concatenate([[0], np.cumsum(numels)[:-1]]).astype(np.int64)
        best = self._select(xs, bits, nnz, importance, score, np.repeat(cost, numels), fixed,
                            float(cost.max()), offsets)
        if not self.prune_dead_inputs:
            return best
        for _ in range(4):  # weights reading an empty channel buy nothing: free their bits
            dead = self._dead_reads(best, numels)
            if not any(d.any() for d in dead):
                break
            for o, d in zip(offsets, dead, strict=True):
                score[o + np.flatnonzero(d)] = 0.0
            best = self._select(xs, bits, nnz, importance, score, np.repeat(cost, numels),
                                fixed, float(cost.max()), offsets)
        return best

    def _dead_reads(self, masks: list[np.ndarray], numels: Sequence[int]) -> list[np.ndarray]:
        """Per layer, the weights (kept or not) that read a channel of the previous layer
        with no kept weight (its output is a constant, ReLU(bias))."""
        out = [np.zeros(n, dtype=bool) for n in numels]
        assert self.links is not None
        for layer in range(1, len(masks)):
            link = self.links[layer][1]
            prev_c = self.links[layer - 1][0]
            live = masks[layer - 1].reshape(prev_c, -1).any(axis=1)
            if link is not None and not live.all():
                out[layer] = ~live[link]
        return out

    def _select(self, xs: list[np.ndarray], bits: list[int], nnz: Sequence[int],
                importance: Sequence[np.ndarray | float] | None, score: np.ndarray,
                costs: np.ndarray, fixed: float, step: float, offsets: np.ndarray
                ) -> list[np.ndarray]:
        numels = [x.size for x in xs]
        forced = np.array(self.chain(score, offsets, numels), dtype=np.int64)
        flat = np.zeros(score.size, dtype=bool)
        flat[forced] = True
        order = np.argsort(-score, kind="stable")
        order = order[(score[order] > 0) & ~flat[order]]
        cum = np.cumsum(costs[order])
        room = self.budget - fixed - float(costs[forced].sum())
        keep = int(np.searchsorted(cum, room, side="right"))
        flat[order[:keep]] = True
        bounds = np.cumsum(numels)[:-1]

        def total(f: np.ndarray) -> int:
            return sum(s.total_bits for s in _planned_sizes(np.split(f, bounds), bits,
                                                            self.table_bits))

        best: np.ndarray | None = None
        for it in range(12):
            used = total(flat)
            if used <= self.budget:
                best = flat.copy()
                slack = self.budget - used
                extra = order[keep:keep + int(slack // step)]
                if it >= 8 or extra.size == 0:
                    break
                flat[extra] = True
                keep += extra.size
            else:  # drop the lowest-scored non-forced survivors
                drop = max(1, math.ceil((used - self.budget) / step))
                keep = max(0, keep - drop)
                flat[order[keep:keep + drop]] = False
                if best is not None and it >= 8:
                    break
        while best is None:
            if keep == 0:
                if any(b > self.b_min for b in bits):  # the live path at the narrowest widths
                    return self.sparse(xs, [self.b_min] * len(xs), nnz, importance)
                raise ValueError(f"A size budget of {self.budget} bits does not hold one "
                                 "nonzero weight per layer")
            keep -= 1
            flat[order[keep]] = False
            if total(flat) <= self.budget:
                best = flat
        return [m.copy() for m in np.split(best, bounds)]

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
        if choice is None:  # only the narrowest widths fit
            return [self.b_min] * len(masks)
        return [bs[j] for j in choice]

    def __call__(self, xs: list[np.ndarray], bits: list[int], nnz: Sequence[int] | None = None,
                 importance: Sequence[np.ndarray | float] | None = None) -> _Plan:
        """Project ``xs`` starting from the widths ``bits`` and the nonzero counts ``nnz``
        (the previous plan's; default :meth:`initial_nnz`)."""
        counts = list(nnz) if nnz is not None else self.initial_nnz([x.size for x in xs], bits)
        for _ in range(self.rounds):
            masks = self.sparse(xs, bits, counts, importance)
            counts = [int(m.sum()) for m in masks]
            kms = self.quantizers(xs, masks)
            bits = self.bit_widths(masks, kms, bits)
        # a last sparse step fills what the bit widths left of the budget
        masks = self.sparse(xs, bits, counts, importance)
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
