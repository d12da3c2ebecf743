"""Activation tiles: tensors that live in external memory, layers run in tiles of output rows.

When the activation memory cannot hold every live tensor, a core with the ``m_axi`` port
keeps some tensors in external memory (their *external regions*, in activation words laid
out as on chip: position-major, ``ceil(C / simd)`` words per position) and runs each layer
that reads or writes one in tiles of whole output rows:

1. a ``nop`` descriptor loads the input rows the tile needs (its rows, the kernel's halo
   above and below, clamped to the tensor) into an input staging buffer (``ld_act``);
2. the layer's own descriptor runs on those rows: ``in_h`` the rows staged, ``pad_t`` the
   padding rows above them that the tile still sees (the tensor's top padding in the first
   tile, 0 after), ``out_h`` the tile's rows, ``wait`` for the load;
3. a ``nop`` descriptor stores the tile's output rows from an output staging buffer to the
   external region (``st_len``), and ends when the memory has acknowledged them.

A tensor read from on-chip memory needs no load (the tile reads its rows in place), and an
on-chip output gets the tile's rows written in place. A tile computes exactly the output
rows the whole layer would (the staged rows are the same words, the padding test sees the
same padding), so outputs stay bit-exact. Transfers do not overlap the array's work in this
version: each costs its time (:func:`hwq.golden.memory.load_cycles`, ``store_cycles``). With
external weights too, :func:`hwq.layout.tiling.tile_descriptors` then cuts each row tile's
descriptor into weight tiles.

Which tensors: ``"external"`` places every tensor that can go out (written by one layer of
one input, or the network input that the host writes there, and read only by layers of one
input tensor; the network output too, which the host then reads from there); ``"auto"``
places the largest of them, one at a time, until the rest fits. The rows per tile are the
most whose staging buffers fit beside the tensors on chip at that layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hwq.config import CoreConfig
from hwq.golden import cycles as cyc
from hwq.golden.memory import store_cycles
from hwq.hardware import LOAD_CHECK_STAGES, LOAD_DESCRIPTOR_CYCLES
from hwq.ir import INPUT, Matmul
from hwq.layout.alloc import Interval, allocate

__all__ = ["ACT_PLACES", "RowTiles", "TilePlan", "descriptor_count", "plan_tiles", "spillable",
           "store_descriptor_cycles", "tile_layer"]

#: Where a program's intermediate tensors go: ``auto`` (on chip if they fit, else the
#: largest in external memory until the rest fits, on a core with the ``m_axi`` port),
#: ``onchip``, ``external`` (every tensor that can).
ACT_PLACES = ("auto", "onchip", "external")


@dataclass(frozen=True)
class RowTiles:
    """How one layer runs in tiles: ``rows`` output rows per tile, its staging buffers."""

    rows: int
    stage_in: int          # words of the input staging buffer (0: the input is on chip)
    stage_out: int         # words of the output staging buffer (0: the output is on chip)


@dataclass
class TilePlan:
    """The placement of a program's tensors and its tiled layers."""

    external: dict[str, int]          # tensor -> first external activation word
    ext_words: int                    # external activation words in all
    tiles: dict[int, RowTiles]        # layer index -> its tiles
    bases: dict[str, int]             # activation memory bases (tensors and staging buffers)
    peak: int


def _rows_in(prim: Any, rows: int, height: int) -> int:
    """Input rows that ``rows`` consecutive output rows read (at most ``height``)."""
    (kh, _), (sh, _) = prim.kernel, prim.stride
    dh = prim.dilation[0] if isinstance(prim, Matmul) else 1
    return min(height, (rows - 1) * sh + (kh - 1) * dh + 1)


