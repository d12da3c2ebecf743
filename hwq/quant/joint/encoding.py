"""Size of the sparse encoding of ``joint``: the exact length of the weight stream
(:mod:`hwq.quant.joint.stream`), and the same count for a planned mask (the projections)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from hwq.quant.base import QuantizedWeight
from hwq.quant.joint.stream import LayerCode, encode_layer, header_bits, position_bits

__all__ = ["TABLE_BITS", "LayerSize", "budget_from", "index_bits", "layer_size", "sparse_size"]

#: Codebook entry width (bits) the projections plan with (the stream stores the narrowest
#: two's complement width that holds the table, at most this for ``joint``'s codebooks).
TABLE_BITS = 8
#: One layer's record in the stream.
LayerSize = LayerCode


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


def layer_size(mask: np.ndarray, *, value_width: int, levels: int,
               table_bits: int = TABLE_BITS) -> LayerCode:
    """Planned size of one layer: its nonzero pattern, value width and table length.

    The header and the position code are exact (the stream's, for this mask); values take
    ``value_width`` bits each and the table ``levels`` entries of ``table_bits`` bits (the
    stream's values and entries are never wider, so the plan bounds the stream).

    Parameters
    ----------
    mask : bool array
        the nonzero weights, in the weight shape (row-major order is the scan order).
    value_width : int
        bits per nonzero value index.
    levels : int
        table entries stored.
    table_bits : int, default 8
    """
    m = np.asarray(mask, dtype=bool).reshape(-1)
    pos = np.flatnonzero(m)
    nnz = int(pos.size)
    code, param, pb = position_bits(pos)
    v = value_width if nnz else 0
    n = levels if nnz else 0
    return LayerCode(weights=m.size, nnz=nnz, levels=n, entry_bits=table_bits if nnz else 0,
                     value_width=v, position_code=code, position_param=param,
                     header_bits=header_bits(m.size, nnz), table_bits=n * table_bits,
                     index_bits=pb, value_bits=v * nnz)


def sparse_size(qweights: Mapping[str, QuantizedWeight], *,
                biases: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Exact storage of integer weights in the sparse weight stream, and the dense IR's.

    Works for any method's weights: each layer is encoded (:func:`hwq.quant.joint.stream.
    encode_layer`) and its record measured; the total is the stream's length in bits.

    Parameters
    ----------
    qweights : mapping of str -> QuantizedWeight
    biases : mapping of str -> int, optional
        bias count per layer; counted apart at 32 bits each.

    Returns
    -------
    dict
        ``layers`` (name -> :meth:`LayerCode.to_dict` plus ``dense_ir_bits``), and the sums
        ``weights``, ``nnz``, ``value_bits``, ``index_bits`` (positions), ``table_bits``,
        ``header_bits``, ``total_bits``, ``compression_ratio = 32 * weights / total_bits``,
        ``dense_ir_bits`` (every IR code plus tables, what the core's memories hold),
        ``dense_ir_compression_ratio``, ``bias_bits`` and
        ``compression_ratio_with_biases = 32 * (weights + biases) / (total + bias_bits)``.
    """
    layers: dict[str, dict[str, Any]] = {}
    for name, qw in qweights.items():
        _, code = encode_layer(qw.values)
        layers[name] = {**code.to_dict(), "dense_ir_bits": qw.storage_bits()}
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
