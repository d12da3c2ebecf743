"""The Pareto front of a sweep and the best point under a budget.

A row dominates another when it is at least as good in every objective and better in one.
With hardware figures the objectives are accuracy (higher), inferences/s at the routed Fmax
(higher) and LUT-equivalents (``lut4_eq``, lower: LUT4 + 2 per CCU2C + 4 per LUT-RAM); without
them (``--no-report``), accuracy (higher), cycles per inference (lower) and weight storage bits
(lower). Rows with an error take no part.
"""

from __future__ import annotations

from typing import Any

__all__ = ["best", "mark_pareto", "objectives"]

#: (column, sense): +1 higher is better, -1 lower is better.
HW_OBJECTIVES = (("accuracy", 1), ("inferences_per_s", 1), ("lut4_eq", -1))
MODEL_OBJECTIVES = (("accuracy", 1), ("cycles", -1), ("weight_bits", -1))


def objectives(rows: list[dict[str, Any]]) -> tuple[tuple[str, int], ...]:
    """The hardware objectives if any valid row has them, else the model-only ones."""
    valid = [r for r in rows if not r.get("error")]
    if valid and all(r.get("inferences_per_s") is not None for r in valid):
        return HW_OBJECTIVES
    return MODEL_OBJECTIVES


def _dominates(a: dict, b: dict, objs: tuple[tuple[str, int], ...]) -> bool:
    ge = all(a[k] * s >= b[k] * s for k, s in objs)
    gt = any(a[k] * s > b[k] * s for k, s in objs)
    return ge and gt


def mark_pareto(rows: list[dict[str, Any]]) -> tuple[tuple[str, int], ...]:
    """Set ``row["pareto"]`` (True on the front, False off it, None for failed rows)."""
    objs = objectives(rows)
    valid = [r for r in rows if not r.get("error") and all(r.get(k) is not None
                                                            for k, _ in objs)]
    for r in rows:
        r["pareto"] = None
    for r in valid:
        r["pareto"] = not any(_dominates(o, r, objs) for o in valid if o is not r)
    return objs


def best(rows: list[dict[str, Any]], *, budget_luts: int | None = None,
         min_accuracy: float | None = None) -> dict[str, Any] | None:
    """The fastest valid row (inferences/s, else fewest cycles; ties: more accurate, then
    fewer LUTs) within the LUT budget and at or above the accuracy asked for; None if no row
    meets both."""
    ok = [r for r in rows if not r.get("error")
          and (min_accuracy is None or r.get("accuracy", -1) >= min_accuracy)
          and (budget_luts is None or (r.get("lut4_eq") is not None
                                       and r["lut4_eq"] <= budget_luts))]
    if not ok:
        return None
    if all(r.get("inferences_per_s") is not None for r in ok):
        return max(ok, key=lambda r: (r["inferences_per_s"], r["accuracy"], -r["lut4_eq"]))
    return min(ok, key=lambda r: (r["cycles"], -r["accuracy"]))
