"""Cycle model: the cycles each op takes on a core, per PE type (first version).

Dataflow it models (DESIGN.md section 5): the array computes ``lanes`` (P) output
channels of one output position at a time; each cycle it consumes one *tile* of
``simd`` (S) inputs for each of the P lanes. For one position and one group of P
channels, a layer walks its ``k_tiles`` input tiles:

* conv2d: ``k_tiles = k * k * ceil(C_in / S)`` (channels are padded per kernel tap),
* linear: ``k_tiles = ceil(K / S)``.

A tile costs 1 cycle on the ``multiply`` and ``shift_add`` arrays and ``b`` cycles on
the ``bit_serial`` array, ``b`` the bit width of that tile (one bit-plane per cycle; a
tile's width is the widest of its P channels). An all-zero tile that the layout marks
as skipped costs 0. Each (position, group) adds ``group_overhead`` cycles (pipeline
fill and requant/write-back) and each layer ``layer_overhead`` cycles (descriptor
fetch, setup). Maxpool 2x2 reads four words per output word (``ceil(C / S)`` words per
position) and flatten is a relayout that costs nothing.

The RTL fixes the two overhead constants; the tests assert that the simulated core's
cycle counters equal this model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwq.golden._checks import check_int


@dataclass(frozen=True)
class Overheads:
    """Fixed costs of the core's control (set by the RTL)."""

    group: int = 0
    layer: int = 0


def matmul_tiles(out_channels: int, k_tiles: int, lanes: int) -> tuple[int, int]:
    """``(groups, k_tiles)``: channel groups of ``lanes``, and input tiles per group."""
    return math.ceil(out_channels / lanes), k_tiles


def conv2d_k_tiles(in_channels: int, kernel: int, simd: int) -> int:
    return kernel * kernel * math.ceil(in_channels / simd)


def linear_k_tiles(features: int, simd: int) -> int:
    return math.ceil(features / simd)


def matmul_cycles(
    *,
    pe: str,
    positions: int,
    groups: int,
    k_tiles: int,
    tile_bits: np.ndarray | int | None = None,
    tile_skipped: np.ndarray | None = None,
    overheads: Overheads = Overheads(),
) -> int:
    """Cycles of a conv2d or linear layer.

    Parameters
    ----------
    pe : {"shift_add", "bit_serial", "multiply"}
    positions : int
        output positions per inference (``H_out * W_out``; 1 for linear).
    groups, k_tiles : int
        from :func:`matmul_tiles`.
    tile_bits : int or int array (groups, k_tiles), optional
        bit width of each tile (bit_serial only; required there).
    tile_skipped : bool array (groups, k_tiles), optional
        tiles the layout marks all-zero and skips.
    """
    positions = check_int(positions, "Output positions", 1, 1 << 40)
    groups = check_int(groups, "Channel groups", 1, 1 << 30)
    k_tiles = check_int(k_tiles, "Input tiles", 1, 1 << 30)
    if pe == "bit_serial":
        if tile_bits is None:
            raise ValueError("bit_serial cycle model needs tile_bits (bits of each tile)")
        cost = np.broadcast_to(np.asarray(tile_bits, dtype=np.int64), (groups, k_tiles))
    elif pe in ("shift_add", "multiply"):
        cost = np.ones((groups, k_tiles), dtype=np.int64)
    else:
        raise ValueError(f"PE type must be one of shift_add, bit_serial, multiply, not {pe!r}")
    if tile_skipped is not None:
        skipped = np.asarray(tile_skipped, dtype=bool)
        if skipped.shape != (groups, k_tiles):
            raise ValueError(
                f"tile_skipped must have shape ({groups}, {k_tiles}), not {skipped.shape}"
            )
        cost = np.where(skipped, 0, cost)
    per_position = int(cost.sum()) + groups * overheads.group
    return positions * per_position + overheads.layer


def maxpool_cycles(*, channels: int, out_positions: int, simd: int,
                   overheads: Overheads = Overheads()) -> int:
    """Cycles of a 2x2/2 maxpool: four reads per output word, ``ceil(C/S)`` words per position."""
    words = math.ceil(check_int(channels, "Channels", 1, 1 << 30) / simd)
    return out_positions * words * (4 + overheads.group) + overheads.layer


def flatten_cycles() -> int:
    """Flatten is a relayout the layout compiler folds into the next layer's weights."""
    return 0
