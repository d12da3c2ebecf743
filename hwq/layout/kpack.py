"""K packing: the partial last channel tiles of two kernel taps in one micro-op.

A matmul over a source of ``C`` channels cuts every kernel tap into ``ceil(C / simd)``
channel tiles; when ``rem = C mod simd`` is not 0, the last tile of each tap fills only
``rem`` of the ``simd`` lanes. On a core with ``pack`` (:attr:`hwq.config.CoreConfig.pack`)
a micro-op reads two activation words, A at ``off`` and B at ``off2``, and multiplies

    a[j] = A[j]            for split == 0 or j < split
    a[j] = B[j - split]    otherwise

(:class:`hwq.rtl.fetch.ActFetch`, :func:`hwq.layout.executor.run_images`). With
``2 * rem <= simd`` the partial tiles of two taps p and q pair up: one micro-op with A =
p's last tile (its channels in lanes ``0..rem-1``), B = q's last tile and ``split = rem``
(q's channels in lanes ``rem..2*rem-1``); its weights are p's tile in lanes ``0..rem-1``
and q's in lanes ``rem..2*rem-1`` of every output lane, 0 in the lanes above (which see
q's padding channels and the channels of the word after them: zero weights make them
harmless).

The rule, per output group: the partial tiles that are not all zero are taken in walk order
(row-major taps) and paired greedily, each with the next one, when the merged tile costs
fewer micro-ops than the two apart: always for stored codes and POT terms (one micro-op
per non-zero term, ``max`` of the two counts against their sum); on ``bit_serial`` the
merged tile's non-zero bit-planes at its own width (:func:`hwq.golden.cycles.tile_planes`)
against the two tiles' planes. A tile without a partner stays an ordinary micro-op.
Groups pair independently. The merged tile sits in p's place of the terms array and q's
place is all zero, so every count of the cycle model holds unchanged.

Not packed: ``rem > simd / 2`` (two partial tiles do not fit one word), matmuls over
several sources (adds), and cores without ``pack``.
"""

from __future__ import annotations

import numpy as np

from hwq.golden import cycles as cyc

__all__ = ["pack_pairs", "packable"]


def packable(channels: list[int], simd: int) -> int:
    """``rem`` (the valid lanes of a tap's last channel tile) when a matmul over sources of
    ``channels`` channels packs pairs of taps, else 0.

    >>> packable([20], 8), packable([3], 8), packable([5], 8), packable([16], 8)
    (4, 3, 0, 0)
    """
    if len(channels) != 1:
        return 0
    rem = channels[0] % simd
    return rem if 0 < 2 * rem <= simd else 0


def _cost(terms: np.ndarray, pe: str) -> np.ndarray:
    """Micro-ops of tiles ``(T, ..., lanes, simd)``: shape ``(...)``."""
    if pe == "bit_serial":
        return cyc.tile_planes(terms)[1].sum(axis=-1).sum(axis=0)
    return (terms != 0).any(axis=(-2, -1)).sum(axis=0)


def pack_pairs(terms: np.ndarray, rem: int, pe: str) -> tuple[np.ndarray, np.ndarray]:
    """Pair the partial last channel tiles of ``terms`` (see the module docstring).

    Parameters
    ----------
    terms : int64 array ``(T, G, KH, KW, CT, lanes, simd)``
        a single-source matmul's terms (:class:`hwq.layout.encode.MatmulTerms`).
    rem : int
        the valid lanes of the last channel tile, ``1 <= 2 * rem <= simd``.
    pe : str
        the PE type (what a micro-op costs).

    Returns
    -------
    (terms, pairs)
        the packed terms (a pair's merged tile in place of its first tile, its second tile
        all zero) and ``pairs`` ``(G, KH, KW, CT)`` int64: the row-major tap ``u * KW + v``
        whose last tile is B of the micro-op at that place, or -1.

    >>> t = np.zeros((1, 1, 1, 3, 1, 1, 4), np.int64)
    >>> t[0, 0, 0, :, 0, 0, 0] = [5, 6, 7]          # three taps of one channel (rem 1)
    >>> out, pairs = pack_pairs(t, 1, "multiply")
    >>> out[0, 0, 0, :, 0, 0].tolist(), pairs[0, 0, :, 0].tolist()
    ([[5, 6, 0, 0], [0, 0, 0, 0], [7, 0, 0, 0]], [1, -1, -1])
    """
    n_terms, g_n, kh, kw, ct_n = terms.shape[:5]
    simd = terms.shape[-1]
    if not 1 <= 2 * rem <= simd:
        raise ValueError(f"Packed tiles must hold 1..{simd // 2} lanes, not {rem!r}")
    if terms[..., ct_n - 1, :, rem:].any():
        raise ValueError(f"The last channel tile has weights past its {rem} lanes")
    out = terms.copy()
    pairs = np.full((g_n, kh, kw, ct_n), -1, np.int64)
    part = terms[:, :, :, :, ct_n - 1].reshape(n_terms, g_n, kh * kw, *terms.shape[-2:])
    cost = _cost(part, pe)                                    # (G, taps)
    for g in range(g_n):
        pending = None
        for tap in np.flatnonzero(cost[g]):
            if pending is None:
                pending = tap
                continue
            merged = part[:, g, pending] + np.roll(part[:, g, tap], rem, axis=-1)
            if _cost(merged, pe) >= cost[g, pending] + cost[g, tap]:
                pending = tap                                  # no gain: p stays alone
                continue
            pu, pv = divmod(int(pending), kw)
            qu, qv = divmod(int(tap), kw)
            out[:, g, pu, pv, ct_n - 1] = merged
            out[:, g, qu, qv, ct_n - 1] = 0
            pairs[g, pu, pv, ct_n - 1] = tap
            pending = None
    return out, pairs
