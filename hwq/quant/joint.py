"""``joint``: sparsity and quantization learned together under a model-size budget.

Yang, Gui, Zhu, Liu, CVPR 2020, "Automatic neural network compression by sparsity-quantization
joint learning: a constrained optimization-based approach". The problem is

.. math::

    \\min_W f(W) \\quad \\text{s.t.} \\quad \\operatorname{size}(W) \\le S,

where every Conv2d/Linear layer ``l`` keeps ``nnz_l`` nonzero weights, each one of ``2**b_l``
learned levels (a per-layer 1-D k-means codebook) or an exact zero. The paper's size is
``sum_l b_l * nnz_l``; here ``size`` is **every stored bit** of the sparse encoding below
(values, indices, codebooks and per-layer headers), so a budget of ``32 * N / C`` bits is a
compression ratio ``C`` against fp32 weights that nobody has to take on trust.

ADMM on the split ``W`` (trained, dense) / ``V`` (in the constraint set), scaled dual ``Y``:

1. SGD on ``f`` with, after every optimizer step at learning rate ``eta``, the proximal step of
   ``rho/2 * ||W - V + Y||^2``: ``W <- (W + eta*rho*(V - Y)) / (1 + eta*rho)``;
2. once per epoch ``V <- Proj(W + Y)``, alternating (``proj_rounds`` times, starting from the
   previous bit widths, at first ``init_bits`` in every layer) two projections:

   * sparse (bits fixed), a 0-1 knapsack (:func:`knapsack_masks`): score every weight by
     ``w**2 / c_l`` with ``c_l = b_l + r_l`` the stored bits of one nonzero of layer ``l``
     (value code plus relative index; the paper's ``c_l = b_l``), keep the longest prefix of
     the descending order whose cost fits the budget left after codebooks and headers; then
     the exact size is checked and the lowest-scored survivors dropped until it fits;
   * bit widths (nonzeros fixed), a multiple-choice knapsack (:func:`choose_bits`): for each
     layer and ``b`` in ``b_min..b_max`` a k-means of the nonzeros of ``W + Y`` into ``2**b``
     centroids plus a fixed exact 0 (:func:`kmeans_zero`, <= 100 Lloyd iterations) gives the
     distortion ``d_l(b) = sum (x - Q_b(x))**2``; one ``b_l`` per layer minimizes
     ``sum_l d_l(b_l)`` subject to ``sum_l (b_l * nnz_l + 8 * min(2**b_l, nnz_l)) <= S - index
     bits - headers``;

   then one more sparse step at the chosen widths fills the budget they left, and
   ``V = Q_b(W + Y)`` with a final k-means per layer;
3. ``Y <- Y + W - V``.

The alternation is a block-coordinate descent: it settles near its starting widths (the
bit step cannot buy nonzeros, the sparse step cannot buy bits), so ``init_bits`` matters as the
official code's ``--bit_budget`` does. With ``snap_to_zero=False`` (the default) k-means gives
every kept weight one of the ``2**b`` nonzero levels (the zero is the mask's); with ``True``,
the paper's quantizer, kept weights nearer to 0 than to any level are zeroed too, which
leaves part of the budget unused (measured on digits at 50x: 61x achieved).

Options beyond the paper (the paper's behaviour is ``saliency="magnitude", distill=0``):
``saliency`` scores the sparse projection by a layer-normalized or Fisher-weighted ``w**2``;
``distill`` (default 0.9) trains both phases against the float model's soft targets
(Hinton et al. 2015) besides the labels.

Then masks and bit widths are fixed and ``W`` is fine-tuned through the k-means quantizer
with a straight-through estimator (forward ``Q(W * mask)``, identity gradient on the kept
weights; after every step ``W <- W * mask`` and one Lloyd update of the centroids).

Sparse encoding and size accounting (:func:`sparse_size`)
---------------------------------------------------------
Per layer, weights in PyTorch's row-major order (``(C_out, C_in, k, k)`` or ``(C_out, K)``):

* **values**: each nonzero stores a ``v``-bit index into the layer's table of its ``n``
  distinct nonzero integer levels, ``v = max(1, ceil(log2 n))`` (``<= b_l``); zero is not a
  table entry, the index stream encodes it;
* **relative index** (Deep Compression style, with an escape instead of filler weights): each
  nonzero is preceded by an ``r``-bit field holding its zero run ``z`` (zeros since the
  previous nonzero or the layer start) if ``z < 2**r - 1``; the field value ``2**r - 1`` is an
  escape meaning "``2**r - 1`` zeros, no weight". A run ``z`` costs ``floor(z / (2**r - 1))``
  escapes plus the run field of its weight; trailing zeros cost nothing (the header gives
  ``nnz``). ``r`` in 1..8 is chosen per layer to minimize the index bits
  ``r * (nnz + sum_i floor(z_i / (2**r - 1)))``;
* **table**: ``n`` entries of ``table_bits`` = 8 bits (the paper does not count codebooks; we
  do);
* **header**: ``ceil(log2(numel + 1))`` bits of ``nnz``, 3 bits of ``r - 1``, 8 bits of
  ``n - 1``.

Not counted, as for every hwq method (:class:`hwq.quant.api.QuantizeResult`): the per-layer
weight scale (folded into the requantization multipliers) and the biases (int32 after
integerization; :func:`sparse_size` reports their bits apart, ``bias_bits``, and the ratio
with biases on both sides).

Hardware format
---------------
The integer network stores every layer densely as ``CODEBOOK`` with a table of
``table_bits``-bit integers (``scale = max|centroid| / 127``, ``entry = round(centroid /
scale)``, 0 first, then the nonzero entries by decreasing use), so the IR index width is
``ceil(log2(n + 1))`` (``b_l + 1`` when all ``2**b_l`` levels survive): the sparse encoding
above is the storage/transfer format, the dense CODEBOOK the format the core's memories hold
(the layout compiler skips all-zero weight tiles; the bit-serial PE gets the table's INT
values). :func:`sparse_size` reports both (``total_bits`` and ``dense_ir_bits``).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from hwq.quant.base import QuantizedWeight, apply_weights, weight_layers
from hwq.quant.slq import codebook_weight
from hwq.workloads.train import fit

__all__ = [
    "BITS",
    "DEFAULT_DISTILL",
    "DEFAULT_EPOCHS",
    "DEFAULT_FINETUNE_EPOCHS",
    "DEFAULT_LR",
    "DEFAULT_RHO",
    "INDEX_WIDTHS",
    "SALIENCIES",
    "SOLVERS",
    "JointWeights",
    "KMeansResult",
    "LayerSize",
    "budget_from",
    "choose_bits",
    "index_bits",
    "kmeans_zero",
    "knapsack_masks",
    "layer_importance",
    "layer_size",
    "quantize_joint",
    "sparse_size",
]

#: Per-layer bit widths ``b`` (``2**b`` nonzero levels). 7 is the most: ``2**7`` levels and a
#: zero make a 129-entry table, which 8-bit CODEBOOK indices still address (8-bit tables
#: have at most 255 nonzero values).
BITS = (1, 7)
#: Widths ``r`` of the relative-index field.
INDEX_WIDTHS = (1, 8)
#: Bits of the header fields ``r - 1`` and ``n - 1`` (number of nonzero table entries).
HEADER_R_BITS = 3
HEADER_LEVELS_BITS = 8
#: Multiple-choice knapsack solvers of :func:`choose_bits`.
SOLVERS = ("exact", "greedy")
#: Saliencies of the sparse projection (:func:`layer_importance`); the paper's is magnitude.
SALIENCIES = ("magnitude", "layer", "fisher")
#: ADMM epochs (one projection and dual update per epoch).
DEFAULT_EPOCHS = 40
#: Fine-tuning epochs with fixed masks and bit widths.
DEFAULT_FINETUNE_EPOCHS = 30
#: Learning rate of the ADMM phase (constant) and peak of the fine-tuning (cosine).
DEFAULT_LR = 0.01
#: ADMM penalty ``rho`` at the first epoch.
DEFAULT_RHO = 1.0
#: Factor applied to ``rho`` after each epoch.
DEFAULT_RHO_GROWTH = 1.05
TABLE_BITS = 8
#: Weight of the distillation term in the training loss (0 is the paper's cross-entropy).
DEFAULT_DISTILL = 0.9


# --- k-means with an exact zero ------------------------------------------------------------


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


# --- projections ---------------------------------------------------------------------------


def knapsack_masks(
    weights: Sequence[np.ndarray], bits: Sequence[float], budget: float, *,
    importance: Sequence[np.ndarray | float] | None = None,
) -> list[np.ndarray]:
    """Sparse projection: the 0-1 knapsack of the paper, solved by its greedy ratio rule.

    Every weight ``w`` of layer ``l`` has value ``w**2`` (what zeroing it costs in squared
    error) and cost ``bits[l]``. Weights are sorted by ``w**2 / bits[l]``, descending (ties in
    layer order, then position), and the longest prefix whose total cost is ``<= budget`` is
    kept. Exact zeros are never kept (keeping them buys nothing).

    Parameters
    ----------
    weights : sequence of arrays
        One per layer, any shape.
    bits : sequence of float
        Cost of one kept weight of each layer, > 0 (bits per nonzero).
    budget : float
        Total cost allowed.
    importance : sequence of (array or float), optional
        Per layer, a factor (scalar, or one per weight, broadcast to the layer's shape)
        multiplying ``w**2`` in the value: ``w**2 * importance[l]`` (see ``saliency`` of
        :func:`quantize_joint`); default 1, the paper's ``w**2``.

    Returns
    -------
    list of bool arrays
        The kept weights, shaped like ``weights``.

    Examples
    --------
    >>> m = knapsack_masks([np.array([3.0, 1.0]), np.array([2.0, 0.5])], [2, 1], 3)
    >>> [a.tolist() for a in m]      # scores 4.5, 0.5 | 4, 0.25: keep 3.0 (2 bits), 2.0 (1 bit)
    [[True, False], [True, False]]
    """
    if len(weights) != len(bits):
        raise ValueError(f"Need one cost per layer: {len(weights)} layers, {len(bits)} costs")
    cost = np.asarray(bits, dtype=np.float64)
    if not (np.isfinite(cost).all() and (cost > 0).all()):
        raise ValueError(f"Costs per weight must be finite and positive, not {cost.tolist()}")
    flat = [np.asarray(w, dtype=np.float64).reshape(-1) for w in weights]
    sizes = [f.size for f in flat]
    score = _scores(flat, cost, importance)
    costs = np.repeat(cost, sizes)
    order = np.argsort(-score, kind="stable")
    cum = np.cumsum(costs[order])
    keep = int(np.searchsorted(cum, budget, side="right"))
    keep = min(keep, int(np.count_nonzero(score > 0)))
    mask = np.zeros(score.size, dtype=bool)
    mask[order[:keep]] = True
    return [m.reshape(np.shape(w)) for m, w in
            zip(np.split(mask, np.cumsum(sizes)[:-1]), weights, strict=True)]


def _scores(flat: Sequence[np.ndarray], cost: Sequence[float],
            importance: Sequence[np.ndarray | float] | None) -> np.ndarray:
    """``w**2 * importance_l / cost_l`` of every weight, concatenated."""
    if not flat:
        return np.zeros(0)
    if importance is None:
        importance = [1.0] * len(flat)
    if len(importance) != len(flat):
        raise ValueError(f"Need one importance per layer: {len(flat)} layers, "
                         f"{len(importance)} given")
    out = []
    for f, c, g in zip(flat, cost, importance, strict=True):
        g = np.broadcast_to(np.asarray(g, dtype=np.float64).reshape(-1)
                            if np.ndim(g) else np.float64(g), f.shape)
        if not (np.isfinite(g).all() and (g >= 0).all()):
            raise ValueError("Importances must be finite and >= 0")
        out.append(f ** 2 * g / c)
    return np.concatenate(out)


def layer_importance(xs: Sequence[np.ndarray], saliency: str,
                     fisher: Sequence[np.ndarray] | None = None) -> list[np.ndarray | float]:
    """Per-layer factors of ``w**2`` in the sparse projection's value (``saliency``).

    * ``"magnitude"``: 1 (the paper's ``w**2``);
    * ``"layer"``: ``1 / mean_l(x**2)``, each layer's squared weights relative to their mean
      (a layer of small weights is not starved for its scale alone);
    * ``"fisher"``: ``fisher_l`` per weight (a diagonal Fisher estimate, mean squared
      gradient), so ``w**2 * F`` approximates the loss increase of zeroing ``w``
      (optimal brain damage); the estimate is normalized by its global mean.

    >>> [round(g, 6) for g in layer_importance([np.array([1.0, 3.0]), np.array([0.1, 0.0])],
    ...                                         "layer")]
    [0.2, 200.0]
    """
    if saliency not in SALIENCIES:
        raise ValueError(f"Joint saliency must be one of {', '.join(SALIENCIES)}, "
                         f"not {saliency!r}")
    if saliency == "magnitude":
        return [1.0] * len(xs)
    if saliency == "layer":
        ms = [float(np.mean(np.asarray(x, dtype=np.float64) ** 2)) for x in xs]
        return [1.0 / m if m > 0 else 0.0 for m in ms]
    if fisher is None or len(fisher) != len(xs):
        raise ValueError("The fisher saliency needs one Fisher estimate per layer")
    mean = float(np.mean(np.concatenate([np.asarray(f).reshape(-1) for f in fisher])))
    return [np.asarray(f, dtype=np.float64).reshape(-1) / (mean if mean > 0 else 1.0)
            for f in fisher]


def choose_bits(
    costs: Sequence[Sequence[float]],
    distortions: Sequence[Sequence[float]],
    budget: float,
    *,
    solver: str = "exact",
) -> list[int] | None:
    """Bit-width projection: a multiple-choice knapsack, one option per layer.

    Chooses option ``j_l`` of each layer to minimize ``sum_l distortions[l][j_l]`` subject to
    ``sum_l costs[l][j_l] <= budget``.

    * ``"greedy"`` (the paper's): start every layer at its cheapest option; the options on
      the lower convex hull of each layer's (cost, distortion) points give upgrades with
      efficiency ``-Delta d / Delta cost``; take them in order of decreasing efficiency while
      they fit (a layer whose next upgrade does not fit stops there). Optimal for the LP
      relaxation; exact when the budget falls on a hull vertex.
    * ``"exact"``: merge the layers one by one keeping only the Pareto-optimal partial
      (cost, distortion) sums within the budget; the global optimum (ties to the cheaper,
      then to the lexicographically smaller choice). Cheap for the few layers and
      ``b_max - b_min + 1`` options of a CNN.

    Parameters
    ----------
    costs, distortions : sequences of sequences of float
        ``[layer][option]``.
    budget : float
    solver : {"exact", "greedy"}

    Returns
    -------
    list of int or None
        The chosen option index per layer, or ``None`` if even the cheapest options exceed the
        budget.

    Examples
    --------
    >>> choose_bits([[1, 2, 3], [1, 2, 3]], [[9, 4, 3], [5, 2, 0]], 4)
    [1, 1]
    """
    if solver not in SOLVERS:
        raise ValueError(f"Knapsack solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    cs = [np.asarray(c, dtype=np.float64) for c in costs]
    ds = [np.asarray(d, dtype=np.float64) for d in distortions]
    if len(cs) != len(ds) or any(c.shape != d.shape or c.ndim != 1 or c.size == 0
                                 for c, d in zip(cs, ds, strict=False)):
        raise ValueError("Costs and distortions must be non-empty and of equal shapes per layer")
    if sum(float(c.min()) for c in cs) > budget:
        return None
    if solver == "exact":
        return _mckp_exact(cs, ds, budget)
    return _mckp_greedy(cs, ds, budget)


def _mckp_exact(cs: list[np.ndarray], ds: list[np.ndarray], budget: float) -> list[int]:
    rest = np.concatenate([np.cumsum([c.min() for c in cs[::-1]])[::-1], [0.0]])
    front: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]
    for layer, (c, d) in enumerate(zip(cs, ds, strict=True)):
        limit = budget - rest[layer + 1]
        cand = [(fc + float(c[j]), fd + float(d[j]), ch + (j,))
                for fc, fd, ch in front for j in range(c.size) if fc + c[j] <= limit]
        cand.sort(key=lambda t: (t[0], t[1], t[2]))
        front = []
        for item in cand:  # Pareto: distortion strictly decreasing with cost
            if not front or item[1] < front[-1][1]:
                front.append(item)
    best = min(front, key=lambda t: (t[1], t[0], t[2]))
    return list(best[2])


def _mckp_greedy(cs: list[np.ndarray], ds: list[np.ndarray], budget: float) -> list[int]:
    segments: list[tuple[float, int, int, int]] = []  # (-efficiency, layer, from, to)
    start: list[int] = []
    for layer, (c, d) in enumerate(zip(cs, ds, strict=True)):
        order = sorted(range(c.size), key=lambda j: (c[j], d[j], j))
        hull: list[int] = []
        for j in order:
            if hull and d[j] >= d[hull[-1]]:
                continue  # dominated: costs more (or as much), distorts no less
            while len(hull) >= 2:
                a, b = hull[-2], hull[-1]
                # drop b if it lies on or above the segment a -> j
                if (d[b] - d[a]) * (c[j] - c[a]) >= (d[j] - d[a]) * (c[b] - c[a]):
                    hull.pop()
                else:
                    break
            hull.append(j)
        start.append(hull[0])
        for a, b in zip(hull[:-1], hull[1:], strict=True):
            eff = (d[a] - d[b]) / (c[b] - c[a])
            segments.append((-eff, layer, a, b))
    segments.sort()
    choice = list(start)
    spent = sum(float(cs[layer][j]) for layer, j in enumerate(choice))
    blocked = [False] * len(cs)
    for _, layer, a, b in segments:
        if blocked[layer] or choice[layer] != a:
            continue
        extra = float(cs[layer][b] - cs[layer][a])
        if spent + extra <= budget:
            choice[layer] = b
            spent += extra
        else:
            blocked[layer] = True
    return choice


# --- size accounting -----------------------------------------------------------------------


def index_bits(mask: np.ndarray, width: int) -> int:
    """Bits of the relative index of a flattened layer ``mask`` with ``width``-bit run fields.

    ``r * (nnz + sum_i floor(z_i / (2**r - 1)))`` for the zero runs ``z_i`` before each
    nonzero (``r = width``); trailing zeros are free.

    >>> index_bits(np.array([0, 0, 0, 1, 0, 1, 0, 0], bool), 2)   # runs 3, 1: escapes 1, 0
    6
    """
    pos = np.flatnonzero(np.asarray(mask, dtype=bool).reshape(-1))
    if pos.size == 0:
        return 0
    runs = np.diff(pos, prepend=-1) - 1
    escape = (1 << width) - 1
    return int(width * (pos.size + int(np.sum(runs // escape))))


def _best_index(mask: np.ndarray) -> tuple[int, int]:
    """``(r, bits)`` of the cheapest run-field width (the smallest ``r`` on ties)."""
    lo, hi = INDEX_WIDTHS
    best = min((index_bits(mask, r), r) for r in range(lo, hi + 1))
    return best[1], best[0]


def _header_bits(numel: int) -> int:
    return max(1, math.ceil(math.log2(numel + 1))) + HEADER_R_BITS + HEADER_LEVELS_BITS


@dataclass(frozen=True)
class LayerSize:
    """One layer's storage in the sparse encoding (see the module docstring), in bits.

    Attributes
    ----------
    weights, nnz : int
        weights of the layer, nonzero weights.
    levels : int
        distinct nonzero levels ``n`` (table entries).
    value_width : int
        ``v = max(1, ceil(log2 n))`` bits per nonzero (0 without nonzeros).
    index_width : int
        ``r``, bits of a run field.
    escapes : int
        escape fields (zero runs of ``>= 2**r - 1``).
    value_bits, index_bits, table_bits, header_bits : int
        ``v * nnz``, ``r * (nnz + escapes)``, ``n * table_bits``, the header.
    """

    weights: int
    nnz: int
    levels: int
    value_width: int
    index_width: int
    escapes: int
    value_bits: int
    index_bits: int
    table_bits: int
    header_bits: int

    @property
    def total_bits(self) -> int:
        return self.value_bits + self.index_bits + self.table_bits + self.header_bits

    def to_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "nnz": self.nnz, "levels": self.levels,
                "value_width": self.value_width, "index_width": self.index_width,
                "escapes": self.escapes, "value_bits": self.value_bits,
                "index_bits": self.index_bits, "table_bits": self.table_bits,
                "header_bits": self.header_bits, "total_bits": self.total_bits}


def layer_size(mask: np.ndarray, *, value_width: int, levels: int,
               table_bits: int = TABLE_BITS) -> LayerSize:
    """Size of one layer given its nonzero pattern, value width and table length.

    Parameters
    ----------
    mask : bool array
        the nonzero weights, in the weight shape (row-major order is the scan order).
    value_width : int
        bits per nonzero value index.
    levels : int
        table entries stored.
    table_bits : int, default 8

    Returns
    -------
    LayerSize
    """
    m = np.asarray(mask, dtype=bool).reshape(-1)
    nnz = int(m.sum())
    r, ib = _best_index(m)
    escapes = ib // r - nnz
    v = value_width if nnz else 0
    n = levels if nnz else 0
    return LayerSize(weights=m.size, nnz=nnz, levels=n, value_width=v, index_width=r,
                     escapes=escapes, value_bits=v * nnz, index_bits=ib,
                     table_bits=n * table_bits, header_bits=_header_bits(m.size))


def sparse_size(qweights: Mapping[str, QuantizedWeight], *,
                biases: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Exact storage of integer weights in the sparse encoding, and the dense IR's.

    Works for any method's weights: a layer's levels are its distinct nonzero integer
    values, ``v = max(1, ceil(log2 n))``, entries of ``spec.table_bits`` bits (INT/POT
    layers count their ``n`` levels at 8 bits too).

    Parameters
    ----------
    qweights : mapping of str -> QuantizedWeight
    biases : mapping of str -> int, optional
        bias count per layer; counted apart at 32 bits each.

    Returns
    -------
    dict
        ``layers`` (name -> :meth:`LayerSize.to_dict` plus ``dense_ir_bits``), and the sums
        ``weights``, ``nnz``, ``value_bits``, ``index_bits``, ``table_bits``,
        ``header_bits``, ``total_bits``, ``compression_ratio = 32 * weights / total_bits``,
        ``dense_ir_bits`` (every IR code plus tables, what the core's memories hold),
        ``dense_ir_compression_ratio``, ``bias_bits`` and
        ``compression_ratio_with_biases = 32 * (weights + biases) / (total + bias_bits)``.
    """
    layers: dict[str, dict[str, int]] = {}
    for name, qw in qweights.items():
        values = qw.values
        levels = int(np.unique(values[values != 0]).size)
        v = max(1, math.ceil(math.log2(levels))) if levels else 0
        tb = qw.spec.table_bits if qw.spec.kind == "codebook" else TABLE_BITS
        size = layer_size(values != 0, value_width=v, levels=levels, table_bits=tb)
        layers[name] = {**size.to_dict(), "dense_ir_bits": qw.storage_bits()}
    keys = ("weights", "nnz", "value_bits", "index_bits", "table_bits", "header_bits",
            "total_bits", "dense_ir_bits")
    out: dict[str, Any] = {"layers": layers}
    out.update({k: sum(d[k] for d in layers.values()) for k in keys})
    total, n = out["total_bits"], out["weights"]
    out["compression_ratio"] = 32 * n / total if total else math.inf
    out["dense_ir_compression_ratio"] = 32 * n / out["dense_ir_bits"]
    nb = sum((biases or {}).values())
    out["bias_bits"] = 32 * nb
    out["compression_ratio_with_biases"] = 32 * (n + nb) / (total + 32 * nb) \
        if total + nb else math.inf
    return out


def budget_from(weight_count: int, *, compression: float | None = None,
                budget_bits: int | None = None) -> int:
    """The size budget in bits: ``budget_bits``, or ``floor(32 * weight_count / compression)``.

    >>> budget_from(15248, compression=50)
    9758

    Raises
    ------
    ValueError
        unless exactly one of ``compression`` (a number > 1) and ``budget_bits`` (a positive
        integer) is given.
    """
    if (compression is None) == (budget_bits is None):
        which = "both" if compression is not None else "neither"
        raise ValueError(f"Joint takes exactly one of compression and budget_bits, not {which}")
    if compression is not None:
        if isinstance(compression, bool) or not isinstance(compression, numbers.Real) \
                or not (math.isfinite(compression) and compression > 1):
            raise ValueError(f"Joint compression must be a number > 1, not {compression!r}")
        return math.floor(32 * weight_count / float(compression))
    if isinstance(budget_bits, bool) or not isinstance(budget_bits, numbers.Integral) \
            or budget_bits < 1:
        raise ValueError(f"Joint budget must be a positive integer number of bits, "
                         f"not {budget_bits!r}")
    return int(budget_bits)


# --- the joint projection ------------------------------------------------------------------


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


# --- fine-tuning through the k-means quantizer ---------------------------------------------


class _MaskedCodebookSTE(nn.Module):
    """Weight parametrization ``Q(W * mask)`` with a straight-through gradient."""

    def __init__(self, mask: torch.Tensor, centroids: np.ndarray, snap: bool):
        super().__init__()
        self.register_buffer("mask", mask)
        self.centroids = np.asarray(centroids, dtype=np.float64)
        self.snap = snap

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        c = torch.from_numpy(self.centroids if self.snap else self.centroids[1:]).to(w.dtype)
        order = torch.argsort(c)
        cs = c[order]
        mid = (cs[1:] + cs[:-1]) / 2
        return cs[torch.bucketize(w, mid, right=False)]

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        wm = w * self.mask
        return wm + (self.quantize(wm) * self.mask - wm).detach()


# --- knowledge distillation through hwq.workloads.train.fit --------------------------------


class _DistillGrad(torch.autograd.Function):
    """Zero in the forward; in the backward, turns the cross-entropy gradient into the
    distillation loss's.

    ``fit`` differentiates ``CE(s + 0, y)``, whose gradient at ``s`` is ``g = (softmax(s) -
    onehot(y)) / B``. This term's backward returns ``-alpha * g + alpha * T * (softmax(s / T)
    - softmax(t / T)) / B``, so the total is the gradient of ``(1 - alpha) * CE(s, y) +
    alpha * T**2 * KL(softmax(t / T) || softmax(s / T))`` (Hinton et al. 2015), exactly.
    """

    @staticmethod
    def forward(ctx: Any, s: torch.Tensor, t: torch.Tensor, alpha: float, temp: float
                ) -> torch.Tensor:
        ctx.save_for_backward(s, t)
        ctx.alpha, ctx.temp = alpha, temp
        return torch.zeros_like(s)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        s, t = ctx.saved_tensors
        a, temp = ctx.alpha, ctx.temp
        kd = temp * (torch.softmax(s / temp, dim=1) - torch.softmax(t / temp, dim=1)) \
            / s.shape[0]
        return -a * g + a * kd, None, None, None


class _Distilled(nn.Module):
    """``student(x)`` whose cross-entropy gradient becomes the distillation gradient."""

    def __init__(self, student: nn.Module, teacher: nn.Module, alpha: float, temp: float):
        super().__init__()
        self.student = student
        self._teacher = (teacher,)  # not a submodule: neither trained nor in parameters()
        self.alpha, self.temp = alpha, temp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.student(x)
        with torch.no_grad():
            t = self._teacher[0](x)
        return s + _DistillGrad.apply(s, t, self.alpha, self.temp)


# --- the method ----------------------------------------------------------------------------


class JointWeights(dict):
    """The method's ``dict[str, QuantizedWeight]`` with the run's facts in :attr:`info`."""

    info: dict[str, Any]


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo \
            or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"Joint {name} must be an integer {rng}, not {value!r}")
    return int(value)


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not (math.isfinite(value) and value > 0):
        raise ValueError(f"Joint {name} must be a positive finite number, not {value!r}")
    return float(value)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    # as hwq.workloads.train.fit: a final batch of one sample is skipped
    return sum(1 for s in range(0, n, batch_size) if min(batch_size, n - s) > 1)


def quantize_joint(
    model: nn.Module,
    data: Any,
    *,
    bits: int | None = None,
    compression: float | None = None,
    budget_bits: int | None = None,
    b_min: int = 1,
    init_bits: int = 3,
    rho: float = DEFAULT_RHO,
    rho_growth: float = DEFAULT_RHO_GROWTH,
    epochs: int = DEFAULT_EPOCHS,
    finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS,
    lr: float = DEFAULT_LR,
    finetune_lr: float | None = None,
    solver: str = "exact",
    proj_rounds: int = 3,
    snap_to_zero: bool = False,
    saliency: str = "magnitude",
    distill: float = DEFAULT_DISTILL,
    distill_temperature: float = 4.0,
    kmeans_iterations: int = 100,
    table_bits: int = TABLE_BITS,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    num_threads: int | None = 1,
    seed: int = 0,
    progress: bool = True,
) -> JointWeights:
    """Joint sparsity-quantization by ADMM under a total size budget (Yang et al. 2020).

    The algorithm, the sparse encoding and what its size counts are in the module docstring.
    Defaults are scaled to the digits workload (20 optimizer steps per epoch, ~0.2 s per
    epoch on one idle core): ``epochs = 40`` ADMM epochs at a constant ``lr = 0.01`` with one
    projection and dual update per epoch, ``rho = 1`` growing by ``rho_growth = 1.05`` per
    epoch (``eta * rho`` pulls ``W`` about 20 % of the way to ``V - Y`` per epoch at first,
    60 % at the end; the paper's LeNet-5 ``rho = 0.05`` is for ~240 steps per epoch at
    ``lr = 0.1``), ``init_bits = 3`` (the official LeNet-5 ``--bit_budget``), then
    ``finetune_epochs = 30`` of STE fine-tuning with a cosine schedule from ``finetune_lr``
    (default ``lr``). 12-15 s on an idle machine without distillation (the default
    ``distill = 0.9`` adds a teacher forward per step), under a minute on 2 busy shared cores.

    Parameters
    ----------
    model : nn.Module
        The BatchNorm-folded float model; trained in place and left with the dequantized
        weights (biases trained, float).
    data : object
        ``x_train``, ``y_train`` (:class:`hwq.workloads.digits.DigitsData`).
    bits : int or None, default None
        The widest per-layer ``b`` (``2**b`` levels), ``b_min..7``; ``None`` is 7.
    compression : float, optional
        Target ratio ``C > 1``: budget ``floor(32 * N / C)`` bits for ``N`` weights.
    budget_bits : int, optional
        The budget in bits (exactly one of ``compression`` and ``budget_bits``).
    b_min : int, default 1
        The narrowest per-layer ``b``.
    init_bits : int, default 3
        Every layer's ``b`` before the first projection (``b_min..bits``).
    rho, rho_growth : float
        ADMM penalty at the first epoch, and its factor per epoch (>= 1).
    epochs, finetune_epochs : int
        ADMM epochs (>= 1), fine-tuning epochs (>= 0).
    lr, finetune_lr : float
        SGD learning rates (ADMM constant; fine-tuning cosine from ``finetune_lr``).
    solver : {"exact", "greedy"}
        Multiple-choice knapsack solver (:func:`choose_bits`); the paper's is greedy.
    proj_rounds : int, default 3
        Sparse/bit-width alternations per projection.
    snap_to_zero : bool, default False
        Let k-means send kept weights to the exact zero (the paper's quantizer) instead of
        keeping every kept weight on a nonzero level.
    saliency : {"magnitude", "layer", "fisher"}, default "magnitude"
        Value of a weight in the sparse projection (:func:`layer_importance`): the paper's
        ``w**2``; ``w**2`` over the layer's mean ``w**2``; or ``w**2`` times a diagonal
        Fisher estimate (mean squared minibatch gradient, over the training data before the
        first projection, then over each ADMM epoch). On digits at 50x (seed 0, without
        distillation) both alternatives were worse than ``w**2`` (96.5 % and 96.9 % against
        97.6 %): they move nonzeros into the large, small-weight conv layer at 1-2 bits, and
        the extra nonzeros cost more index bits than they are worth.
    distill : float, default 0.9
        Knowledge distillation from the float model as given (frozen copy), in the ADMM and
        fine-tuning phases: the loss is ``(1 - distill) * CE + distill * T**2 * KL(teacher_T
        || student_T)``, 0..1; ``0`` is the paper's plain cross-entropy. Measured on digits
        at 50x (seeds 0, 1, 2, integer network): 0 gives 97.65 +/- 0.11 %, 0.9 gives
        98.70 +/- 0.19 % (fp32 99.26 %); 0.5 (97.78 %) and 1.0 (98.15 %) on seed 0 were worse.
    distill_temperature : float, default 4
        ``T`` of the distillation softmaxes.
    kmeans_iterations : int, default 100
    table_bits : int, default 8
        Codebook entry width (2..8).
    batch_size, momentum, weight_decay, num_threads, seed, progress
        Training settings of :func:`hwq.workloads.train.fit`.

    Returns
    -------
    JointWeights
        ``CODEBOOK`` weights per layer; ``.info`` holds the budget, the :func:`sparse_size`
        accounting (per layer: nnz, bit width, index bits...; totals and ratios), the chosen
        ``bits`` per layer, the ADMM history and timings.

    Raises
    ------
    ValueError
        A bad option (named), or a budget below the headers and smallest codebooks.
    """
    t_start = time.perf_counter()
    b_max = 7 if bits is None else _check_int("bits", bits, BITS[0], BITS[1])
    b_min = _check_int("b_min", b_min, BITS[0], b_max)
    init_bits = _check_int("initial bits", init_bits, b_min, b_max)
    _check_positive("rho", rho)
    if _check_positive("rho growth", rho_growth) < 1:
        raise ValueError(f"Joint rho growth must be >= 1, not {rho_growth!r}")
    epochs = _check_int("epochs", epochs, 1)
    finetune_epochs = _check_int("fine-tuning epochs", finetune_epochs, 0)
    lr = _check_positive("learning rate", lr)
    finetune_lr = lr if finetune_lr is None else _check_positive("fine-tuning learning rate",
                                                                 finetune_lr)
    if solver not in SOLVERS:
        raise ValueError(f"Joint solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    proj_rounds = _check_int("projection rounds", proj_rounds, 1)
    kmeans_iterations = _check_int("k-means iterations", kmeans_iterations, 1)
    table_bits = _check_int("table bits", table_bits, 2, 8)
    seed = _check_int("seed", seed, 0)
    if not (hasattr(data, "x_train") and hasattr(data, "y_train")):
        raise ValueError("Joint needs training data with x_train and y_train "
                         f"(e.g. hwq.workloads.digits.load_data()), not {type(data).__name__}")
    layers = weight_layers(model)
    if not layers:
        raise ValueError("Model has no Conv2d or Linear layer to compress")
    names = [n for n, _ in layers]
    params = [m.weight for _, m in layers]
    shapes = [tuple(p.shape) for p in params]
    count = sum(p.numel() for p in params)
    budget = budget_from(count, compression=compression, budget_bits=budget_bits)
    floor = sum(_header_bits(p.numel()) for p in params)
    if budget <= floor:
        raise ValueError(f"Joint budget of {budget} bits is below the {floor} bits of the "
                         f"layer headers alone; allow more bits")
    project = _Projector(budget, b_min, b_max, table_bits=table_bits, solver=solver,
                         rounds=proj_rounds, kmeans_iterations=kmeans_iterations,
                         snap=snap_to_zero)
    x, y = data.x_train, data.y_train
    if saliency not in SALIENCIES:
        raise ValueError(f"Joint saliency must be one of {', '.join(SALIENCIES)}, "
                         f"not {saliency!r}")
    if isinstance(distill, bool) or not isinstance(distill, numbers.Real) \
            or not 0 <= distill <= 1:
        raise ValueError(f"Joint distill must be a number in 0..1, not {distill!r}")
    distill_temperature = _check_positive("distillation temperature", distill_temperature)
    trained: nn.Module = model
    if distill > 0:
        teacher = copy.deepcopy(model).eval()
        for p_ in teacher.parameters():
            p_.requires_grad_(False)
        trained = _Distilled(model, teacher, float(distill), distill_temperature)

    def flat(ts: Sequence[torch.Tensor]) -> list[np.ndarray]:
        return [t.detach().reshape(-1).double().numpy().copy() for t in ts]

    def tensors(arrs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        return [torch.from_numpy(a).reshape(s).to(p.dtype)
                for a, s, p in zip(arrs, shapes, params, strict=True)]

    # --- ADMM ---
    timings: dict[str, float] = {}
    t = time.perf_counter()
    fisher_sum = [torch.zeros_like(p) for p in params]
    fisher_n = [0]

    def grad_hook(_: nn.Module) -> None:
        with torch.no_grad():
            for f, p in zip(fisher_sum, params, strict=True):
                if p.grad is not None:
                    f.add_(p.grad.detach() ** 2)
        fisher_n[0] += 1

    def importance(xs: list[np.ndarray]) -> list[np.ndarray | float]:
        if saliency != "fisher":
            return layer_importance(xs, saliency)
        fs = [(f / max(1, fisher_n[0])).reshape(-1).double().numpy() for f in fisher_sum]
        for f in fisher_sum:
            f.zero_()
        fisher_n[0] = 0
        return layer_importance(xs, saliency, fs)

    if saliency == "fisher":  # the first estimate: one pass over the training data
        was_training = model.training
        model.train()
        loss_fn = nn.CrossEntropyLoss()
        for s0 in range(0, x.shape[0], batch_size):
            if min(batch_size, x.shape[0] - s0) < 2:
                continue
            model.zero_grad(set_to_none=True)
            loss_fn(model(x[s0:s0 + batch_size]), y[s0:s0 + batch_size]).backward()
            grad_hook(model)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    w0 = flat(params)
    plan = project(w0, [init_bits] * len(params), importance(w0))
    vs = tensors(plan.v)
    ys = [torch.zeros_like(p) for p in params]
    state = {"step": 0, "rho": float(rho), "plan": plan}
    history: list[dict[str, Any]] = []
    per_epoch = _steps_per_epoch(x.shape[0], batch_size)

    def record(epoch: int, p: _Plan) -> None:
        w = flat(params)
        gap = math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(w, p.v, strict=True)))
        norm = math.sqrt(sum(float(np.sum(a ** 2)) for a in w))
        history.append({"epoch": epoch, "rho": state["rho"], "bits": list(p.bits),
                        "nnz": [int(m.sum()) for m in p.masks],
                        "primal_residual": gap / norm if norm else 0.0})

    def after_step(_: nn.Module) -> None:
        a = lr * state["rho"]
        with torch.no_grad():
            for p, v, yy in zip(params, vs, ys, strict=True):
                p.add_(v - yy, alpha=a).div_(1 + a)
        state["step"] += 1
        if state["step"] % per_epoch:
            return
        w = flat(params)
        wy = [a_ + y_.reshape(-1).double().numpy() for a_, y_ in zip(w, ys, strict=True)]
        p_new = project(wy, state["plan"].bits, importance(wy))
        state["plan"] = p_new
        new_v = tensors(p_new.v)
        with torch.no_grad():
            for p, v, yy, nv in zip(params, vs, ys, new_v, strict=True):
                v.copy_(nv)
                yy.add_(p - v)
        record(state["step"] // per_epoch, p_new)
        state["rho"] *= rho_growth

    fit(trained, x, y, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
        weight_decay=weight_decay, schedule="constant", seed=seed, num_threads=num_threads,
        after_step=after_step, grad_hook=grad_hook if saliency == "fisher" else None,
        progress=progress, desc="joint admm")
    timings["admm"] = time.perf_counter() - t

    # --- fine-tuning with fixed masks and bit widths ---
    t = time.perf_counter()
    plan = state["plan"]
    masks = [torch.from_numpy(m.reshape(s)) for m, s in zip(plan.masks, shapes, strict=True)]
    centroids = []
    with torch.no_grad():
        for p, m, b in zip(params, masks, plan.bits, strict=True):
            p.mul_(m)
            nz = p.detach()[m].double().numpy()
            centroids.append(kmeans_zero(nz, 1 << b, iterations=kmeans_iterations,
                                         snap=snap_to_zero).centroids
                             if nz.size else np.zeros((1 << b) + 1))
    quants = [_MaskedCodebookSTE(m, c, snap_to_zero)
              for m, c in zip(masks, centroids, strict=True)]
    modules = [m for _, m in layers]
    if finetune_epochs:
        for mod, q in zip(modules, quants, strict=True):
            parametrize.register_parametrization(mod, "weight", q)

        def refresh(_: nn.Module) -> None:
            with torch.no_grad():
                for mod, q in zip(modules, quants, strict=True):
                    raw = mod.parametrizations.weight.original
                    raw.mul_(q.mask)
                    nz = raw[q.mask].double().numpy()
                    if nz.size:
                        q.centroids = kmeans_zero(nz, q.centroids.size - 1,
                                                  init=q.centroids[1:], iterations=1,
                                                  snap=snap_to_zero).centroids

        try:
            fit(trained, x, y, epochs=finetune_epochs, lr=finetune_lr, batch_size=batch_size,
                momentum=momentum, weight_decay=weight_decay, schedule="cosine", seed=seed,
                num_threads=num_threads, after_step=refresh, progress=progress,
                desc="joint finetune")
        finally:
            for mod in modules:
                parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
    timings["finetune"] = time.perf_counter() - t

    # --- final codebooks ---
    model.eval()
    params = [m.weight for m in modules]  # the parametrization may have swapped the objects
    out = JointWeights()
    for name, p, m, q, b in zip(names, params, masks, quants, plan.bits, strict=True):
        w = p.detach().double().numpy().reshape(-1)
        mk = m.numpy().reshape(-1)
        labels = np.zeros(w.size, dtype=np.int64)
        cents = np.zeros((1 << b) + 1)
        if mk.any():
            km = kmeans_zero(w[mk], 1 << b, init=q.centroids[1:], iterations=kmeans_iterations,
                             snap=snap_to_zero)
            labels[mk] = km.labels
            cents = km.centroids
        out[name] = codebook_weight(cents, labels, tuple(p.shape), table_bits=table_bits)
    apply_weights(model, out)
    biases = {n: (int(m.bias.numel()) if m.bias is not None else 0) for n, m in layers}
    size = sparse_size(out, biases=biases)
    if size["total_bits"] > budget:  # impossible by construction; a loud guard
        raise RuntimeError(f"Joint result of {size['total_bits']} bits exceeds the budget "
                           f"of {budget} bits")
    timings["total"] = time.perf_counter() - t_start
    for name, b in zip(names, plan.bits, strict=True):
        size["layers"][name]["bits"] = b
        size["layers"][name]["ir_index_bits"] = int(out[name].spec.max_bits())
    out.info = {
        "budget_bits": budget,
        "compression_target": None if compression is None else float(compression),
        "bits": dict(zip(names, plan.bits, strict=True)),
        **size,
        "options": {"b_min": b_min, "b_max": b_max, "init_bits": init_bits,
                    "snap_to_zero": snap_to_zero, "saliency": saliency, "distill": distill,
                    "distill_temperature": distill_temperature, "rho": rho,
                    "rho_growth": rho_growth,
                    "epochs": epochs, "finetune_epochs": finetune_epochs, "lr": lr,
                    "finetune_lr": finetune_lr, "solver": solver, "proj_rounds": proj_rounds,
                    "kmeans_iterations": kmeans_iterations, "table_bits": table_bits,
                    "seed": seed},
        "history": history,
        "timings": timings,
    }
    return out
