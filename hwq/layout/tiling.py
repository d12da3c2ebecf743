"""Weights in external memory: layers cut into tiles of output-channel groups, the external
image, and the loads that fill the on-chip weight buffer while the array works.

With external weights the core's weight memory is two buffers of ``weight_depth // 2``
words. Every matmul layer is cut into *tiles*: runs of whole output-channel groups (in
units of ``max(1, simd // lanes)`` groups, so that a tile writes whole activation words)
whose micro-ops fit one buffer, taken greedily in order. Tile ``k`` lives in buffer
``k % 2`` and gets a descriptor of its own: the layer's descriptor with the tile's weight
range, parameter base, output base and ``out_lim``; it waits until its load is done.
The load of tile ``k`` is started by the descriptor before tile ``k``'s, so it runs while
that descriptor works (on the other buffer, or on no weights at all); if tile ``k`` is the
first descriptor, a load-only descriptor (``nop``) goes before it. Tile ``k`` overwrites
the buffer of tile ``k - 2``, whose descriptor has finished by then.

The external image holds every tile's micro-ops in descriptor order, each word zero-padded
to whole ``m_axi`` beats (:mod:`hwq.layout.words`); one inference reads it once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwq.config import CoreConfig
from hwq.golden import cycles as cyc
from hwq.hardware import FUSED_WRITE_STAGES, LOAD_CHECK_STAGES, LOAD_DESCRIPTOR_CYCLES
from hwq.layout.words import KIND_MATMUL, CoreWords

__all__ = ["WEIGHT_PLACES", "external_needs", "group_tiles", "tile_descriptors"]

#: Where a program's weights go: ``auto`` (on chip if they fit, else external when the core
#: has the ``m_axi`` port), ``onchip``, ``external``.
WEIGHT_PLACES = ("auto", "onchip", "external")


def group_tiles(group_words: list[int] | np.ndarray, align: int,
                capacity: int) -> list[tuple[int, int]]:
    """Runs ``(g0, g1)`` of groups, in units of ``align`` groups, each with at most
    ``capacity`` words, greedily.

    >>> group_tiles([3, 3, 3, 3, 2], 1, 7)
    [(0, 2), (2, 4), (4, 5)]

    Raises
    ------
    ValueError
        a unit of ``align`` groups needs more than ``capacity`` words.
    """
    words = np.asarray(group_words, dtype=np.int64)
    n = len(words)
    tiles: list[tuple[int, int]] = []
    g0 = 0
    size = 0
    for u0 in range(0, n, align):
        unit = int(words[u0:u0 + align].sum())
        if unit > capacity:
            raise ValueError(f"{min(align, n - u0)} output-channel group(s) need {unit} weight "
                             f"words, more than one buffer of {capacity} (half the weight "
                             f"memory): weight_depth={_fit(2 * unit)} would fit")
        if size + unit > capacity:
            tiles.append((g0, u0))
            g0, size = u0, 0
        size += unit
    if n:
        tiles.append((g0, n))
    return tiles


def external_needs(layer_steps: list[np.ndarray | None], config: CoreConfig,
                   weight_depth: int | None = None) -> dict[str, int]:
    """``weight_depth`` and ``desc_depth`` a program with external weights needs.

    ``layer_steps``: per layer, the micro-ops of each group (the ``min_group`` floor
    included), None for a pool. Without ``weight_depth``, the buffers are the smallest that
    hold the largest unit of groups, and at least 512 words each (a block RAM of 512 words
    costs what a shallower one does).
    """
    align = max(1, config.simd // config.lanes)
    units = [int(np.add.reduceat(st, np.arange(0, len(st), align)).max())
             for st in layer_steps if st is not None and len(st)]
    if weight_depth is None:
        weight_depth = 2 * max(512, _fit(max(units, default=1)))
    descs = 0
    for st in layer_steps:
        descs += 1 if st is None else len(group_tiles(st, align, weight_depth // 2))
    # a load-only descriptor goes first when the first layer is a matmul
    first_matmul = bool(layer_steps) and layer_steps[0] is not None
    return {"weight_depth": weight_depth, "desc_depth": descs + first_matmul}


def _fit(words: int) -> int:
    return max(16, 1 << max(0, words - 1).bit_length())


def tile_descriptors(descs: list[dict[str, Any]], infos: list[dict[str, Any]],
                     images: list[np.ndarray | None], config: CoreConfig,
                     words: CoreWords) -> tuple[list[dict], list[dict], np.ndarray]:
    """The descriptors, layer facts and external image of a program with external weights.

    Parameters
    ----------
    descs, infos : list of dict
        one per layer, as :func:`hwq.layout.compiler.compile` builds them (matmul weight
        ranges relative to the layer's own image).
    images : list of array or None
        each layer's micro-op image (None for a pool); with activations in row tiles
        (:mod:`hwq.layout.acttiles`) one entry per descriptor: a row tile's descriptor
        has its layer's image (its weight tiles are stored once and loaded for every row
        tile), and the row tiles' own loads and stores, None, pass unchanged.
    """
    p, s = config.lanes, config.simd
    align = max(1, s // p)
    capacity = config.weight_depth // 2
    floor = cyc.min_group_steps(p, s)
    out_d: list[dict[str, Any]] = []
    out_i: list[dict[str, Any]] = []
    ext: list[np.ndarray] = []
    src = 0
    loads: list[tuple[int, int, int, int]] = []   # (descriptor, src, words, buffer base)
    stored: dict[tuple[int, int, int], int] = {}   # (image, first group, end) -> src
    held: tuple[int, int, int] | None = None      # the weight tile of the last descriptor
    buf = capacity                                 # ... and its buffer
    for d, info, img in zip(descs, infos, images, strict=True):
        if img is None and "rows" in info:   # a row tile's pool, load or store: as it is
            out_d.append(d)
            out_i.append(info)
            continue
        if img is None:
            out_d.append({**d, "out_lim": d["out_ct"]})
            out_i.append({**info, "cycles": info["cycles"] + LOAD_CHECK_STAGES})
            continue
        steps = np.maximum(np.asarray(info["steps"], dtype=np.int64), floor)
        starts = np.concatenate([[0], np.cumsum(steps)])
        for g0, g1 in group_tiles(steps, align, capacity):
            n = int(starts[g1] - starts[g0])
            tile_key = (id(img), g0, g1)
            again = tile_key == held                 # the next row tile of a one-tile layer: kept
            if not again:
                buf = capacity - buf            # the other buffer
            ct0 = g0 * p // s
            lim = min(int(d["out_ct"]) - ct0, -(-(g1 - g0) * p // s))
            out_d.append({**d, "w_base": buf, "w_last": buf + n - 1,
                          "p_base": int(d["p_base"]) + g0, "out_base": int(d["out_base"]) + ct0,
                          "out_lim": lim, "wait": int(d.get("wait", 0) or not again),
                          "last": 0})
            tile_info = {**info, "tile": [g0, g1], "steps": info["steps"][g0:g1],
                         "groups": g1 - g0, "w_base": buf, "w_words": n,
                         "p_base": int(info["p_base"]) + g0,
                         "wait": int(info.get("wait", 0) or not again),
                         "cycles": cyc.matmul_cycles(positions=info["positions"],
                                                     steps=steps[g0:g1], lanes=p, simd=s,
                                                     overheads=cyc.core_overheads(
                                                         config.pack))
                         + LOAD_CHECK_STAGES
                         + (FUSED_WRITE_STAGES if "fused" in info else 0)}
            for key in ("tile_mask", "tile_bits"):
                if key in info:
                    tile_info[key] = info[key][g0:g1]
            out_i.append(tile_info)
            held = tile_key
            if again:
                continue
            if tile_key not in stored:          # a row tile's weights: stored once
                stored[tile_key] = src
                chunk = np.zeros((n, words.ext_chunks), np.uint32)
                chunk[:, :img.shape[1]] = img[starts[g0]:starts[g1]]
                ext.append(chunk)
                src += n
            loads.append((len(out_d) - 1, stored[tile_key], n, buf))
    # the load of each tile goes to the descriptor before the tile's (a load-only one of its
    # own first when that is the program's start or a row tile's load or store)
    for j, lsrc, n, buf in reversed(loads):
        before = out_d[j - 1] if j else None
        if before is None or before.get("ld_act") or before.get("st_len"):
            out_d.insert(j, {"kind": KIND_MATMUL, "nop": 1})
            out_i.insert(j, {"name": f"load {out_i[j]['name']}", "kind": "load", "op": "load",
                             "cycles": LOAD_DESCRIPTOR_CYCLES})
            j += 1
        out_d[j - 1].update(ld_len=n, ld_src=lsrc, ld_dst=buf)
        out_i[j - 1].update(ld_words=n, ld_src=lsrc)
    out_d[-1]["last"] = 1
    image = np.concatenate(ext) if ext else np.zeros((0, words.ext_chunks), np.uint32)
    return out_d, out_i, image
