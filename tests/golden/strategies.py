"""Hypothesis helpers shared by the op tests: integer tensors with edge-case fills."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

FILLS = ("random", "min", "max", "extremes", "small")


def tensor(draw, shape, bits: int) -> np.ndarray:
    """A ``bits``-bit signed int64 array: random, all min, all max, min/max mix or near 0."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    fill = draw(st.sampled_from(FILLS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if fill == "min":
        return np.full(shape, lo, np.int64)
    if fill == "max":
        return np.full(shape, hi, np.int64)
    if fill == "extremes":
        return rng.choice(np.array([lo, hi], np.int64), size=shape)
    if fill == "small":
        return rng.integers(max(lo, -2), min(hi, 2) + 1, size=shape, dtype=np.int64)
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)


def padding(draw, max_h: int, max_w: int):
    """A padding argument (int, (h, w) or 4-tuple) and its (top, bottom, left, right)."""
    form = draw(st.sampled_from(("int", "pair", "four")))
    if form == "int":
        p = draw(st.integers(0, min(max_h, max_w)))
        return p, (p, p, p, p)
    if form == "pair":
        ph, pw = draw(st.integers(0, max_h)), draw(st.integers(0, max_w))
        return (ph, pw), (ph, ph, pw, pw)
    sides = (draw(st.integers(0, max_h)), draw(st.integers(0, max_h)),
             draw(st.integers(0, max_w)), draw(st.integers(0, max_w)))
    return sides, sides


def pair_arg(draw, lo: int, hi: int):
    """An int or an (h, w) pair in lo..hi, and its (h, w)."""
    if draw(st.booleans()):
        v = draw(st.integers(lo, hi))
        return v, (v, v)
    p = (draw(st.integers(lo, hi)), draw(st.integers(lo, hi)))
    return p, p
