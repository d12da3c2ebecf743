"""Weights of a :class:`~hwq.ir.Matmul` as the MAC array's tiles and micro-op terms.

A Matmul's dense weight ``(C_out, C_in, KH, KW)`` reads the channel concatenation of its
sources; each source's channels are padded to whole activation words (``simd``) on their
own, then the weight is cut into ``lanes x simd`` tiles, one per (output group, kernel tap,
channel tile) (:func:`hwq.golden.cycles.weight_tiles`).

A tile becomes one or more *terms*, micro-op payloads whose values sum to the tile, each
encodable by the PE:

* weights with a stored format (:class:`~hwq.ir.WeightSpec`): one term, the format's codes;
* weights an op synthesizes (pool ones, add multipliers; ``spec=None``), chosen here:
  ``shift_add`` one term per signed power-of-two digit (non-adjacent form; a digit above
  the POT range is repeated), ``multiply`` INT codes when every value fits, else a
  codebook of the layer's values when they fit the table, else INT terms that saturate in
  turn, ``bit_serial`` one INT term (8-bit two's complement at most) whose bit-planes are
  the micro-ops.

:func:`matmul_terms` is the one place this is decided: the compiler packs its result and
the cycle model counts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from hwq.config import CoreConfig
from hwq.golden import cycles as cyc
from hwq.golden._checks import signed_range
from hwq.golden.formats import PotFormat
from hwq.ir.lowering import Matmul
from hwq.layout.kpack import pack_pairs, packable

__all__ = ["MatmulTerms", "matmul_terms", "padded_weight"]


@dataclass(frozen=True, eq=False)
class MatmulTerms:
    """The tiles of one Matmul on one core.

    Attributes
    ----------
    terms : int64 array ``(T, G, KH, KW, CT, lanes, simd)``
        term ``i`` of every tile (all-zero where a tile has fewer terms); the micro-ops of a
        tile are its non-zero terms in order (bit_serial: their non-zero bit-planes).
    kind : {"int", "pot", "codebook"}
        how the payloads are encoded.
    table : int64 array or None
        the codebook (multiply PE, ``kind == "codebook"``), ``table[0..]`` the entries.
    source_tiles : list of int
        channel tiles ``ct`` of each source, in source order.
    pairs : int64 array ``(G, KH, KW, CT)`` or None
        K packing (:mod:`hwq.layout.kpack`): the tap whose last channel tile is the second
        word of the micro-ops at each place (-1: none); None when nothing is packed.
    split : int
        the lane where a packed micro-op's second word starts (0: nothing packed).
    """

    terms: np.ndarray
    kind: str
    table: np.ndarray | None
    source_tiles: list[int]
    pairs: np.ndarray | None = None
    split: int = 0

    @property
    def tiles(self) -> np.ndarray:
        """The tiles themselves: the sum of the terms."""
        return self.terms.sum(axis=0)

    def group_steps(self, pe: str) -> np.ndarray:
        """Micro-ops of each output group (before the ``min_group`` floor)."""
        g = self.terms.shape[1]
        if pe == "bit_serial":
            planes = cyc.tile_planes(self.terms)[1]
            return planes.reshape(self.terms.shape[0], g, -1).sum(axis=(0, 2))
        stored = (self.terms != 0).any(axis=(-2, -1))
        return stored.reshape(self.terms.shape[0], g, -1).sum(axis=(0, 2))


def padded_weight(prim: Matmul, channels: list[int], simd: int) -> np.ndarray:
    """The dense weight with each source's channel block padded to whole ``simd`` words."""
    w = prim.weight
    blocks, start = [], 0
    for c in channels:
        block = np.zeros((w.shape[0], math.ceil(c / simd) * simd, *w.shape[2:]), np.int64)
        block[:, :c] = w[:, start:start + c]
        blocks.append(block)
        start += c
    if start != w.shape[1]:
        raise ValueError(f"Matmul weight has {w.shape[1]} input channels, its sources {start}")
    return np.concatenate(blocks, axis=1)


