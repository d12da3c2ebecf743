"""The layout compiler: ``compile(network, config) -> Program``.

Every conv2d and linear layer becomes one *matmul* descriptor and a list of weight
micro-ops; a max pool becomes a *pool* descriptor; a flatten becomes nothing (the tensor
keeps its position-major layout and the next linear layer's weights are reordered to it:
a linear layer on a ``(C, H, W)`` tensor is a convolution with an ``H x W`` kernel).

Weights of a matmul layer are cut into tiles of ``lanes`` output channels by ``simd``
input channels, one per (group, kernel tap, channel tile), walked in that order. A tile
whose weights are all zero is skipped (no micro-op; the layer info keeps the mask). Each
stored tile becomes micro-ops (:mod:`hwq.layout.words`):

* ``shift_add``: one, the POT codes re-encoded to ``POT(weight_bits)``;
* ``multiply``: one, INT codes sign-extended to ``weight_bits`` or CODEBOOK indices
  (the layer's table goes into its descriptor and the core decodes it on the fly);
* ``bit_serial``: one per non-zero bit-plane of the tile's codes at the tile's own bit width
  (the narrowest that holds its values, per tile), LSB first, the MSB plane negative.
  CODEBOOK layers are expanded to their INT values at compile time, so the PE never sees
  a table and a tile of small entries costs fewer planes.

Activations live in two ping-pong regions of the one activation memory: tensor ``i`` (the
input of hardware layer ``i``) is in region ``i % 2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwq.config import CoreConfig
from hwq.golden import cycles as cyc
from hwq.golden.formats import CodebookFormat, IntFormat, PotFormat
from hwq.golden.ops import accumulator_bits
from hwq.ir import Conv2d, Flatten, Linear, MaxPool2d, QuantizedNetwork
from hwq.layout.program import Program, Tensor
from hwq.layout.words import FMT_CODEBOOK, FMT_INT, KIND_MATMUL, KIND_POOL, core_words


@dataclass
class _HwLayer:
    op: Any
    kind: str                     # "matmul" | "pool"
    src: int                      # tensor index read
    in_chw: tuple[int, int, int]
    out_chw: tuple[int, int, int]


def core_config(network: QuantizedNetwork, *, pe: str, lanes: int, simd: int,
                dsp: str = "inferred") -> CoreConfig:
    """The narrowest :class:`~hwq.config.CoreConfig` of ``pe`` that runs ``network``.

    Weight bits: the widest layer's, within the PE's range. Codebook entries
    (``table_bits``): the widest codebook's, or the weight width when no layer is a
    codebook, so a multiply PE's values are no wider than the weights (with
    ``dsp="ecp5"``, 4-bit values let two lanes share each DSP block).
    """
    ops = network.weight_ops()
    if not ops:
        raise ValueError("Network has no conv2d or linear layer")
    low, high = CoreConfig.WEIGHT_BITS[pe]
    wbits = min(max(max(int(op.spec.max_bits()) for op in ops), low), high)
    tables = [op.spec.table_bits for op in ops if op.spec.kind == "codebook"]
    return CoreConfig(pe=pe, lanes=lanes, simd=simd, act_bits=network.act_bits,
                      weight_bits=wbits, table_bits=max(tables) if tables else max(2, wbits),
                      dsp=dsp)


def compile(network: QuantizedNetwork, config: CoreConfig) -> Program:  # noqa: A001
    """Compile ``network`` for a core ``config``.

    Raises
    ------
    ValueError
        a weight format the PE does not take, a bit width wider than the datapath, an
        accumulator that could overflow, or a network that does not fit a memory (naming
        the layer, the words needed and the words available).
    """
    if not isinstance(network, QuantizedNetwork):
        raise TypeError(f"Network must be a QuantizedNetwork, not {type(network).__name__}")
    if not isinstance(config, CoreConfig):
        raise TypeError(f"Config must be a CoreConfig, not {type(config).__name__}")
    network.validate()
    if network.act_bits > config.act_bits:
        raise ValueError(f"Network activations of {network.act_bits} bits are wider than the "
                         f"core's {config.act_bits}-bit activations (act_bits)")
    words = core_words(config)
    s = config.simd

    # pass 1: hardware layers and tensors
    shape = tuple(network.input_shape)
    chw = (shape[0], 1, 1) if len(shape) == 1 else shape
    tensors: list[tuple[tuple[int, int, int], tuple[int, ...]]] = [(chw, shape)]
    hw: list[_HwLayer] = []
    for op, out_shape in zip(network.ops, network.shapes(), strict=True):
        if isinstance(op, Flatten):
            tensors[-1] = (tensors[-1][0], out_shape)
            continue
        in_chw = tensors[-1][0]
        if isinstance(op, Conv2d | MaxPool2d):
            out_chw = out_shape
        else:
            out_chw = (out_shape[0], 1, 1)
        hw.append(_HwLayer(op=op, kind="pool" if isinstance(op, MaxPool2d) else "matmul",
                           src=len(tensors) - 1, in_chw=in_chw, out_chw=out_chw))
        tensors.append((out_chw, out_shape))
    if not hw:
        raise ValueError("Network has no conv2d, linear or maxpool2d layer for the core to run")
    if len(hw) > config.desc_depth:
        raise ValueError(f"Network does not fit the descriptor memory: layer {hw[-1].op.name} "
                         f"needs {len(hw)} descriptors, {config.desc_depth} available")

    # activation regions (ping-pong)
    sizes = [c[1] * c[2] * math.ceil(c[0] / s) for c, _ in tensors]
    region = [0, 0]
    for i, size in enumerate(sizes):
        region[i % 2] = max(region[i % 2], size)
        if region[0] + region[1] > config.act_depth:
            where = "the network input" if i == 0 else f"layer {hw[i - 1].op.name}"
            raise ValueError(f"Network does not fit the activation memory: {where} needs "
                             f"{region[0] + region[1]} words (both ping-pong regions), "
                             f"{config.act_depth} available")
    bases = [0 if i % 2 == 0 else region[0] for i in range(len(tensors))]
    tens = [Tensor(base=bases[i], chw=tuple(c), ct=math.ceil(c[0] / s), shape=tuple(sh))
            for i, (c, sh) in enumerate(tensors)]

    # pass 2: descriptors, micro-ops and params
    descs: list[dict[str, Any]] = []
    weight_imgs: list[np.ndarray] = []
    param_imgs: list[np.ndarray] = []
    layers: list[dict[str, Any]] = []
    w_used = p_used = 0
    for i, layer in enumerate(hw):
        src, dst = tens[layer.src], tens[layer.src + 1]
        c_in, h, w = layer.in_chw
        _, oh, ow = layer.out_chw
        d: dict[str, Any] = dict(
            last=int(i == len(hw) - 1), in_h=h, in_w=w, out_h=oh, out_w=ow, in_ct=src.ct,
            out_ct=dst.ct, out_base=dst.base)
        info: dict[str, Any] = {"name": layer.op.name, "kind": layer.kind, "op": layer.op.kind}
        if layer.kind == "pool":
            d.update(kind=KIND_POOL, pos0=src.base, col_step=2 * src.ct,
                     row_step=2 * w * src.ct, dx_step=src.ct, dy_step=w * src.ct, stride=2)
            info["cycles"] = cyc.maxpool_cycles(channels=c_in, out_positions=oh * ow, simd=s)
        else:
            op = layer.op
            stride, pad = (op.stride, op.padding) if isinstance(op, Conv2d) else (1, 0)
            w4 = op.weight if isinstance(op, Conv2d) else op.weight.reshape(-1, c_in, h, w)
            img, fields, meta = _matmul_words(op, w4, layer.in_chw, src.ct, config, words)
            prm = _params(op, config, words)
            w_base, p_base = w_used, p_used
            w_used += img.shape[0]
            p_used += prm.shape[0]
            if w_used > config.weight_depth:
                raise ValueError(f"Network does not fit the weight memory: layer {op.name} "
                                 f"needs {w_used} words (with the layers before it), "
                                 f"{config.weight_depth} available")
            if p_used > config.param_depth:
                raise ValueError(f"Network does not fit the parameter memory: layer {op.name} "
                                 f"needs {p_used} words (with the layers before it), "
                                 f"{config.param_depth} available")
            weight_imgs.append(img)
            param_imgs.append(prm)
            d.update(kind=KIND_MATMUL, stride=stride, pad=pad,
                     pos0=src.base - (pad * w + pad) * src.ct, col_step=stride * src.ct,
                     row_step=stride * w * src.ct, w_base=w_base, w_last=w_used - 1,
                     p_base=p_base, lo=op.requant.lo, hi=op.requant.hi, **fields)
            positions = oh * ow
            info.update(meta, positions=positions, w_base=w_base, w_words=int(img.shape[0]),
                        p_base=p_base,
                        cycles=cyc.matmul_cycles(positions=positions, words=meta["words"],
                                                 lanes=config.lanes, simd=s))
        for name, value in d.items():
            words.desc.check(name, value, f"{info['name']}: descriptor field {name}")
        descs.append(d)
        layers.append(info)

    keys = sorted({k for d in descs for k in d})
    desc_values = {}
    for k in keys:
        rows = [d.get(k) for d in descs]
        if k == "table":
            desc_values[k] = np.stack([np.zeros(1 << config.weight_bits, np.int64)
                                       if r is None else r for r in rows])
        else:
            desc_values[k] = np.array([0 if r is None else r for r in rows], dtype=np.int64)
    images = {
        "desc": words.desc.pack(len(descs), **desc_values),
        "weight": np.concatenate(weight_imgs) if weight_imgs else
        np.zeros((0, words.weight.chunks), np.uint32),
        "param": np.concatenate(param_imgs) if param_imgs else
        np.zeros((0, words.param.chunks), np.uint32),
    }
    meta = {"network": dict(network.meta), "ops": [op.name for op in network.ops]}
    return Program(config=config, images=images, input=tens[0], output=tens[-1],
                   layers=layers, meta=meta)


def _matmul_words(op: Conv2d | Linear, w4: np.ndarray, in_chw: tuple[int, int, int], ct: int,
                  config: CoreConfig, words: Any) -> tuple[np.ndarray, dict, dict]:
    """Micro-op image, descriptor fields (fmt, table) and layer facts of one matmul layer."""
    pe, p, s = config.pe, config.lanes, config.simd
    kind, spec = op.spec.kind, op.spec
    if kind not in config.formats:
        raise ValueError(f"{op.name}: {kind.upper()} weights do not run on the {pe} PE "
                         f"(it takes {' and '.join(f.upper() for f in config.formats)})")
    if spec.max_bits() > config.weight_bits:
        raise ValueError(f"{op.name}: {spec.max_bits()}-bit {kind.upper()} weights are wider "
                         f"than the core's {config.weight_bits}-bit datapath")
    if kind == "codebook" and spec.table_bits > config.table_bits:
        raise ValueError(f"{op.name}: codebook entries of {spec.table_bits} bits are wider "
                         f"than the core's {config.table_bits}-bit tables")
    need = accumulator_bits(w4, config.act_bits)
    if need > config.acc_bits:
        raise ValueError(f"{op.name}: the accumulator needs {need} bits for this layer, the "
                         f"core has {config.acc_bits} (raise acc_bits)")
    tiles = cyc.weight_tiles(w4, p, s)                   # (G, KH, KW, CT, P, S) values
    g_n, kh, kw = tiles.shape[:3]
    fields: dict[str, Any] = {"fmt": FMT_INT}
    zero = 0                                           # the payload code of weight 0
    if pe == "bit_serial":
        bits, planes = cyc.tile_planes(tiles)           # (G, KH, KW, CT), (..., 8)
        sel = np.argwhere(planes)                       # (n, 5): g, u, v, ct, plane
        g, u, v, t, pl = sel.T
        b = bits[g, u, v, t]
        codes = tiles[g, u, v, t] & ((1 << b) - 1)[:, None, None]
        payload = ((codes >> pl[:, None, None]) & 1).reshape(len(sel), p * s)
        extra = {"shift": pl, "neg": (pl == b - 1).astype(np.int64)}
        stored = bits > 0
    else:
        stored = (tiles != 0).any(axis=(-2, -1))
        sel = np.argwhere(stored)
        g, u, v, t = sel.T
        vals = tiles[g, u, v, t].reshape(len(sel), p * s)
        if kind == "pot":
            payload = PotFormat(config.weight_bits).encode(vals).astype(np.int64)
        elif kind == "int":
            payload = IntFormat(config.weight_bits).encode(vals).astype(np.int64)
        else:
            table = np.zeros(1 << config.weight_bits, dtype=np.int64)
            table[:spec.table.size] = spec.table
            fmt = CodebookFormat(config.weight_bits, table=tuple(spec.table.tolist()),
                                 table_bits=config.table_bits)
            payload = fmt.encode(vals).astype(np.int64)
            # the zero entry may be at any index: padding micro-ops must carry its index
            zero = int(fmt.encode([0])[0])
            fields = {"fmt": FMT_CODEBOOK, "table": table}
        extra = {}
    counts = np.bincount(g, minlength=g_n)
    floor = cyc.min_group_words(p, s)
    # fill: every group gets at least `floor` micro-ops (every weight zero)
    order_key = g.astype(np.int64)
    fill = np.maximum(floor - counts, 0)
    fg = np.repeat(np.arange(g_n), fill)
    cols = {"g": np.concatenate([order_key, fg]), "u": np.concatenate([u, 0 * fg]),
            "v": np.concatenate([v, 0 * fg]), "t": np.concatenate([t, 0 * fg])}
    payload = np.concatenate([payload, np.full((len(fg), p * s), zero, np.int64)])
    extra = {k: np.concatenate([e, 0 * fg]) for k, e in extra.items()}
    order = np.argsort(cols["g"], kind="stable")
    cols = {k: c[order] for k, c in cols.items()}
    payload = payload[order]
    extra = {k: e[order] for k, e in extra.items()}
    n = len(order)
    glast = np.zeros(n, np.int64)
    glast[np.cumsum(np.bincount(cols["g"], minlength=g_n)) - 1] = 1
    _, h, w = in_chw
    off = (cols["u"] * w + cols["v"]) * ct + cols["t"]
    for name, val in (("off", off), ("u", cols["u"]), ("v", cols["v"])):
        words.weight.check(name, val, f"{op.name}: micro-op field {name}")
    img = words.weight.pack(n, off=off, u=cols["u"], v=cols["v"], glast=glast, w=payload,
                            **extra)
    meta: dict[str, Any] = {"groups": g_n, "k_tiles": kh * kw * ct,
                            "words": counts.tolist(),
                            "tile_mask": stored.reshape(g_n, -1).tolist()}
    if pe == "bit_serial":
        meta["tile_bits"] = bits.reshape(g_n, -1).tolist()
    return img, fields, meta


def _params(op: Conv2d | Linear, config: CoreConfig, words: Any) -> np.ndarray:
    p = config.lanes
    c_out = op.out_channels
    g_n = math.ceil(c_out / p)
    rq = op.requant
    bias = np.zeros(g_n * p, np.int64)
    m = np.ones(g_n * p, np.int64)
    sh = np.ones(g_n * p, np.int64)
    bias[:c_out], m[:c_out], sh[:c_out] = rq.bias, rq.M, rq.S
    return words.param.pack(g_n, bias=bias.reshape(g_n, p), m=m.reshape(g_n, p),
                            s=sh.reshape(g_n, p))
