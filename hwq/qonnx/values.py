"""What the importer knows about each tensor of a QONNX graph, and QONNX's rounding.

A tensor of the graph is, for :mod:`hwq.qonnx.importer`, one of

* :class:`Const`: a constant (initializer or ``Constant``);
* :class:`Weight`: ``scale * ints``, a ``Quant`` of a constant (weights, biases);
* :class:`Ints`: ``scale * X`` with ``X`` an integer tensor of the hwq network (the input
  or an op's output) in ``lo..hi``;
* :class:`Acc`: ``r[c] * (acc + beta[c])``, clipped to ``clip_lo..clip_hi``, where ``acc``
  is the integer accumulator of an hwq op still waiting for its requantization (the
  ``Quant`` that ends it). Scales and offsets are exact rationals (:class:`Fraction`), so
  what maps exactly is decided exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

#: QONNX rounding modes and the rational rounding each stands for (``qonnx`` IntQuant).
ROUNDING = ("ROUND", "HALF_EVEN", "HALF_UP", "HALF_DOWN", "FLOOR", "CEIL", "UP", "DOWN")


def round_fraction(x: Fraction, mode: str) -> int:
    """``x`` rounded to an integer as QONNX's rounding ``mode`` does.

    >>> [round_fraction(Fraction(v), m) for v, m in ((2.5, "ROUND"), (-2.5, "HALF_UP"),
    ...                                             (-2.5, "FLOOR"), (-2.5, "DOWN"))]
    [2, -3, -3, -2]
    """
    sign = 1 if x >= 0 else -1
    if mode in ("ROUND", "HALF_EVEN"):
        return round(x)  # Fraction.__round__: half to even
    if mode == "HALF_UP":  # half away from zero
        return sign * math.floor(abs(x) + Fraction(1, 2))
    if mode == "HALF_DOWN":
        return sign * math.ceil(abs(x) - Fraction(1, 2))
    if mode == "FLOOR":
        return math.floor(x)
    if mode == "CEIL":
        return math.ceil(x)
    if mode == "UP":
        return sign * math.ceil(abs(x))
    if mode == "DOWN":
        return math.trunc(x)
    raise ValueError(f"Rounding mode must be one of {', '.join(ROUNDING)}, not {mode!r}")


def round_array(x: np.ndarray, mode: str) -> np.ndarray:
    """``x`` (float) rounded elementwise as QONNX's rounding ``mode`` does."""
    if mode in ("ROUND", "HALF_EVEN"):
        return np.round(x)
    if mode == "HALF_UP":
        return np.sign(x) * np.floor(np.abs(x) + 0.5)
    if mode == "HALF_DOWN":
        return np.sign(x) * np.ceil(np.abs(x) - 0.5)
    if mode == "FLOOR":
        return np.floor(x)
    if mode == "CEIL":
        return np.ceil(x)
    if mode == "UP":
        return np.sign(x) * np.ceil(np.abs(x))
    if mode == "DOWN":
        return np.fix(x)
    raise ValueError(f"Rounding mode must be one of {', '.join(ROUNDING)}, not {mode!r}")


def fractions(values: Any) -> list[Fraction]:
    """Exact rationals of float values (every float is one)."""
    return [Fraction(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()]


@dataclass(frozen=True)
class Const:
    """A constant tensor (its stored dtype kept: QONNX computes in it)."""

    value: np.ndarray


@dataclass(frozen=True)
class Weight:
    """``scale * ints``: a ``Quant`` of a constant.

    ``scale`` is broadcast to ``ints.shape``; ``bits`` is the width of the hwq INT format
    that holds the quantizer's range (``signed_bits_for(min_int, max_int)``).
    """

    ints: np.ndarray
    scale: np.ndarray
    bits: int
    node: str

    def transposed(self) -> Weight:
        return replace(self, ints=self.ints.T, scale=self.scale.T)


@dataclass(frozen=True)
class Ints:
    """``scale * X``: the hwq tensor ``tensor`` (integers in ``lo..hi``), per-sample
    ``shape``."""

    tensor: str
    scale: Fraction
    lo: int
    hi: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Acc:
    """``clip(r[c] * (acc + beta[c]), clip_lo, clip_hi)`` with ``acc`` the integer
    accumulator of an hwq op of ``kind`` (conv2d, linear, avgpool2d, global_avgpool2d,
    add) over the hwq tensors ``inputs``; ``params`` are the op's fields (weights,
    geometry), ``shape`` its per-sample output shape. ``post`` holds max pools and
    flattens that come before the requantization in the graph: they commute with it (a
    per-channel requant with ``M > 0`` is monotone), so they run after it in hwq.
    """

    kind: str
    node: str
    inputs: tuple[str, ...]
    params: dict[str, Any]
    r: tuple[Fraction, ...]
    beta: tuple[Fraction, ...]
    shape: tuple[int, ...]
    clip_lo: Fraction | None = None
    clip_hi: Fraction | None = None
    post: tuple[tuple[str, dict[str, Any]], ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def channels(self) -> int:
        return len(self.r)

    def scaled(self, factor: list[Fraction]) -> Acc:
        """The value times ``factor[c] > 0``."""
        lo = None if self.clip_lo is None else self._clip_scaled(self.clip_lo, factor)
        hi = None if self.clip_hi is None else self._clip_scaled(self.clip_hi, factor)
        return replace(self, r=tuple(r * f for r, f in zip(self.r, factor, strict=True)),
                       clip_lo=lo, clip_hi=hi)

    @staticmethod
    def _clip_scaled(bound: Fraction, factor: list[Fraction]) -> Fraction:
        if len(set(factor)) != 1:
            raise ValueError("a per-channel multiplication after a clamp")
        return bound * factor[0]

    def shifted(self, offset: list[Fraction]) -> Acc:
        """The value plus ``offset[c]``."""
        lo = None if self.clip_lo is None else self._clip_shifted(self.clip_lo, offset)
        hi = None if self.clip_hi is None else self._clip_shifted(self.clip_hi, offset)
        return replace(self, beta=tuple(b + o / r for b, o, r in
                                        zip(self.beta, offset, self.r, strict=True)),
                       clip_lo=lo, clip_hi=hi)

    @staticmethod
    def _clip_shifted(bound: Fraction, offset: list[Fraction]) -> Fraction:
        if len(set(offset)) != 1:
            raise ValueError("a per-channel addition after a clamp")
        return bound + offset[0]


class Refused(Exception):
    """A node that does not map (the importer adds the node's name and type)."""


def where(node: Any) -> str:
    """``node 'name' (OpType)`` for messages."""
    name = node.name or node.output[0]
    return f"node {name!r} ({node.op_type})"


def show(v: Any) -> str:
    """A short text of a constant (its value, or its first values)."""
    arr = np.asarray(v)
    return f"{arr.ravel()[0]:g}" if arr.size == 1 else f"{arr.ravel()[:4].tolist()}..."
