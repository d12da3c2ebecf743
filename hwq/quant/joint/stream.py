"""The sparse weight stream: integer weights of every layer as one bit stream, and back.

A layer of ``N`` integer weights (row-major order, the weight shape known to the reader)
with ``n`` nonzeros taking ``k`` distinct nonzero values is, MSB first:

====================  =======================  ==============================================
field                 bits                     meaning
====================  =======================  ==============================================
nnz                   ``ceil(log2(N + 1))``    ``n``; a layer with ``n = 0`` ends here
code                  2                        position code: 0 relative index, 1 Elias-Fano,
                                               2 Golomb-Rice
param                 5                        its parameter: ``r - 1``, ``L`` or ``k``
levels                8                        ``k - 1`` (at most 256 distinct values)
entry width           4                        ``t - 1``: table entries are ``t``-bit two's
                                               complement integers, ``t`` in 1..16
table                 ``k * t``                the distinct nonzero values, ascending
positions             see below                where the ``n`` nonzeros are
values                ``n * v``                index into the table of each nonzero in
                                               position order, ``v = ceil(log2 k)`` (0 if
                                               ``k = 1``)
====================  =======================  ==============================================

Position codes of the ascending positions ``p_0 < ... < p_{n-1}`` (the encoder takes the
shortest, exact length, ties to the smaller code number, then the smaller parameter):

* **relative index** (Deep Compression style, escapes instead of filler weights): per nonzero
  an ``r``-bit field with its zero run ``z_i = p_i - p_{i-1} - 1`` (``p_{-1} = -1``) when
  ``z < 2**r - 1``; the field value ``2**r - 1`` means "``2**r - 1`` zeros, no weight".
  ``r * (n + sum_i floor(z_i / (2**r - 1)))`` bits, ``r`` in 1..16;
* **Elias-Fano** with ``L`` low bits: the ``n`` low parts ``p_i mod 2**L`` (``n * L`` bits),
  then the high parts in unary, a 1 at bit ``(p_i >> L) + i``, the bit vector cut after its
  ``n``-th 1: ``(p_{n-1} >> L) + n`` bits; ``L`` in 0..31;
* **Golomb-Rice** of the zero runs with parameter ``k``: ``z_i >> k`` ones, a 0, the ``k`` low
  bits of ``z_i``: ``n * (k + 1) + sum_i (z_i >> k)`` bits; ``k`` in 0..31.

The stream is the layers' records back to back, zero-padded to whole bytes; its length in
bits (before padding) is the size every ``joint`` figure reports.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CODES", "LayerCode", "decode", "encode", "encode_layer", "position_bits",
           "position_marginal"]

#: Position codes by their 2-bit number.
CODES = ("relative", "elias-fano", "golomb-rice")
CODE_BITS, PARAM_BITS, LEVELS_BITS, WIDTH_BITS = 2, 5, 8, 4
#: Parameter ranges: ``r`` of the relative index, ``L`` of Elias-Fano, ``k`` of Golomb-Rice.
PARAMS = {"relative": range(1, 17), "elias-fano": range(0, 32), "golomb-rice": range(0, 32)}
MAX_LEVELS = 1 << LEVELS_BITS
MAX_ENTRY_BITS = 1 << WIDTH_BITS


def nnz_bits(numel: int) -> int:
    """Width of the ``nnz`` field of a layer of ``numel`` weights."""
    return max(1, math.ceil(math.log2(numel + 1)))


def header_bits(numel: int, nnz: int) -> int:
    """Header bits of a layer: ``nnz``, and code, parameter, levels and entry width if any."""
    return nnz_bits(numel) + (CODE_BITS + PARAM_BITS + LEVELS_BITS + WIDTH_BITS if nnz else 0)


def _lengths(code: str, pos: np.ndarray) -> np.ndarray:
    """Exact bits of ``code`` for ascending positions ``pos``, one per parameter."""
    n = pos.size
    ps = np.asarray(PARAMS[code], dtype=np.int64)
    if code == "elias-fano":
        return n * ps + (int(pos[-1]) >> ps) + n
    runs = np.diff(pos, prepend=-1) - 1
    if code == "golomb-rice":
        return n * (ps + 1) + (runs[None, :] >> ps[:, None]).sum(axis=1)
    esc = (1 << ps) - 1
    return ps * (n + (runs[None, :] // esc[:, None]).sum(axis=1))


def position_bits(positions: np.ndarray) -> tuple[str, int, int]:
    """``(code, parameter, bits)`` of the shortest position code of ascending ``positions``.

    >>> position_bits(np.array([3, 5]))     # runs 3, 1: Golomb-Rice k = 1, 2 * 2 + (1 + 0)
    ('golomb-rice', 1, 5)
    >>> position_bits(np.array([400_000]))
    ('elias-fano', 18, 20)
    """
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if pos.size == 0:
        return CODES[0], PARAMS[CODES[0]][0], 0
    best: tuple[int, int, int] | None = None
    for ci, code in enumerate(CODES):
        lens = _lengths(code, pos)
        j = int(np.argmin(lens))  # the first minimum: the smallest parameter
        cand = (int(lens[j]), ci, PARAMS[code][j])
        if best is None or cand[:2] < best[:2]:
            best = cand
    assert best is not None
    return CODES[best[1]], best[2], best[0]


def position_marginal(nnz: int, numel: int) -> float:
    """Bits one more nonzero adds to the best position code, for evenly spread nonzeros.

    The slope ``(P(n2) - P(n1)) / (n2 - n1)`` of the shortest code's exact length ``P`` over
    evenly spaced positions, with ``n1, n2`` about 10 % below and above ``nnz`` (what the
    sparse projection prices a nonzero's position at, besides its value bits).

    >>> position_marginal(500, 400_000)      # Golomb-Rice k = 9: about log2(N / n) + 0.4
    10.0
    """
    n = max(1, min(int(nnz), numel))
    n1 = max(1, math.floor(0.9 * n))
    n2 = min(numel, max(n1 + 1, math.ceil(1.1 * n)))
    if n2 <= n1:
        return float(position_bits(np.arange(numel))[2]) / max(1, numel)

    def even(k: int) -> np.ndarray:
        return (np.arange(k, dtype=np.int64) * numel) // k

    return max(0.0, (position_bits(even(n2))[2] - position_bits(even(n1))[2]) / (n2 - n1))


@dataclass(frozen=True)
class LayerCode:
    """One layer's record in the stream, in bits (``header + table + positions + values``)."""

    weights: int
    nnz: int
    levels: int
    entry_bits: int
    value_width: int
    position_code: str
    position_param: int
    header_bits: int
    table_bits: int
    index_bits: int
    value_bits: int

    @property
    def total_bits(self) -> int:
        return self.header_bits + self.table_bits + self.index_bits + self.value_bits

    def to_dict(self) -> dict[str, int | str]:
        return {"weights": self.weights, "nnz": self.nnz, "levels": self.levels,
                "entry_bits": self.entry_bits, "value_width": self.value_width,
                "position_code": self.position_code, "position_param": self.position_param,
                "header_bits": self.header_bits, "table_bits": self.table_bits,
                "index_bits": self.index_bits, "value_bits": self.value_bits,
                "total_bits": self.total_bits}


# --- bits ---------------------------------------------------------------------------------


def _fields(values: np.ndarray, width: int) -> np.ndarray:
    """MSB-first bits (uint8 0/1) of non-negative ``values``, ``width`` bits each."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if width == 0:
        return np.zeros(0, dtype=np.uint8)
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((v[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)


def _entry_bits(table: np.ndarray) -> int:
    """Smallest two's complement width holding every (nonzero) table entry."""
    need = [int(v).bit_length() + 1 if v >= 0 else int(-v - 1).bit_length() + 1
            for v in (int(table.min()), int(table.max()))]
    return max(need)


class _Reader:
    def __init__(self, bits: np.ndarray):
        self.bits = bits
        self.at = 0

    def need(self, count: int, what: str) -> None:
        if self.at + count > self.bits.size:
            raise ValueError(f"Sparse weight stream truncated in {what} (needs {count} bits at "
                             f"bit {self.at}, has {self.bits.size})")

    def fields(self, count: int, width: int, what: str) -> np.ndarray:
        self.need(count * width, what)
        if width == 0 or count == 0:
            return np.zeros(count, dtype=np.int64)
        idx = self.at + np.arange(count * width).reshape(count, width)
        shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
        out = (self.bits[idx].astype(np.int64) << shifts).sum(axis=1)
        self.at += count * width
        return out

    def int(self, width: int, what: str) -> int:
        return int(self.fields(1, width, what)[0])


# --- layers --------------------------------------------------------------------------------


def encode_layer(values: np.ndarray) -> tuple[np.ndarray, LayerCode]:
    """The record of one layer's integer weights: ``(bits as uint8 0/1, LayerCode)``.

    Raises
    ------
    ValueError
        more than 256 distinct nonzero values, or a value beyond 16-bit two's complement.
    """
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind not in "iu":
        raise ValueError(f"Sparse weight stream takes integer weights, not dtype {flat.dtype}")
    flat = flat.astype(np.int64)
    numel = flat.size
    pos = np.flatnonzero(flat)
    n = pos.size
    parts = [_fields([n], nnz_bits(numel))]
    if n == 0:
        code = LayerCode(numel, 0, 0, 0, 0, CODES[0], 0, nnz_bits(numel), 0, 0, 0)
        return parts[0], code
    nz = flat[pos]
    table = np.unique(nz)
    k = table.size
    if k > MAX_LEVELS:
        raise ValueError(f"Sparse weight stream holds at most {MAX_LEVELS} distinct nonzero "
                         f"values per layer, not {k}")
    t = _entry_bits(table)
    if t > MAX_ENTRY_BITS:
        raise ValueError(f"Sparse weight stream entries are at most {MAX_ENTRY_BITS}-bit "
                         f"integers, not {int(table.min())}..{int(table.max())}")
    name, param, pbits = position_bits(pos)
    ci = CODES.index(name)
    stored_param = param - 1 if name == "relative" else param
    parts += [_fields([ci], CODE_BITS), _fields([stored_param], PARAM_BITS),
              _fields([k - 1], LEVELS_BITS), _fields([t - 1], WIDTH_BITS),
              _fields(table & ((1 << t) - 1), t)]
    parts.append(_encode_positions(name, param, pos))
    v = math.ceil(math.log2(k)) if k > 1 else 0
    parts.append(_fields(np.searchsorted(table, nz), v))
    bits = np.concatenate(parts)
    code = LayerCode(weights=numel, nnz=n, levels=k, entry_bits=t, value_width=v,
                     position_code=name, position_param=param,
                     header_bits=header_bits(numel, n), table_bits=k * t, index_bits=pbits,
                     value_bits=n * v)
    assert bits.size == code.total_bits, (bits.size, code)
    return bits, code


def _encode_positions(code: str, param: int, pos: np.ndarray) -> np.ndarray:
    n = pos.size
    runs = np.diff(pos, prepend=-1) - 1
    if code == "elias-fano":
        low = _fields(pos & ((1 << param) - 1), param)
        high = np.zeros((int(pos[-1]) >> param) + n, dtype=np.uint8)
        high[(pos >> param) + np.arange(n)] = 1
        return np.concatenate([low, high])
    if code == "golomb-rice":
        q = runs >> param
        length = q + 1 + param
        start = np.concatenate([[0], np.cumsum(length)[:-1]])
        out = np.zeros(int(length.sum()), dtype=np.uint8)
        out[np.repeat(start, q) + (np.arange(int(q.sum())) - np.repeat(np.cumsum(q) - q, q))] = 1
        if param:
            lowbits = _fields(runs & ((1 << param) - 1), param).reshape(n, param)
            out[(start + q + 1)[:, None] + np.arange(param)] = lowbits
        return out
    esc = (1 << param) - 1
    count = runs // esc + 1  # escapes, then the run field of the weight
    fields = np.full(int(count.sum()), esc, dtype=np.int64)
    fields[np.cumsum(count) - 1] = runs % esc
    return _fields(fields, param)


def _decode_positions(r: _Reader, code: str, param: int, n: int, numel: int) -> np.ndarray:
    if code == "elias-fano":
        low = r.fields(n, param, "Elias-Fano low bits")
        ones = np.flatnonzero(r.bits[r.at:r.at + (numel >> param) + n + 1])[:n]
        if ones.size < n:
            raise ValueError("Sparse weight stream truncated in the Elias-Fano high bits")
        r.at += int(ones[-1]) + 1
        return ((ones - np.arange(n)) << param) | low
    if code == "golomb-rice":
        most = n * (param + 1) + (numel >> param)  # sum of the runs < numel
        zeros = np.flatnonzero(r.bits[r.at:r.at + most] == 0).tolist()
        c, qs, starts = 0, [], []
        for _ in range(n):
            i = bisect.bisect_left(zeros, c)
            if i == len(zeros):
                raise ValueError("Sparse weight stream truncated in the Golomb-Rice runs")
            z = zeros[i]
            qs.append(z - c)
            starts.append(r.at + z + 1)
            c = z + 1 + param
        if c > r.bits.size - r.at:
            raise ValueError("Sparse weight stream truncated in the Golomb-Rice runs")
        low = np.zeros(n, dtype=np.int64)
        if param:
            idx = np.asarray(starts)[:, None] + np.arange(param)
            low = (r.bits[idx].astype(np.int64) << np.arange(param - 1, -1, -1)).sum(axis=1)
        r.at += c
        runs = (np.asarray(qs, dtype=np.int64) << param) | low
        return np.cumsum(runs + 1) - 1
    esc = (1 << param) - 1
    most = min((r.bits.size - r.at) // param, n + numel // esc + 1)
    start = r.at
    f = r.fields(most, param, "relative indices")
    weights = np.flatnonzero(f != esc)
    if weights.size < n:
        raise ValueError("Sparse weight stream truncated in the relative indices")
    used = int(weights[n - 1]) + 1
    r.at = start + used * param
    f = f[:used]
    step = np.where(f == esc, esc, f + 1)
    return (np.cumsum(step) - 1)[f != esc]


def _decode_layer(r: _Reader, shape: Sequence[int], name: str) -> np.ndarray:
    numel = int(np.prod(shape, dtype=np.int64))
    n = r.int(nnz_bits(numel), f"{name}: nnz")
    out = np.zeros(numel, dtype=np.int64)
    if n > numel:
        raise ValueError(f"Sparse weight stream: layer {name} has {n} nonzeros among {numel} "
                         "weights")
    if n:
        ci = r.int(CODE_BITS, f"{name}: code")
        if ci >= len(CODES):
            raise ValueError(f"Sparse weight stream: layer {name} has position code {ci}; "
                             f"allowed 0..{len(CODES) - 1}")
        code = CODES[ci]
        param = r.int(PARAM_BITS, f"{name}: parameter") + (code == "relative")
        k = r.int(LEVELS_BITS, f"{name}: levels") + 1
        t = r.int(WIDTH_BITS, f"{name}: entry width") + 1
        raw = r.fields(k, t, f"{name}: table")
        table = np.where(raw >= 1 << (t - 1), raw - (1 << t), raw)
        pos = _decode_positions(r, code, param, n, numel)
        if pos.size != n or (pos.size and (pos[-1] >= numel or np.any(np.diff(pos) <= 0))):
            raise ValueError(f"Sparse weight stream: layer {name} has positions outside "
                             f"0..{numel - 1}")
        v = math.ceil(math.log2(k)) if k > 1 else 0
        idx = r.fields(n, v, f"{name}: values")
        if idx.size and idx.max() >= k:
            raise ValueError(f"Sparse weight stream: layer {name} indexes past its {k}-entry "
                             "table")
        out[pos] = table[idx]
    return out.reshape(tuple(shape))


# --- the stream ------------------------------------------------------------------------------


def encode(layers: Mapping[str, np.ndarray]) -> tuple[bytes, int, dict[str, LayerCode]]:
    """Encode integer weights per layer (in the mapping's order).

    Returns
    -------
    (bytes, int, dict)
        the stream zero-padded to whole bytes, its length in bits, and each layer's
        :class:`LayerCode`.
    """
    parts, codes = [], {}
    for name, values in layers.items():
        bits, codes[name] = encode_layer(values)
        parts.append(bits)
    bits = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    return np.packbits(bits).tobytes(), int(bits.size), codes


def decode(data: bytes, nbits: int, shapes: Mapping[str, Sequence[int]]
           ) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode`: ``name -> int64 weights`` of the given shapes, in order.

    Raises
    ------
    ValueError
        a stream that is truncated, malformed, longer than ``nbits`` or padded with ones.
    """
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if not 0 <= bits.size - nbits < 8:
        raise ValueError(f"Sparse weight stream of {len(data)} bytes cannot hold exactly "
                         f"{nbits} bits")
    if bits[nbits:].any():
        raise ValueError("Sparse weight stream padding is not zero")
    r = _Reader(bits[:nbits])
    out = {name: _decode_layer(r, shape, name) for name, shape in shapes.items()}
    if r.at != nbits:
        raise ValueError(f"Sparse weight stream has {nbits - r.at} bits after its last layer")
    return out
