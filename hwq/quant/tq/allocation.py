"""TQ's bit allocation: the depth of every block for a storage budget, by bisection on
the rate-distortion multiplier (step 5 of :mod:`hwq.quant.tq`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwq.quant.tq.curves import (
    BlockCurves,
)
from hwq.quant.tq.plan import (
    LayerPlan,
)

# --- allocation -----------------------------------------------------------------------------


def allocation_bits(plans: Sequence[LayerPlan], choice: Sequence[np.ndarray]) -> int:
    """Total storage bits of an allocation (``choice[l][k]`` index into ``depths``)."""
    return sum(p.block_bits(k, p.depths[int(r)]) for p, c in zip(plans, choice, strict=True)
               for k, r in enumerate(c))


def _choose(plans: Sequence[LayerPlan], curves: Sequence[BlockCurves], lam: float
            ) -> list[np.ndarray]:
    out = []
    for p, c in zip(plans, curves, strict=True):
        cost = np.array([[p.block_bits(k, d) for d in p.depths] for k in range(len(p.blocks))],
                        dtype=np.float64)
        out.append(np.argmin(c.distortion + lam * cost, axis=1))
    return out


def allocate(plans: Sequence[LayerPlan], curves: Sequence[BlockCurves], budget_bits: float,
             *, iterations: int = 200) -> tuple[list[np.ndarray], float]:
    """Lagrangian bit allocation: the largest total rate not above ``budget_bits``.

    Per block ``R_k = argmin_R D_k(R) + lambda * bits_k(R)``; the total bits are
    non-increasing in ``lambda`` (for two multipliers ``l1 < l2`` with optima ``R1, R2``,
    adding the two optimality inequalities gives ``(l2 - l1)(bits(R2) - bits(R1)) <= 0``),
    so ``log lambda`` is bisected.

    Returns
    -------
    (choice, lambda)
        ``choice[l][k]`` index into ``plans[l].depths``.

    Raises
    ------
    ValueError
        if even the smallest allocation exceeds the budget.
    """
    lo, hi = -40.0, 40.0  # log10 lambda
    c_hi = _choose(plans, curves, 10.0 ** hi)
    if allocation_bits(plans, c_hi) > budget_bits:
        raise ValueError(f"TQ target is below the smallest allocation "
                         f"({allocation_bits(plans, c_hi)} bits > {budget_bits:.0f})")
    c_lo = _choose(plans, curves, 10.0 ** lo)
    if allocation_bits(plans, c_lo) <= budget_bits:
        return c_lo, 10.0 ** lo
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if allocation_bits(plans, _choose(plans, curves, 10.0 ** mid)) <= budget_bits:
            hi = mid
        else:
            lo = mid
    return _choose(plans, curves, 10.0 ** hi), 10.0 ** hi
