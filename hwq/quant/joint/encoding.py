"""Size accounting of the sparse encoding of ``joint`` (see :mod:`hwq.quant.joint`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwq.quant.base import QuantizedWeight

__all__ = ["INDEX_WIDTHS", "TABLE_BITS", "LayerSize", "budget_from", "index_bits", "layer_size",
           "sparse_size"]

#: Widths ``r`` of the relative-index field.
INDEX_WIDTHS = (1, 8)
#: Bits of the header fields ``r - 1`` and ``n - 1`` (number of nonzero table entries).
HEADER_R_BITS = 3
HEADER_LEVELS_BITS = 8
#: Codebook entry width (bits) counted for layers that are not CODEBOOK.
TABLE_BITS = 8


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
