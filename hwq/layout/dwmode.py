"""Depthwise mode of the MAC array: channels to lanes, kernel taps to SIMD.

On today's mapping a depthwise conv (``groups == C_in == C_out``) uses only the diagonal of
the ``lanes x simd`` array: one tap per micro-op, 1 of ``simd`` products useful. On a core
with ``depthwise`` (:attr:`hwq.config.CoreConfig.depthwise`, ``lanes == simd >= 8``) a
descriptor with ``dw`` instead computes one channel tile (``simd`` channels, one activation
word) at a time: lane ``l`` is channel ``c0 + l`` and SIMD ``j`` is *window slot* ``j``,
so the array's SIMD sum is the sum over the kernel's taps.

The window (:func:`window_step`) is a register file of 9 slots of one activation word each,
slot ``u * 3 + v`` the tap ``(u, v)`` of a kernel of at most 3x3 (dilation 1). Every
micro-op of a ``dw`` descriptor reads its two words as K packing does (A at ``off``, tap
``(u, v)``; B at ``off2``, tap ``(u2, v2)``; a tap in the padding reads as 0) and writes
them into slots ``u * 3 + v`` and then ``u2 * 3 + v2``. At the first micro-op of an output
position the window first clears (the first position of an output row) or shifts left by
``stride_w`` columns (slot ``(r, c)`` takes slot ``(r, c + stride_w)``, 0 past column 2).
The micro-op then multiplies the window after its writes: lane ``l``, SIMD ``j`` takes
element ``l`` of slot ``j`` (SIMD 0: slot 8 when the micro-op's ``hi`` is set; SIMD ``j >=
9``: 0). Accumulators, requant and write-back are those of any group.

Programs (:func:`programs`): a row's first position reads the kernel's taps right of the
left padding, two per micro-op (``ceil(KH * (KW - pad_l) / 2)``: 3 for 3x3 with padding 1,
the cleared window holding the padding's zeros); the others read only the columns the
shift did not bring (stride 1, 3x3: 3 words in 2 micro-ops; stride 2: 6 words in 3). The
address generator runs ``w_base .. w_last`` at the first position of a row, ``w_base2 ..
w_last2`` at the others. Each program's micro-ops multiply the taps once each: tap 8 (with
``hi``) and taps 1..7 at the last micro-op, tap 0 at the one before (a micro-op more when
tap 0 is written by the last read). A micro-op is repeated per non-zero term or bit-plane
of its weights (the shift happens once, rewrites are idempotent) and never dropped for zero
weights: its reads fill the window. One descriptor per channel tile (``pos0``, ``out_base`` and
``p_base`` offset by the tile), one group each.

Used for single-source matmuls whose dense weight is diagonal in its channels, with a kernel
of at most 3x3, dilation 1, no fused pool, weights and activations on chip, when it takes
fewer model cycles than the plain mapping (:func:`plan_layer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwq.config import CoreConfig
from hwq.golden import cycles as cyc
from hwq.golden.formats import CodebookFormat, IntFormat, PotFormat
from hwq.ir.lowering import Matmul
from hwq.layout.words import FMT_CODEBOOK, FMT_INT

__all__ = ["SLOTS", "DwLayer", "DwOp", "plan_layer", "programs", "window_macs",
           "window_step"]

#: Window slots (a kernel of at most 3x3) and columns.
SLOTS = 9
COLS = 3


@dataclass(frozen=True)
class DwOp:
    """One micro-op of a program (before its repetition per term or bit-plane).

    ``reads``: the taps ``(u, v)`` of ports A and B (B repeats A when one word is read);
    ``hi``: SIMD 0 multiplies slot 8; ``macs``: the slots whose weights it carries.
    """

    reads: tuple[tuple[int, int], tuple[int, int]]
    hi: int
    macs: tuple[int, ...]


def _program(new: list[tuple[int, int]], taps: list[tuple[int, int]]) -> list[DwOp]:
    """Micro-ops that read the taps ``new`` (two at a time) and multiply every tap of
    ``taps`` once, each at or after the micro-op that writes it."""
    reads = [(new[i], new[min(i + 1, len(new) - 1)]) for i in range(0, len(new), 2)]
    if not reads:                             # nothing to read: one micro-op to multiply
        reads = [(taps[0], taps[0])]
    written = {u * COLS + v: -1 for u, v in taps}
    for k, pair in enumerate(reads):
        for u, v in pair:
            written[u * COLS + v] = k
    slots = sorted(written)
    n = len(reads)
    hi8 = 8 in written
    mid = [j for j in slots if j not in (0, 8)]
    if not hi8:
        return [DwOp(r, 0, tuple(slots) if k == n - 1 else ()) for k, r in enumerate(reads)]
    if 0 not in written:                      # taps 1..8 in the last micro-op
        return [DwOp(r, int(k == n - 1), tuple([8, *mid]) if k == n - 1 else ())
                for k, r in enumerate(reads)]
    if n - 2 >= max(written[0], 0):           # tap 0 one micro-op before the last
        return [DwOp(r, int(k == n - 1), (0,) if k == n - 2 else
                     tuple([8, *mid]) if k == n - 1 else ()) for k, r in enumerate(reads)]
    # tap 0 is written by the last read: multiply it there, tap 8 in one micro-op more
    ops = [DwOp(r, 0, (0,) if k == n - 1 else ()) for k, r in enumerate(reads)]
    return [*ops, DwOp(reads[-1], 1, tuple([8, *mid]))]


def programs(kh: int, kw: int, stride_w: int, pad_l: int = 0
             ) -> tuple[list[DwOp], list[DwOp]]:
    """The programs of a ``kh x kw`` kernel: a row's first position, then the others.

    A row's first position reads (and multiplies) only the taps right of the left padding
    (``v >= pad_l``): the window was cleared, so the padding columns hold 0 and the shift
    carries those zeros to later positions exactly where they are padding again.

    >>> row, steady = programs(3, 3, 1)
    >>> len(row), [op.reads for op in steady], [(op.hi, op.macs) for op in steady]
    (5, [((0, 2), (1, 2)), ((2, 2), (2, 2))], [(0, (0,)), (1, (8, 1, 2, 3, 4, 5, 6, 7))])
    >>> len(programs(3, 3, 2)[1]), len(programs(3, 3, 3)[1]), len(programs(1, 1, 1)[1])
    (3, 5, 1)
    >>> [len(p) for p in programs(3, 3, 1, pad_l=1)], [len(p) for p in programs(3, 3, 2, 1)]
    ([3, 2], [3, 3])
    """
    if not (1 <= kh <= COLS and 1 <= kw <= COLS):
        raise ValueError(f"Depthwise kernels must be 1x1 .. 3x3, not {kh}x{kw}")
    if stride_w < 1:
        raise ValueError(f"Stride must be a positive integer, not {stride_w!r}")
    if pad_l < 0:
        raise ValueError(f"Left padding must be a non-negative integer, not {pad_l!r}")
    taps = [(u, v) for u in range(kh) for v in range(kw)]
    live = [(u, v) for u, v in taps if v >= pad_l] or taps
    new = [(u, v) for u, v in taps if v + stride_w >= kw]
    return _program(live, live), _program(new, taps)


def window_step(window: np.ndarray, *, first: bool, row_first: bool, stride_w: int,
                writes: list[tuple[int, int, np.ndarray]]) -> None:
    """One micro-op's update of ``window`` (``(..., SLOTS, simd)``, in place): at the first
    micro-op of a position a clear (``row_first``) or a shift left by ``stride_w`` columns,
    then the ``writes`` ``(u, v, word)`` in order (a tap outside 3x3 writes nothing)."""
    if first:
        grid = window.reshape(*window.shape[:-2], COLS, COLS, window.shape[-1])
        if row_first or stride_w >= COLS:
            grid[...] = 0
        elif stride_w:
            grid[..., :COLS - stride_w, :] = grid[..., stride_w:, :].copy()
            grid[..., COLS - stride_w:, :] = 0
    for u, v, word in writes:
        if u < COLS and v < COLS:
            window[..., u * COLS + v, :] = word


def window_macs(window: np.ndarray, weights: np.ndarray, hi: int) -> np.ndarray:
    """The array's dot products ``(..., lanes)`` on ``window`` ``(..., SLOTS, simd)`` with
    ``weights`` ``(lanes, simd)``: lane ``l`` multiplies element ``l`` of slot ``j`` at
    SIMD ``j`` (SIMD 0: slot 8 with ``hi``; SIMD 9 and up: 0)."""
    lanes, simd = weights.shape
    order = [8 if hi else 0, *range(1, min(simd, SLOTS))]
    a = window[..., order, :lanes]                         # (..., j, lane)
    return np.einsum("...jl,lj->...l", a, weights[:, :len(order)])


@dataclass(frozen=True, eq=False)
class DwLayer:
    """The depthwise mapping of one layer: per channel tile, both programs' micro-ops.

    ``micro[t][p]`` holds program ``p`` (0: a row's first position, 1: the others) of
    channel tile ``t`` as columns ``u, v, u2, v2, hi, w`` (the payload codes ``(n, lanes *
    simd)``) and, on bit_serial, ``shift``, ``neg``; ``fields`` the descriptor's ``fmt``
    (and ``table``).
    """

    micro: list[list[dict[str, np.ndarray]]]
    fields: dict[str, Any]
    stride_w: int

    @property
    def tiles(self) -> int:
        return len(self.micro)

    def steps(self, t: int) -> tuple[int, int]:
        """Micro-ops of tile ``t``'s two programs."""
        return tuple(len(p["hi"]) for p in self.micro[t])

    def cycles(self, out_h: int, out_w: int, overheads: cyc.Overheads) -> list[int]:
        """Model cycles of each channel tile's descriptor."""
        return [cyc.depthwise_cycles(out_h=out_h, out_w=out_w, row_steps=r, steps=s,
                                     overheads=overheads)
                for r, s in (self.steps(t) for t in range(self.tiles))]


def _diagonal(prim: Matmul, channels: list[int], config: CoreConfig) -> bool:
    """Whether ``prim`` is a depthwise conv the mode runs (see the module docstring)."""
    w = prim.weight
    c_out, c_in, kh, kw = w.shape
    if (not config.depthwise or len(channels) != 1 or c_in != c_out or kh > COLS or kw > COLS
            or prim.dilation != (1, 1)):
        return False
    off = w.copy()
    off[np.arange(c_out), np.arange(c_in)] = 0
    return not off.any()


def _encode(values: np.ndarray, terms: Any, config: CoreConfig) -> tuple[np.ndarray, int]:
    """Payload codes of weight values ``(n, lanes * simd)``, and the code of weight 0."""
    if terms.kind == "pot":
        return PotFormat(config.weight_bits).encode(values).astype(np.int64), 0
    if terms.kind == "int":
        return IntFormat(config.weight_bits).encode(values).astype(np.int64), 0
    fmt = CodebookFormat(config.weight_bits, table=tuple(terms.table.tolist()),
                         table_bits=config.table_bits)
    return fmt.encode(values).astype(np.int64), int(fmt.encode([0])[0])


def _micro_ops(ops: list[DwOp], taps: np.ndarray, terms: Any, config: CoreConfig
               ) -> dict[str, np.ndarray]:
    """The micro-ops of one program of one channel tile; ``taps`` ``(T, SLOTS, lanes)``
    holds each term's weight of each slot and channel."""
    p, s = config.lanes, config.simd
    rows: list[dict[str, Any]] = []
    for op in ops:
        tile = np.zeros((taps.shape[0], p, s), np.int64)
        for j in op.macs:
            tile[:, :, 0 if j == 8 else j] = taps[:, j]
        base = {"u": op.reads[0][0], "v": op.reads[0][1], "u2": op.reads[1][0],
                "v2": op.reads[1][1], "hi": op.hi}
        made = 0
        if config.pe == "bit_serial":
            bits, planes = cyc.tile_planes(tile)
            for k in range(tile.shape[0]):
                codes = tile[k] & ((1 << max(int(bits[k]), 1)) - 1)
                for pl in np.flatnonzero(planes[k]):
                    rows.append({**base, "w": ((codes >> pl) & 1).ravel(), "shift": int(pl),
                                 "neg": int(pl == bits[k] - 1)})
                    made += 1
        else:
            for k in range(tile.shape[0]):
                if tile[k].any():
                    rows.append({**base, "w": tile[k].ravel()})
                    made += 1
        if not made:                              # the reads fill the window: never dropped
            rows.append({**base, "w": np.zeros(p * s, np.int64), "shift": 0, "neg": 0})
    out = {k: np.array([r[k] for r in rows], np.int64) for k in ("u", "v", "u2", "v2", "hi")}
    w = np.stack([r["w"] for r in rows])
    if config.pe == "bit_serial":
        out.update(w=w, shift=np.array([r.get("shift", 0) for r in rows], np.int64),
                   neg=np.array([r.get("neg", 0) for r in rows], np.int64))
    else:
        out["w"] = _encode(w, terms, config)[0]
    return out


def plan_layer(prim: Matmul, channels: list[int], config: CoreConfig, terms: Any,
               out_hw: tuple[int, int], regular_steps: np.ndarray) -> DwLayer | None:
    """The depthwise mapping of ``prim`` on ``config``, or None when the mode does not run
    it or takes no fewer model cycles than the plain mapping (``regular_steps``: its micro-ops
    per group, ``terms``: its unpacked :class:`~hwq.layout.encode.MatmulTerms`)."""
    if not _diagonal(prim, channels, config):
        return None
    t_all = terms.terms                                 # (T, G, KH, KW, CT, P, S)
    n_terms, g_n, kh, kw, ct_n, p, s = t_all.shape
    if g_n != ct_n or p != s:
        return None
    row, steady = programs(kh, kw, prim.stride[1], prim.padding[2])
    lane = np.arange(p)
    micro = []
    for t in range(ct_n):
        diag = t_all[:, t, :, :, t][..., lane, lane]    # (T, KH, KW, lanes)
        taps = np.zeros((n_terms, SLOTS, p), np.int64)
        for u in range(kh):
            for v in range(kw):
                taps[:, u * COLS + v] = diag[:, u, v]
        micro.append([_micro_ops(ops, taps, terms, config) for ops in (row, steady)])
    fields: dict[str, Any] = {"fmt": FMT_INT}
    if terms.kind == "codebook" and config.pe == "multiply":
        table = np.zeros(1 << config.weight_bits, dtype=np.int64)
        table[:terms.table.size] = terms.table
        fields = {"fmt": FMT_CODEBOOK, "table": table}
    layer = DwLayer(micro=micro, fields=fields, stride_w=int(prim.stride[1]))
    overheads = cyc.core_overheads(config.pack)
    oh, ow = out_hw
    dw = sum(layer.cycles(oh, ow, overheads))
    plain = cyc.matmul_cycles(positions=oh * ow, steps=regular_steps, lanes=p, simd=s,
                              overheads=overheads)
    if dw >= plain:
        return None
    return layer


def image(layer: DwLayer, in_w: int, ct0: int, words: Any) -> np.ndarray:
    """The layer's weight micro-ops, tile by tile (a row's first position, then the others),
    ``glast`` at the end of each program; ``ct0`` the input's channel tiles (words per
    input pixel), ``in_w`` its width."""
    parts = []
    for progs in layer.micro:
        for prog in progs:
            n = len(prog["hi"])
            glast = np.zeros(n, np.int64)
            glast[-1] = 1
            extra = {k: prog[k] for k in ("shift", "neg") if k in prog}
            fields = dict(off=(prog["u"] * in_w + prog["v"]) * ct0, u=prog["u"], v=prog["v"],
                          off2=(prog["u2"] * in_w + prog["v2"]) * ct0, u2=prog["u2"],
                          v2=prog["v2"], hi=prog["hi"])
            for name, val in fields.items():
                words.weight.check(name, val, f"depthwise micro-op field {name}")
            parts.append(words.weight.pack(n, glast=glast, w=prog["w"], **fields, **extra))
    return np.concatenate(parts)


def descriptors(d: dict[str, Any], info: dict[str, Any], layer: DwLayer, w_base: int,
                overheads: cyc.Overheads) -> tuple[list[dict], list[dict]]:
    """One descriptor (and its layer facts) per channel tile from the layer's descriptor
    ``d`` and facts ``info``: ``pos0``, ``out_base``, ``p_base`` offset by the tile, the two
    programs' micro-op ranges from ``w_base`` (:func:`image`'s order)."""
    descs, infos = [], []
    at = w_base
    cycles = layer.cycles(int(d["out_h"]), int(d["out_w"]), overheads)
    for t in range(layer.tiles):
        row, steady = layer.steps(t)
        descs.append({**d, "last": int(bool(d["last"]) and t == layer.tiles - 1),
                      "pos0": d["pos0"] + t, "out_base": d["out_base"] + t,
                      "p_base": d["p_base"] + t, "dw": 1, "w_base": at,
                      "w_last": at + row - 1, "w_base2": at + row,
                      "w_last2": at + row + steady - 1})
        infos.append({**info, "w_base": at, "w_words": row + steady, "p_base": d["p_base"] + t,
                      "groups": 1, "steps": [row, steady], "dw_tile": t,
                      "cycles": cycles[t]})
        for k in ("tile_mask", "tile_bits", "k_tiles"):
            infos[-1].pop(k, None)
        at += row + steady
    return descs, infos