def spillable(layers: list[Any], *, window: bool) -> list[str]:
    """Tensors that may live in external memory: read only by layers of that one input
    tensor, and written by one layer of one input or the host (the network input, unless it
    is stored in im2col order, ``window``). The network output may go too: the host reads it
    back from external memory."""
    readers: dict[str, list[Any]] = {}
    for layer in layers:
        for t in layer.sources:
            readers.setdefault(t, []).append(layer)
    candidates = [] if window else [INPUT]
    candidates += [layer.out for layer in layers if len(layer.sources) == 1]
    return [t for t in candidates if all(r.sources == [t] for r in readers.get(t, []))]


def plan_tiles(layers: list[Any], intervals: list[Interval], words: dict[str, int],
               spill: list[str], config: CoreConfig) -> TilePlan:
    """Rows per tile for every layer that reads or writes a tensor of ``spill``, staging
    buffers beside the on-chip tensors, and the allocation; ``ValueError`` when even one
    output row per tile does not fit."""
    s, depth = config.simd, config.act_depth
    spilled = set(spill)
    external, at = {}, 0
    for t in spill:
        external[t] = at
        at += words[t]
    kept = [iv for iv in intervals if iv.name not in spilled]
    touched = [i for i, layer in enumerate(layers)
               if layer.out in spilled or any(t in spilled for t in layer.sources)]
    slack = 0
    for _ in range(8):
        tiles: dict[int, RowTiles] = {}
        staging: list[Interval] = []
        for i in touched:
            layer = layers[i]
            c_in, h, w = layer.in_chw
            c_out, oh, ow = layer.out_chw
            live = sum(iv.words for iv in kept if iv.start <= i <= iv.end)
            budget = depth - live - slack
            ct_in, ct_out = math.ceil(c_in / s), math.ceil(c_out / s)
            reads = layer.sources[0] in spilled
            writes = layer.out in spilled
            chosen = None
            for rows in range(oh, 0, -1):
                need_in = _rows_in(layer.prim, rows, h) * w * ct_in if reads else 0
                need_out = rows * ow * ct_out if writes else 0
                if need_in + need_out <= budget:
                    chosen = RowTiles(rows, need_in, need_out)
                    break
            if chosen is None:
                one_in = _rows_in(layer.prim, 1, h) * w * ct_in if reads else 0
                raise ValueError(
                    f"{layer.op.name}: one output row per tile needs "
                    f"{one_in + (ow * ct_out if writes else 0)} activation words of staging "
                    f"beside the {live} words on chip at that layer, and the activation "
                    f"memory has {depth} (raise act_depth)")
            tiles[i] = chosen
            if chosen.stage_in:
                staging.append(Interval(f"@in{i}", chosen.stage_in, i, i))
            if chosen.stage_out:
                staging.append(Interval(f"@out{i}", chosen.stage_out, i, i))
        bases, peak = allocate(kept + staging)
        if peak <= depth:
            return TilePlan(external=external, ext_words=at, tiles=tiles, bases=bases,
                            peak=peak)
        slack += peak - depth        # first-fit left holes: shrink the budgets and retry
    raise ValueError(f"The activation memory of {depth} words cannot hold the tiles' staging "
                     f"buffers beside the tensors on chip ({peak} words needed; raise "
                     "act_depth)")


def store_descriptor_cycles(config: CoreConfig, dst: int, words: int, act_beats: int) -> int:
    """Model cycles of a store descriptor of ``words`` activation words to external word
    ``dst``: its read and check, and the store at latency 1 (:func:`hwq.golden.memory.schedule`
    adds what a slower memory costs)."""
    return LOAD_DESCRIPTOR_CYCLES + store_cycles(dst * act_beats, words * act_beats,
                                                 burst=config.ext_burst,
                                                 outstanding=config.ext_outstanding, latency=1)


def descriptor_count(layers: list[Any], plan: TilePlan) -> int:
    """Descriptors of the program: one per untiled layer; per tile of a tiled layer its
    own, plus a load (input in external memory) and a store (output there)."""
    total = 0
    for i, layer in enumerate(layers):
        rt = plan.tiles.get(i)
        if rt is None:
            total += 1
            continue
        per = 1 + int(layer.sources[0] in plan.external) + int(layer.out in plan.external)
        total += math.ceil(layer.out_chw[1] / rt.rows) * per
    return total


