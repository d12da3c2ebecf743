"""Cycle model: the cycles each layer takes on an hwq core, per PE type.

The core (``hwq.rtl``) runs every conv2d and linear layer as one loop over output positions;
at each position it streams the layer's *micro-ops* through the ``lanes x simd`` array, one
per cycle, with no stall (the pipeline never back-pressures; see ``hwq.rtl.core``). A layer
with ``groups = ceil(C_out / lanes)`` groups of output channels and, per group, the input
*tiles* of ``simd`` inputs (one per kernel tap and channel tile ``ct``,
``k_tiles = KH * KW * ceil(C_in / simd)``; a linear layer after a flatten of ``(C, H, W)``
has ``H * W * ceil(C / simd)``) costs::

    cycles = positions * sum_g max(steps(g), min_group) + matmul_overhead + min_group - 1

``steps(g)``, the micro-ops of group ``g``:

* ``shift_add``, ``multiply``: one per tile that is not all zero (all-zero tiles skipped);
* ``bit_serial``: per tile, one per *non-zero bit-plane* of its ``b``-bit two's complement
  codes, ``b`` the narrowest width holding the tile's values (so ``<= b`` cycles; a tile of
  narrower weights, or one with no negative weight, costs fewer cycles); all-zero tiles cost 0.

``min_group = max(1, lanes // simd)``: a group is at least one micro-op (a group of all-zero
weights still produces its bias-only outputs), and at least the ``lanes / simd`` cycles its
write-back takes when ``lanes > simd``. A max pool reads each of its ``KH * KW`` window taps
per output word (a tap in the padding takes its cycle unread)::

    cycles = out_positions * ceil(C / simd) * KH * KW + pool_overhead

A max pool fused into the write-back of the matmul before it (a core with ``pool_words``,
:func:`hwq.layout.compiler.compile`) costs nothing of its own: the matmul's ``positions``
are then the conv positions of the pool windows (``pooled positions * KH * KW``, fewer
than the conv's own when some lie in no window), and the descriptor takes
``FUSED_WRITE_STAGES`` (1) cycle more: the write-back registers the running maximum before
the activation memory.

Flatten costs nothing: the layout compiler folds it into the next linear layer's weights.
A run adds ``run_overhead`` cycles (start and done). The overhead constants are the RTL's
pipeline depth and control states; :data:`OVERHEADS` holds them (:func:`core_overheads`
for a core with K packing: one activation fetch stage more), and the tests assert that
the simulated core's per-layer cycle counters equal this model exactly.

K packing (``CoreConfig.pack``, :mod:`hwq.layout.kpack`): a micro-op may carry the
partial last channel tiles of two taps; ``steps(g)`` then counts the packed micro-ops
(the merged tile is one tile: one micro-op per non-zero term, bit_serial one per non-zero
bit-plane of the merged tile).

Depthwise mode (``CoreConfig.depthwise``, :mod:`hwq.layout.dwmode`): one descriptor per
channel tile, :func:`depthwise_cycles` each (a row's first position runs its own program).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwq.golden._checks import check_int, signed_bits_for
from hwq.hardware import (
    ACCUMULATE_STAGES,
    ACT_FETCH_STAGES,
    DOT_STAGES,
    MAX_STAGES,
    PACK_STAGES,
    PE_TYPES,
    REQUANT_STAGES,
    WEIGHT_FETCH_STAGES,
)


@dataclass(frozen=True)
class Overheads:
    """Fixed costs of the core's control, in cycles (set by the RTL).

    ``matmul`` and ``pool``: per layer (descriptor fetch, pipeline fill and drain);
    ``run``: per start (start to first descriptor, done flag).
    """

    matmul: int = 0
    pool: int = 0
    run: int = 0


#: Cycles of ``hwq.rtl.core.Core``'s sequencer per layer: the descriptor read and the
#: address generator's start.
_LAYER_START = 1 + 1

#: The constants of ``hwq.rtl.core.Core``, from the pipeline depths of :mod:`hwq.hardware`:
#: matmul = layer start 2 + weight fetch 2 + act fetch 3 + dot 5 + accumulate 1 + requant 11
#: = 24; pool = 2 + weight fetch 2 + act fetch 3 + max 1 = 8; the write is in the last cycle.
OVERHEADS = Overheads(
    matmul=_LAYER_START + WEIGHT_FETCH_STAGES + ACT_FETCH_STAGES + DOT_STAGES
    + ACCUMULATE_STAGES + REQUANT_STAGES,
    pool=_LAYER_START + WEIGHT_FETCH_STAGES + ACT_FETCH_STAGES + MAX_STAGES,
    run=0,
)


def core_overheads(pack: bool = False) -> Overheads:
    """:data:`OVERHEADS` of a core with or without K packing (``CoreConfig.pack``): packing
    adds ``PACK_STAGES`` (1) activation fetch stage, so one cycle to every matmul and pool.

    >>> core_overheads(True).matmul - OVERHEADS.matmul, core_overheads(True).pool - OVERHEADS.pool
    (1, 1)
    """
    if not pack:
        return OVERHEADS
    return Overheads(matmul=OVERHEADS.matmul + PACK_STAGES, pool=OVERHEADS.pool + PACK_STAGES,
                     run=OVERHEADS.run)


def min_group_steps(lanes: int, simd: int) -> int:
    """Fewest micro-ops per group: ``max(1, lanes // simd)`` (write-back of wide groups)."""
    return max(1, lanes // simd)


def weight_tiles(w: np.ndarray, lanes: int, simd: int) -> np.ndarray:
    """Weights ``(C_out, C_in, KH, KW)`` as tiles ``(groups, KH, KW, ct, lanes, simd)``.

    Output channels are padded to a multiple of ``lanes`` and input channels to a multiple
    of ``simd`` with zeros. The tiles are in the order the core walks them.
    """
    c_out, c_in, kh, kw = w.shape
    groups, cts = math.ceil(c_out / lanes), math.ceil(c_in / simd)
    pad = np.zeros((groups * lanes, cts * simd, kh, kw), dtype=np.int64)
    pad[:c_out, :c_in] = w
    return pad.reshape(groups, lanes, cts, simd, kh, kw).transpose(0, 4, 5, 2, 1, 3)


def tile_planes(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bit width and non-zero bit-planes of each ``(lanes, simd)`` tile (bit_serial).

    Returns ``(bits, planes)``: ``bits[...]`` the narrowest two's complement width holding
    the tile (0 for an all-zero tile), ``planes[..., i]`` whether plane ``i`` (0..7) of the
    ``bits``-bit codes has a one.

    >>> t = np.array([[[[3, -1]]], [[[0, 0]]], [[[4, 2]]]])   # three 1x2 tiles
    >>> bits, planes = tile_planes(t)
    >>> bits.ravel().tolist(), planes.sum(axis=-1).ravel().tolist()
    ([3, 0, 4], [3, 0, 2])
    """
    t = np.asarray(tiles, dtype=np.int64)
    lo, hi = t.min(axis=(-2, -1)), t.max(axis=(-2, -1))
    bits = np.where((lo == 0) & (hi == 0), 0, signed_bits_for(lo, hi))
    codes = t & ((1 << np.maximum(bits, 1)) - 1)[..., None, None]
    planes = np.stack([((codes >> i) & 1).any(axis=(-2, -1)) for i in range(8)], axis=-1)
    return bits, planes & (np.arange(8) < bits[..., None])


def group_steps(pe: str, tiles: np.ndarray) -> np.ndarray:
    """Micro-ops of each group (before the ``min_group`` floor), shape ``(groups,)``."""
    if pe not in PE_TYPES:
        raise ValueError(f"PE type must be one of {', '.join(PE_TYPES)}, not {pe!r}")
    g = tiles.shape[0]
    if pe == "bit_serial":
        return tile_planes(tiles)[1].reshape(g, -1).sum(axis=1)
    return (tiles != 0).any(axis=(-2, -1)).reshape(g, -1).sum(axis=1)


def matmul_cycles(*, positions: int, steps: np.ndarray | list[int], lanes: int, simd: int,
                  overheads: Overheads = OVERHEADS) -> int:
    """Cycles of a conv2d or linear layer from its per-group micro-op counts.

    >>> matmul_cycles(positions=16, steps=[9, 0, 4], lanes=8, simd=8,
    ...               overheads=Overheads(matmul=5))
    229
    """
    positions = check_int(positions, "Output positions", 1, 1 << 40)
    floor = min_group_steps(lanes, simd)
    w = np.maximum(np.asarray(steps, dtype=np.int64), floor)
    # the write-back of the layer's last group takes `floor` cycles
    return positions * int(w.sum()) + overheads.matmul + floor - 1


def depthwise_cycles(*, out_h: int, out_w: int, row_steps: int, steps: int,
                     overheads: Overheads = OVERHEADS) -> int:
    """Cycles of one channel tile of a depthwise conv in the array's depthwise mode
    (:mod:`hwq.layout.dwmode`): ``row_steps`` micro-ops at the first position of each
    output row, ``steps`` at the others, one group (``lanes == simd``)::

        cycles = out_h * (row_steps + (out_w - 1) * steps) + matmul_overhead

    >>> depthwise_cycles(out_h=28, out_w=28, row_steps=5, steps=2, overheads=Overheads())
    1652
    """
    out_h = check_int(out_h, "Output rows", 1, 1 << 30)
    out_w = check_int(out_w, "Output columns", 1, 1 << 30)
    row_steps = check_int(row_steps, "Micro-ops of a row's first position", 1, 1 << 30)
    steps = check_int(steps, "Micro-ops of a position", 1, 1 << 30)
    return out_h * (row_steps + (out_w - 1) * steps) + overheads.matmul


def maxpool_cycles(*, channels: int, out_positions: int, simd: int, taps: int = 4,
                   overheads: Overheads = OVERHEADS) -> int:
    """Cycles of a max pool: one cycle per window tap (``KH * KW``, taps in the padding
    included) of each output word, ``ceil(C/S)`` words per position.

    >>> maxpool_cycles(channels=20, out_positions=4, simd=8, overheads=Overheads())
    48
    >>> maxpool_cycles(channels=8, out_positions=4, simd=8, taps=9, overheads=Overheads())
    36
    """
    words = math.ceil(check_int(channels, "Channels", 1, 1 << 30) / simd)
    taps = check_int(taps, "Pool window taps", 1, 1 << 20)
    return out_positions * words * taps + overheads.pool


def flatten_cycles() -> int:
    """Flatten is a relayout the layout compiler folds into the next layer's weights."""
    return 0


def bit_ops(weights: np.ndarray) -> int:
    """One-bits of the weights' codes, each at its narrowest two's complement width.

    >>> bit_ops(np.array([3, -1, 0, 4]))   # 011, 1, -, 0100
    4
    """
    w = np.asarray(weights, dtype=np.int64).ravel()
    w = w[w != 0]
    width = signed_bits_for(w, w)
    codes = (w & ((np.int64(1) << width) - 1)).astype(np.uint64)
    return int(np.bitwise_count(codes).sum())