def matmul_terms(prim: Matmul, channels: list[int], config: CoreConfig, name: str
                 ) -> MatmulTerms:
    """Tiles and terms of ``prim`` whose sources have ``channels`` channels each; on a core
    with ``pack``, the partial channel tiles of its taps paired (:mod:`hwq.layout.kpack`).

    Raises
    ------
    ValueError
        naming ``name``: a stored format the PE does not take, or wider than the datapath;
        synthesized weights the PE cannot encode.
    """
    terms = _terms(prim, channels, config, name)
    rem = packable(channels, config.simd) if config.pack else 0
    if not rem:
        return terms
    packed, pairs = pack_pairs(terms.terms, rem, config.pe)
    if (pairs < 0).all():
        return terms
    return replace(terms, terms=packed, pairs=pairs, split=rem)


def _terms(prim: Matmul, channels: list[int], config: CoreConfig, name: str) -> MatmulTerms:
    pe, p, s = config.pe, config.lanes, config.simd
    tiles = cyc.weight_tiles(padded_weight(prim, channels, s), p, s)
    source_tiles = [math.ceil(c / s) for c in channels]
    spec = prim.spec
    if spec is not None:
        kind = spec.kind
        if kind not in config.formats:
            raise ValueError(f"{name}: {kind.upper()} weights do not run on the {pe} PE "
                             f"(it takes {' and '.join(f.upper() for f in config.formats)})")
        if spec.max_bits() > config.weight_bits:
            raise ValueError(f"{name}: {spec.max_bits()}-bit {kind.upper()} weights are wider "
                             f"than the core's {config.weight_bits}-bit datapath")
        if kind == "codebook" and spec.table_bits > config.table_bits:
            raise ValueError(f"{name}: codebook entries of {spec.table_bits} bits are wider "
                             f"than the core's {config.table_bits}-bit tables")
        if pe == "bit_serial":
            kind = "int"                       # codebook values expanded to INT bit-planes
        return MatmulTerms(tiles[None], kind, spec.table if kind == "codebook" else None,
                           source_tiles)
    if pe == "shift_add":
        return MatmulTerms(_pot_terms(tiles, config.weight_bits, name), "pot", None,
                           source_tiles)
    if pe == "bit_serial":
        lo, hi = signed_range(8)
        if tiles.min() < lo or tiles.max() > hi:
            raise ValueError(f"{name}: weights {int(tiles.min())}..{int(tiles.max())} do not "
                             "fit the bit-serial PE's 8 bit-planes")
        return MatmulTerms(tiles[None], "int", None, source_tiles)
    lo, hi = signed_range(config.weight_bits)
    if lo <= tiles.min() and tiles.max() <= hi:
        return MatmulTerms(tiles[None], "int", None, source_tiles)
    values = np.unique(np.concatenate([[0], tiles.ravel()]))
    t_lo, t_hi = signed_range(config.table_bits)
    if values.size <= 1 << config.weight_bits and t_lo <= values[0] and values[-1] <= t_hi:
        return MatmulTerms(tiles[None], "codebook", values, source_tiles)
    terms, rest = [], tiles
    while rest.any():
        term = np.clip(rest, lo, hi)
        terms.append(term)
        rest = rest - term
    return MatmulTerms(np.stack(terms), "int", None, source_tiles)


def _pot_terms(tiles: np.ndarray, weight_bits: int, name: str) -> np.ndarray:
    """Signed power-of-two terms (POT(``weight_bits``) values) summing to ``tiles``."""
    e_max = PotFormat(weight_bits).max_exponent
    v = tiles.copy()
    digits = []                                   # non-adjacent form, LSB first
    while v.any():
        odd = v & 1
        d = np.where(odd == 1, 2 - (v & 3), 0)    # +1 or -1 where v is odd
        digits.append(d)
        v = (v - d) >> 1
    terms = []
    for e, d in enumerate(digits):
        if not d.any():
            continue
        reps = 1 << max(0, e - e_max)             # 2**e as 2**(e - e_max) copies of 2**e_max
        if reps > 256:
            raise ValueError(f"{name}: weight magnitude {1 << e} is too large for "
                             f"POT({weight_bits}) terms")
        terms.extend([d << min(e, e_max)] * reps)
    if not terms:
        terms = [np.zeros_like(tiles)]
    # group the terms of each tile: term i of a tile is its i-th non-zero digit
    stack = np.stack(terms)
    nz = stack != 0
    order = np.argsort(~nz, axis=0, kind="stable")
    packed = np.take_along_axis(stack, order, axis=0)
    count = int(nz.sum(axis=0).max()) or 1
    return packed[:count]