def tile_layer(i: int, layer: Any, d: dict[str, Any], info: dict[str, Any], plan: TilePlan,
               config: CoreConfig, src_base: int | None, dst_base: int | None,
               act_beats: int) -> tuple[list[dict], list[dict]]:
    """The descriptors and facts of layer ``i`` run in row tiles (loads and stores
    included); ``d``/``info`` are the layer's whole descriptor and facts, ``src_base`` /
    ``dst_base`` its on-chip input / output (None when in external memory). External
    activation words count from the first region (the compiler moves them after the weight
    image); a store's cycles are for that place until it does."""
    s = config.simd
    rt = plan.tiles[i]
    c_in, h, w = layer.in_chw
    c_out, oh, ow = layer.out_chw
    ct_in, ct_out = math.ceil(c_in / s), math.ceil(c_out / s)
    prim = layer.prim
    (kh, _), (sh, _) = prim.kernel, prim.stride
    dh = prim.dilation[0] if isinstance(prim, Matmul) else 1
    pt, pl = int(d["pad_t"]), int(d["pad_l"])
    name = info["name"]
    in_ext = plan.external.get(layer.sources[0])
    out_ext = plan.external.get(layer.out)
    descs: list[dict] = []
    infos: list[dict] = []
    for r0 in range(0, oh, rt.rows):
        r1 = min(oh, r0 + rt.rows)
        top = r0 * sh - pt
        ra, rb = max(0, top), min(h - 1, (r1 - 1) * sh - pt + (kh - 1) * dh)
        tile = {"rows": [r0, r1]}
        if in_ext is not None:
            n = (rb - ra + 1) * w * ct_in
            src = in_ext + ra * w * ct_in
            buf = plan.bases[f"@in{i}"]
            descs.append({"kind": d["kind"], "nop": 1, "ld_act": 1, "ld_len": n,
                          "ld_src": src, "ld_dst": buf})
            infos.append({"name": f"load {name}", "kind": "load", "op": "load",
                          "cycles": LOAD_DESCRIPTOR_CYCLES, "ld_words": n, "ld_src": src,
                          "ld_act": 1, **tile})
            in_base = buf
        else:
            in_base = src_base + ra * w * ct_in
        pad = ra - top
        out_base = plan.bases[f"@out{i}"] if out_ext is not None else dst_base + r0 * ow * ct_out
        positions = (r1 - r0) * ow
        descs.append({**d, "in_h": rb - ra + 1, "pad_t": pad, "out_h": r1 - r0,
                      "pos0": in_base - (pad * w + pl) * ct_in, "out_base": out_base,
                      "out_lim": d["out_ct"], "wait": int(in_ext is not None), "last": 0})
        if info["kind"] == "pool":
            cycles = cyc.maxpool_cycles(channels=c_in, out_positions=positions, simd=s,
                                        taps=prim.kernel[0] * prim.kernel[1],
                                        overheads=cyc.core_overheads(config.pack))
        else:
            cycles = cyc.matmul_cycles(positions=positions, steps=info["steps"],
                                       lanes=config.lanes, simd=s,
                                       overheads=cyc.core_overheads(config.pack))
        infos.append({**info, "positions": positions, "cycles": cycles + LOAD_CHECK_STAGES,
                      "wait": int(in_ext is not None), **tile})
        if out_ext is not None:
            n = positions * ct_out
            dst = out_ext + r0 * ow * ct_out
            descs.append({"kind": d["kind"], "nop": 1, "st_len": n, "st_src": out_base,
                          "st_dst": dst})
            infos.append({"name": f"store {name}", "kind": "store", "op": "store",
                          "cycles": store_descriptor_cycles(config, dst, n, act_beats),
                          "st_words": n, "st_dst": dst, **tile})
    return descs, infos
