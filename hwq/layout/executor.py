"""A NumPy executor of a :class:`~hwq.layout.program.Program`: the layout's own proof.

:func:`execute` decodes the packed images (descriptors, weight micro-ops, requant
parameters) with the same word layouts the RTL uses and runs them exactly as the core's
sequencer does: per layer, per output position, micro-op by micro-op into ``lanes``
accumulators, requant at the end of each group, write-back into the activation memory.
Its output must equal ``hwq.golden.run(network, x)``; it does not look at the network.
Vectorized over the batch and the output positions; the loop is over micro-ops.
"""

from __future__ import annotations

import numpy as np

from hwq.golden.formats import IntFormat, PotFormat
from hwq.golden.requant import requantize
from hwq.layout.program import Program
from hwq.layout.words import FMT_CODEBOOK, KIND_POOL


def execute(program: Program, x: object) -> np.ndarray:
    """Run ``program`` on integer inputs ``x`` of shape ``(N, *program.input.shape)``.

    Returns the int64 outputs ``(N, *program.output.shape)``.
    """
    cfg = program.config
    words = program.words
    packed = program.pack_input(x)
    n = packed.shape[0]
    mem = np.zeros((n, cfg.act_depth, cfg.simd), dtype=np.int64)
    t = program.input
    mem[:, t.base:t.base + t.words] = words.act.unpack(
        packed.reshape(-1, words.act.chunks))["a"].reshape(n, t.words, cfg.simd)
    descs = words.desc.unpack(program.images["desc"])
    micro = words.weight.unpack(program.images["weight"])
    params = words.param.unpack(program.images["param"])
    for i in range(program.images["desc"].shape[0]):
        d = {k: v[i] for k, v in descs.items()}
        if d["kind"] == KIND_POOL:
            _pool(mem, d)
        else:
            _matmul(mem, d, micro, params, program)
        if d["last"]:
            break
    out = program.output
    region = mem[:, out.base:out.base + out.words]
    return program.unpack_output(words.act.pack(region.size // cfg.simd,
                                                a=region.reshape(-1, cfg.simd))
                                 .reshape(n, out.words, -1))


def _positions(d: dict) -> tuple[np.ndarray, np.ndarray]:
    oh, ow = np.meshgrid(np.arange(int(d["out_h"])), np.arange(int(d["out_w"])), indexing="ij")
    return oh.ravel(), ow.ravel()


def _pool(mem: np.ndarray, d: dict) -> None:
    oh, ow = _positions(d)
    base = d["pos0"] + oh * d["row_step"] + ow * d["col_step"]
    out = d["out_base"] + (oh * d["out_w"] + ow) * d["out_ct"]
    for t in range(int(d["in_ct"])):
        taps = [mem[:, base + t + dy + dx] for dy in (0, d["dy_step"]) for dx in (0, d["dx_step"])]
        mem[:, out + t] = np.maximum.reduce(taps)


def _decode(program: Program, d: dict, micro: dict, k: int) -> np.ndarray:
    """Weight values ``(lanes, simd)`` of micro-op ``k`` (bit_serial: the scaled plane)."""
    cfg = program.config
    w = micro["w"][k].reshape(cfg.lanes, cfg.simd)
    if cfg.pe == "bit_serial":
        coef = -(1 << int(micro["shift"][k])) if micro["neg"][k] else 1 << int(micro["shift"][k])
        return w * coef
    if cfg.pe == "shift_add":
        return PotFormat(cfg.weight_bits).decode(w)
    if d["fmt"] == FMT_CODEBOOK:
        return d["table"][w]
    return IntFormat(cfg.weight_bits).decode(w)


def _matmul(mem: np.ndarray, d: dict, micro: dict, params: dict, program: Program) -> None:
    cfg = program.config
    p, s = cfg.lanes, cfg.simd
    oh, ow = _positions(d)
    ih0, iw0 = oh * d["stride"] - d["pad"], ow * d["stride"] - d["pad"]
    pos = d["pos0"] + oh * d["row_step"] + ow * d["col_step"]
    out = d["out_base"] + (oh * d["out_w"] + ow) * d["out_ct"]
    n = mem.shape[0]
    acc = np.zeros((n, oh.size, p), dtype=np.int64)
    mask = (1 << cfg.acc_bits) - 1
    g = 0
    for k in range(int(d["w_base"]), int(d["w_last"]) + 1):
        u, v = micro["u"][k], micro["v"][k]
        inb = (ih0 + u >= 0) & (ih0 + u < d["in_h"]) & (iw0 + v >= 0) & (iw0 + v < d["in_w"])
        a = mem[:, np.where(inb, pos + micro["off"][k], 0)] * inb[None, :, None]
        acc += a @ _decode(program, d, micro, k).T
        acc = ((acc + (1 << (cfg.acc_bits - 1))) & mask) - (1 << (cfg.acc_bits - 1))  # wrap
        if not micro["glast"][k]:
            continue
        q = int(d["p_base"]) + g
        y = requantize(acc.reshape(-1, p), params["bias"][q], params["m"][q], params["s"][q],
                       lo=int(d["lo"]), hi=int(d["hi"])).reshape(n, -1, p)
        if p >= s:
            for j in range(p // s):
                ct = g * (p // s) + j
                if ct < d["out_ct"]:
                    mem[:, out + ct] = y[:, :, j * s:(j + 1) * s]
        else:
            r = s // p
            mem[:, out + g // r, (g % r) * p:(g % r + 1) * p] = y
        acc[:] = 0
        g += 1
