"""The two projections of ``joint`` as knapsacks: the sparse one (0-1, :func:`knapsack_masks`)
and the bit-width one (multiple-choice, :func:`choose_bits`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SALIENCIES", "SOLVERS", "choose_bits", "knapsack_masks", "layer_importance"]

#: Multiple-choice knapsack solvers of :func:`choose_bits`.
SOLVERS = ("exact", "greedy")
#: Saliencies of the sparse projection (:func:`layer_importance`); the paper's is magnitude.
SALIENCIES = ("magnitude", "layer", "fisher")


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
