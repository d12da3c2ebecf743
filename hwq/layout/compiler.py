"""The layout compiler: ``compile(network, config) -> Program``.

Every op lowers to one of the core's primitives (:mod:`hwq.ir.lowering`): a *matmul*
descriptor and its weight micro-ops (conv2d of any groups, linear, average pools, adds), a
*pool* descriptor (max pool), or nothing (flatten: the tensor keeps its storage and the
linear layer that reads it takes its weights in the stored order).

Weights of a matmul are cut into tiles of ``lanes`` output channels by ``simd`` input
channels, one per (group, kernel tap, channel tile), walked in that order; a tile's
micro-ops are its *terms* (:mod:`hwq.layout.encode`): one for stored formats, as many as
the PE needs for weights an op synthesizes. A tile whose weights are all zero is skipped
(no micro-op; the layer info keeps the mask). Payloads:

* ``shift_add``: POT codes re-encoded to ``POT(weight_bits)``;
* ``multiply``: INT codes sign-extended to ``weight_bits`` or CODEBOOK indices (the layer's
  table goes into its descriptor and the core decodes it on the fly);
* ``bit_serial``: one micro-op per non-zero bit-plane of the tile's codes at the tile's own
  bit width (the narrowest that holds its values), LSB first, the MSB plane negative.
  CODEBOOK layers are expanded to their INT values at compile time.

A micro-op carries the activation word offset of its tap and channel tile relative to the
output position's first input word (``off``), and the tap's row and column offsets (``u``,
``v``, dilation included) for the padding test. A matmul over several tensors (an add)
reads the others at their distance from the first in the activation memory.

What a program holds before its words are packed -- descriptors, storage, liveness, fused
pools, the input's im2col window -- is planned in :mod:`hwq.layout.plan`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from hwq.config import CoreConfig
from hwq.golden import cycles as cyc
from hwq.golden.formats import CodebookFormat, IntFormat, PotFormat
from hwq.golden.ops import accumulator_bits
from hwq.hardware import FUSED_WRITE_STAGES, LOAD_CHECK_STAGES
from hwq.ir import INPUT, Matmul, Pool, QuantizedNetwork
from hwq.layout.acttiles import (
    ACT_PLACES,
    TilePlan,
    descriptor_count,
    plan_tiles,
    spillable,
    store_descriptor_cycles,
    tile_layer,
)
from hwq.layout.alloc import allocate
from hwq.layout.dwmode import descriptors as dw_descriptors
from hwq.layout.dwmode import image as dw_image
from hwq.layout.encode import MatmulTerms
from hwq.layout.plan import Plan, fused_need, memory_needs, plan_network
from hwq.layout.program import Program, Tensor
from hwq.layout.tiling import WEIGHT_PLACES, external_needs, tile_descriptors
from hwq.layout.words import FMT_CODEBOOK, FMT_INT, KIND_MATMUL, KIND_POOL, core_words

__all__ = ["PACK_CHOICES", "compile", "core_config", "network_cycles"]


_MEMORY = {"desc_depth": ("descriptor", "descriptors"), "act_depth": ("activation", "words"),
           "weight_depth": ("weight", "words"), "param_depth": ("parameter", "words")}


def _fitted_depth(field: str, need: int) -> int:
    """The smallest power-of-two depth of a memory (within its allowed range) for ``need``."""
    low = 2 if field == "desc_depth" else 16
    return max(low, 1 << max(0, need - 1).bit_length())


#: ``core_config``'s choices of K packing (:attr:`~hwq.config.CoreConfig.pack`).
PACK_CHOICES = ("auto", "on", "off")


def core_config(network: QuantizedNetwork, *, pe: str, lanes: int, simd: int,
                dsp: str = "inferred", weights: str = "auto", activations: str = "auto",
                pack: str | bool = "off", depthwise: str | bool = "off",
                **fields: int) -> CoreConfig:
    """The narrowest :class:`~hwq.config.CoreConfig` of ``pe`` that runs ``network``.

    Weight bits: the widest layer's, within the PE's range. Codebook entries
    (``table_bits``): the widest codebook's, or the weight width when no layer is a
    codebook, so a multiply PE's values are no wider than the weights (with
    ``dsp="ecp5"``, 4-bit values let two lanes share each DSP block); wide enough for the
    values of synthesized weights (add multipliers) when they need a table. Memory depths:
    the smallest powers of two that hold the program; the pool buffer (``pool_words``) the
    smallest power of two that lets every max pool :func:`hwq.layout.plan.fusable` allows
    fuse (0 if none can); with external weights
    (``weights="external"``, or ``"auto"`` on a core with ``ext_bits`` when ``weight_depth``
    is given and too small), the weight buffers of :func:`hwq.layout.tiling.external_needs`
    and the descriptors of the tiles; with activations in external memory
    (``activations="external"``, or ``"auto"`` on a core with ``ext_bits`` when ``act_depth``
    is given and too small), the descriptors of the row tiles (:mod:`hwq.layout.acttiles`)
    and the activation memory they use. K packing (``pack``, :mod:`hwq.layout.kpack`):
    ``"on"`` (or True), ``"off"`` (or False, the default: packing costs a second copy of the
    activation memory), ``"auto"``: on when it lowers the network's modelled cycles
    (:func:`network_cycles`; the fetch stage it adds costs every layer one cycle). The
    depthwise mode (``depthwise``, :mod:`hwq.layout.dwmode`): ``"on"`` (it turns packing
    on: it needs the second read port), ``"off"`` (the default), ``"auto"``: on when the
    core can have it (``lanes == simd >= 8``; multiply with ``dsp="inferred"``) and it
    lowers the modelled cycles. ``fields`` set any other field (or override these).
    """
    if pack not in (*PACK_CHOICES, True, False):
        raise ValueError(f"Packing must be one of {', '.join(PACK_CHOICES)}, not {pack!r}")
    if depthwise not in (*PACK_CHOICES, True, False):
        raise ValueError(f"Depthwise mode must be one of {', '.join(PACK_CHOICES)}, not "
                         f"{depthwise!r}")
    ops = network.weight_ops()
    low, high = CoreConfig.WEIGHT_BITS[pe]
    wbits = min(max(max((int(op.spec.max_bits()) for op in ops), default=low), low), high)
    tables = [op.spec.table_bits for op in ops if op.spec.kind == "codebook"]
    base = dict(pe=pe, lanes=lanes, simd=simd, act_bits=network.act_bits, weight_bits=wbits,
                table_bits=max(tables) if tables else max(2, wbits), dsp=dsp)
    base.update(fields)
    probe = CoreConfig(**{**base, "act_depth": 1 << 20, "weight_depth": 1 << 22,
                          "param_depth": 1 << 20, "desc_depth": 1024})
    plan = plan_network(network, probe)
    synthesized = [int(np.abs(lay.prim.weight).max()) for lay in plan.layers
                   if isinstance(lay.prim, Matmul) and lay.prim.spec is None]
    if pe == "shift_add" and synthesized and "weight_bits" not in fields:
        # POT codes wide enough that each digit of the synthesized weights (add multipliers
        # up to 127) is one micro-op: max exponent 2**(b-1) - 2 >= the largest digit's
        need = max(synthesized).bit_length()
        while (1 << (base["weight_bits"] - 1)) - 2 < need and base["weight_bits"] < high:
            base["weight_bits"] += 1
        probe = replace(probe, weight_bits=base["weight_bits"])
        plan = plan_network(network, probe)
    if pe == "multiply":
        books = [lay.terms.table for lay in plan.layers
                 if lay.terms is not None and lay.terms.table is not None
                 and lay.prim.spec is None]
        if books and "table_bits" not in fields:
            need = max(max(int(b.max()).bit_length(), int(-b.min() - 1).bit_length()) + 1
                       for b in books)
            base["table_bits"] = max(base["table_bits"], min(need, 8))
            probe = replace(probe, table_bits=base["table_bits"])
            plan = plan_network(network, probe)
    if pack == "auto":
        pack = _packing_gains(network, probe) and simd >= 2
    base["pack"] = pack in ("on", True)
    if base["pack"]:
        probe = replace(probe, pack=True)
        plan = plan_network(network, probe)
    if depthwise == "auto":
        depthwise = (lanes == simd >= 8 and (pe != "multiply" or dsp == "inferred")
                     and _dw_gains(network, probe))
    if depthwise in ("on", True):
        base.update(pack=True, depthwise=True)
        probe = replace(probe, pack=True, depthwise=True)
        plan = plan_network(network, probe)
    if "pool_words" not in fields:
        need = fused_need(network, probe)
        base["pool_words"] = 1 << max(0, need - 1).bit_length() if need else 0
        if base["pool_words"]:
            probe = replace(probe, pool_words=base["pool_words"])
            plan = plan_network(network, probe)
    needs = memory_needs(plan)
    ext = base.get("ext_bits", 0)
    ext_weights = weights == "external" or (weights == "auto" and ext and
                                            base.get("weight_depth", needs["weight_depth"])
                                            < needs["weight_depth"])
    if ext_weights and not ext:
        raise ValueError("External weights need a core with the m_axi port (ext_bits 32, 64 "
                         "or 128), not ext_bits=0")

    def weight_buffers() -> None:
        floor = cyc.min_group_steps(lanes, simd)
        steps = [np.maximum(lay.terms.group_steps(pe), floor) if lay.terms is not None
                 else None for lay in plan.layers]
        ext_needs = external_needs(steps, probe, base.get("weight_depth"))
        needs.update(weight_depth=ext_needs["weight_depth"], desc_depth=ext_needs["desc_depth"])

    if ext_weights:
        plan = plan_network(network, probe, dw=False)      # weight tiles: no depthwise mode
        weight_buffers()
    if activations not in ACT_PLACES:
        raise ValueError(f"Activations must be one of {', '.join(ACT_PLACES)}, not "
                         f"{activations!r}")
    if activations == "external" or (activations == "auto" and ext and
                                     base.get("act_depth", needs["act_depth"])
                                     < needs["act_depth"]):
        if not ext:
            raise ValueError("External activations need a core with the m_axi port (ext_bits "
                             "32, 64 or 128), not ext_bits=0")
        depth = base.get("act_depth", _fitted_depth("act_depth", needs["act_depth"]))
        if "pool_words" not in fields:       # row tiles run their pools unfused
            base["pool_words"] = 0
        probe = replace(probe, act_depth=depth, ext_bits=ext, pool_words=base["pool_words"])
        # the input as stored if its windows do not fit; the pools unfused
        plan = plan_network(network, probe, fuse=False, dw=False)
        tiles = _spill(network, plan, probe, every=activations == "external")
        if ext_weights:
            weight_buffers()            # of this plan (the first layer's taps may be unpacked)
        else:
            needs["weight_depth"] = max(needs["weight_depth"], plan.weight_words)
        needs.update(act_depth=tiles.peak, desc_depth=descriptor_count(plan.layers, tiles),
                     param_depth=max(needs["param_depth"], plan.param_words))
        if ext_weights:                 # weight tiles inside row tiles: count them
            trial = {**{f: _fitted_depth(f, n) for f, n in needs.items()}, **base,
                     "desc_depth": CoreConfig.INT_FIELDS["desc_depth"][2]}
            needs["desc_depth"] = len(compile(network, CoreConfig(**trial), weights="external",
                                              activations=activations).layers)
    for field, need in needs.items():
        base.setdefault(field, _fitted_depth(field, need))
    return CoreConfig(**base)


def _packing_gains(network: QuantizedNetwork, config: CoreConfig) -> bool:
    """Whether ``network`` takes fewer model cycles on ``config`` with K packing."""
    if config.simd < 2:
        return False
    cycles = [sum(e["cycles"] for e in network_cycles(network, replace(config, pack=on)))
              for on in (False, True)]
    return cycles[1] < cycles[0]


def _dw_gains(network: QuantizedNetwork, config: CoreConfig) -> bool:
    """Whether ``network`` takes fewer model cycles with the depthwise mode (and the
    packing it needs) than on ``config``."""
    cycles = [sum(e["cycles"] for e in network_cycles(network, c))
              for c in (config, replace(config, pack=True, depthwise=True))]
    return cycles[1] < cycles[0]


def compile(network: QuantizedNetwork, config: CoreConfig, *,  # noqa: A001
            weights: str = "auto", activations: str = "auto") -> Program:
    """Compile ``network`` for a core ``config``.

    Parameters
    ----------
    weights : {"auto", "onchip", "external"}
        where the weights live (:data:`hwq.layout.tiling.WEIGHT_PLACES`): ``external``
        streams every matmul layer's weights from the external image in tiles
        (:mod:`hwq.layout.tiling`; the core needs ``ext_bits``); ``auto`` does so only when
        they do not fit the weight memory and the core has the port.
    activations : {"auto", "onchip", "external"}
        where intermediate tensors live (:data:`hwq.layout.acttiles.ACT_PLACES`):
        ``external`` puts every tensor that can go in external memory and runs the layers
        that read or write one in tiles of output rows (:mod:`hwq.layout.acttiles`; the
        core needs ``ext_bits``); ``auto`` does so, largest tensor first, only when they do
        not fit the activation memory and the core has the port.

    Raises
    ------
    ValueError
        a weight format the PE does not take, a bit width wider than the datapath, an
        accumulator that could overflow, an op the core does not run, or a network that does
        not fit the memories (every memory short, its total need, and the depths that fit).
    """
    if not isinstance(network, QuantizedNetwork):
        raise TypeError(f"Network must be a QuantizedNetwork, not {type(network).__name__}")
    if not isinstance(config, CoreConfig):
        raise TypeError(f"Config must be a CoreConfig, not {type(config).__name__}")
    if weights not in WEIGHT_PLACES:
        raise ValueError(f"Weights must be one of {', '.join(WEIGHT_PLACES)}, not {weights!r}")
    if weights == "external" and not config.external:
        raise ValueError("External weights need a core with the m_axi port (ext_bits 32, 64 "
                         "or 128), not ext_bits=0")
    if network.act_bits > config.act_bits:
        raise ValueError(f"Network activations of {network.act_bits} bits are wider than the "
                         f"core's {config.act_bits}-bit activations (act_bits)")
    if activations not in ACT_PLACES:
        raise ValueError(f"Activations must be one of {', '.join(ACT_PLACES)}, not "
                         f"{activations!r}")
    if activations == "external" and not config.external:
        raise ValueError("External activations need a core with the m_axi port (ext_bits 32, "
                         "64 or 128), not ext_bits=0")
    plan = plan_network(network, config)
    needs = memory_needs(plan)
    external = weights == "external" or (
        weights == "auto" and config.external and needs["weight_depth"] > config.weight_depth)
    spill = activations == "external" or (
        activations == "auto" and config.external and needs["act_depth"] > config.act_depth)
    tiles = None
    if spill:
        # row tiles run their pools unfused, and no layer in the depthwise mode
        plan = plan_network(network, config, fuse=False, dw=False)
        tiles = _spill(network, plan, config, every=activations == "external")
        del needs["act_depth"]          # the tiles' staging buffers: fitted by _spill
        needs["desc_depth"] = 0         # the tiles' descriptors: checked after cutting them
    if external:
        if not spill and any(lay.dw is not None for lay in plan.layers):
            plan = plan_network(network, config, dw=False)     # weight tiles: no depthwise mode
        del needs["weight_depth"]       # the tiles' buffers: checked when cutting the tiles
        needs["desc_depth"] = 0         # the tiles' descriptors: checked after cutting them
    short = {f: n for f, n in needs.items() if n > getattr(config, f)}
    if short:
        parts = [f"the {_MEMORY[f][0]} memory needs {n} {_MEMORY[f][1]}, "
                 f"{getattr(config, f)} available" for f, n in short.items()]
        fits = ", ".join(f"{f}={_fitted_depth(f, n)}" for f, n in short.items())
        hint = ("; or stream the weights from external memory (ext_bits=64)"
                if "weight_depth" in short and not config.external else "")
        if "act_depth" in short and not config.external:
            hint += "; or keep activations in external memory in row tiles (ext_bits=64)"
        raise ValueError(f"Network does not fit the core: {'; '.join(parts)} "
                         f"({fits} would fit){hint}")
    return _pack(network, config, plan, external=external, tiles=tiles)


def _spill(network: QuantizedNetwork, plan: Plan, config: CoreConfig, *,
           every: bool) -> TilePlan:
    """The tensors in external memory and the row tiles (:mod:`hwq.layout.acttiles`): every
    one that can go, or the largest first until the rest fits."""
    words = {iv.name: iv.words for iv in plan.intervals}
    can = spillable(plan.layers, window=plan.window is not None)
    if not can:
        raise ValueError("Network does not fit the activation memory, and no tensor of it can "
                         "live in external memory (only tensors read by layers of one input "
                         "can)")
    if every:
        return plan_tiles(plan.layers, plan.intervals, words, can, config)
    order = sorted(can, key=lambda t: -words[t])
    error: ValueError | None = None
    for k in range(1, len(order) + 1):
        try:
            return plan_tiles(plan.layers, plan.intervals, words, order[:k], config)
        except ValueError as exc:
            error = exc
    raise ValueError(f"Network does not fit the activation memory even with "
                     f"{', '.join(order)} in external memory: {error}")


def _pack(network: QuantizedNetwork, config: CoreConfig, plan: Plan, *,
          external: bool = False, tiles: TilePlan | None = None) -> Program:
    words = core_words(config)
    s = config.simd
    overheads = cyc.core_overheads(config.pack)
    bases, peak = (tiles.bases, tiles.peak) if tiles is not None else allocate(plan.intervals)
    act_base = 0        # the first external activation word (after the weight image): below
    shapes = network.tensor_shapes()

    def tensor(name: str) -> Tensor:
        st = plan.storage[name]
        owner = plan.owner[name]
        ext = None if tiles is None else tiles.external.get(owner)
        return Tensor(base=bases.get(owner, 0) if ext is None else 0, chw=st.chw,
                      ct=math.ceil(st.chw[0] / s), shape=shapes[name],
                      window=plan.window if name == INPUT else None,
                      external=None if ext is None else ext + act_base)

    descs: list[dict[str, Any]] = []
    weight_imgs: list[np.ndarray] = []
    layer_imgs: list[np.ndarray | None] = []
    desc_imgs: list[np.ndarray | None] = []      # per descriptor (row tiles share theirs)
    param_imgs: list[np.ndarray] = []
    infos: list[dict[str, Any]] = []
    w_used = p_used = 0
    for i, layer in enumerate(plan.layers):
        srcs = [tensor(t) for t in layer.sources]
        terms = layer.terms
        if len(srcs) > 1:                # read the sources in address order
            srcs, terms = _address_order(srcs, terms)
        dst = tensor(layer.out)
        c_in, h, w = layer.in_chw
        _, oh, ow = layer.out_chw
        d: dict[str, Any] = dict(
            last=int(i == len(plan.layers) - 1), in_h=h, in_w=w, out_h=oh, out_w=ow,
            in_ct=srcs[0].ct, out_ct=dst.ct, out_base=dst.base)
        op = layer.op
        info: dict[str, Any] = {"name": op.name, "op": op.kind}
        if isinstance(layer.prim, Pool):
            src, prim = srcs[0], layer.prim
            (kh, kw), (sh, sw), (pt, _, pl, _) = prim.kernel, prim.stride, prim.padding
            info["kind"] = "pool"
            d.update(kind=KIND_POOL, pos0=src.base - (pt * w + pl) * src.ct,
                     col_step=sw * src.ct, row_step=sh * w * src.ct, dx_step=src.ct,
                     dy_step=w * src.ct, stride_h=sh, stride_w=sw, pad_t=pt, pad_l=pl,
                     kernel_h=kh, kernel_w=kw)
            info["cycles"] = cyc.maxpool_cycles(channels=c_in, out_positions=oh * ow, simd=s,
                                                taps=kh * kw, overheads=overheads)
            layer_imgs.append(None)
        else:
            prim = layer.prim
            info["kind"] = "matmul"
            need = accumulator_bits(prim.weight, config.act_bits, None)
            if need > config.acc_bits:
                raise ValueError(f"{op.name}: the accumulator needs {need} bits for this layer, "
                                 f"the core has {config.acc_bits} (raise acc_bits)")
            if layer.dw is not None:     # the depthwise mode: its own micro-ops
                img, fields = dw_image(layer.dw, w, srcs[0].ct, words), layer.dw.fields
                meta = {"groups": layer.dw.tiles, "steps": []}
            else:
                img, fields, meta = _matmul_image(op.name, prim, terms, srcs, w, config, words)
            prm = _params(prim, config, words)
            layer_imgs.append(img)
            if external:                 # each layer's micro-ops from 0; tiled below
                w_used = 0
            w_base, p_base = w_used, p_used
            w_used += img.shape[0]
            p_used += prm.shape[0]
            weight_imgs.append(img)
            param_imgs.append(prm)
            (sh, sw), (pt, _, pl, _) = prim.stride, prim.padding
            ct0 = srcs[0].ct
            # a fused pool: the pooled positions step by the pool's stride in conv positions,
            # the window's taps by one conv position (input step and input rows/columns)
            (kh, kw), (psh, psw) = layer.pool.kernel if layer.pool else (1, 1), \
                layer.pool.stride if layer.pool else (1, 1)
            d.update(kind=KIND_MATMUL, stride_h=psh * sh, stride_w=psw * sw, pad_t=pt,
                     pad_l=pl, pos0=srcs[0].base - (pt * w + pl) * ct0,
                     col_step=psw * sw * ct0, row_step=psh * sh * w * ct0, w_base=w_base,
                     w_last=w_used - 1, p_base=p_base, lo=prim.requant.lo,
                     hi=prim.requant.hi, **fields)
            if layer.pool is not None:
                d.update(fuse=1, kernel_h=kh, kernel_w=kw, dx_step=sw * ct0,
                         dy_step=sh * w * ct0, tap_sh=sh, tap_sw=sw)
                info["fused"] = layer.pool_name
            positions = oh * ow * kh * kw
            info.update(meta, positions=positions, w_base=w_base, w_words=int(img.shape[0]),
                        p_base=p_base,
                        cycles=cyc.matmul_cycles(positions=positions, steps=meta["steps"],
                                                 lanes=config.lanes, simd=s,
                                                 overheads=overheads)
                        + (FUSED_WRITE_STAGES if layer.pool is not None else 0))
        if layer.dw is not None:
            dw_descs, dw_infos = dw_descriptors(d, info, layer.dw, w_base, overheads)
            descs += dw_descs
            infos += dw_infos
            desc_imgs += [layer_imgs[-1]] * len(dw_descs)
            continue
        if tiles is not None and i in tiles.tiles:
            kept = [t for t in (layer.sources[0], layer.out) if t not in tiles.external]
            t_descs, t_infos = tile_layer(
                i, layer, d, info, tiles, config,
                src_base=srcs[0].base if layer.sources[0] in kept else None,
                dst_base=dst.base if layer.out in kept else None,
                act_beats=words.ext_act_beats)
            descs += t_descs
            infos += t_infos
            desc_imgs += [None if td.get("nop") else layer_imgs[-1] for td in t_descs]
            continue
        descs.append(d)
        infos.append(info)
        desc_imgs.append(layer_imgs[-1])
    ext_image = np.zeros((0, words.ext_chunks), np.uint32)
    if external:
        descs, infos, ext_image = tile_descriptors(descs, infos, desc_imgs, config, words)
        weight_imgs = []
    if tiles is not None:
        # the external activation regions after the weight image: relocate the row tiles'
        # loads and stores, and hold zeros where the tensors go
        ab, wb = words.ext_act_beats, words.ext_beats
        act_base = -(-ext_image.shape[0] * wb // ab)
        for d, info in zip(descs, infos, strict=True):
            if d.get("ld_act"):
                d["ld_src"] += act_base
                info["ld_src"] += act_base
            if d.get("st_len"):
                d["st_dst"] += act_base
                info["st_dst"] += act_base
                info["cycles"] = store_descriptor_cycles(config, d["st_dst"], d["st_len"], ab)
        rows = -(-(act_base + tiles.ext_words) * ab // wb)
        ext_image = np.concatenate([ext_image, np.zeros((rows - ext_image.shape[0],
                                                         words.ext_chunks), np.uint32)])
    if tiles is not None or external:
        for j, d in enumerate(descs):
            d["last"] = int(j == len(descs) - 1)
        if len(descs) > config.desc_depth:
            what = "weight and row tiles" if external and tiles else (
                "weight tiles" if external else "row tiles")
            raise ValueError(f"Network does not fit the core: its {what} need "
                             f"{len(descs)} descriptors, {config.desc_depth} available "
                             f"(desc_depth={_fitted_depth('desc_depth', len(descs))} would "
                             "fit, or larger memories)")
    if config.external and not external:    # weights on chip, on a core with the load check
        for d, info in zip(descs, infos, strict=True):
            if "rows" in info:          # a row tile, its load or store: counted already
                continue
            d["out_lim"] = d["out_ct"]
            info["cycles"] += LOAD_CHECK_STAGES
    for d, info in zip(descs, infos, strict=True):
        for name, value in d.items():
            words.desc.check(name, value, f"{info['name']}: descriptor field {name}")

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
        "ext": ext_image,
        "desc": words.desc.pack(len(descs), **desc_values),
        "weight": np.concatenate(weight_imgs) if weight_imgs else
        np.zeros((0, words.weight.chunks), np.uint32),
        "param": np.concatenate(param_imgs) if param_imgs else
        np.zeros((0, words.param.chunks), np.uint32),
    }
    meta = {"network": dict(network.meta), "ops": [op.name for op in network.ops],
            "act_peak": peak}
    if tiles is not None:
        meta["act_external"] = {t: w + act_base for t, w in tiles.external.items()}
        meta["act_external_words"] = tiles.ext_words
    return Program(config=config, images=images, input=tensor(INPUT),
                   output=tensor(network.output), layers=infos, meta=meta)


def _address_order(srcs: list[Tensor], terms: MatmulTerms) -> tuple[list[Tensor], MatmulTerms]:
    """Sources sorted by base address, the terms' channel tiles permuted to match."""
    if terms.pairs is not None:
        raise AssertionError("a matmul over several sources is never packed")
    order = sorted(range(len(srcs)), key=lambda j: srcs[j].base)
    starts = np.concatenate([[0], np.cumsum(terms.source_tiles)])
    perm = np.concatenate([np.arange(starts[j], starts[j + 1]) for j in order])
    return [srcs[j] for j in order], replace(
        terms, terms=terms.terms[:, :, :, :, perm], source_tiles=[terms.source_tiles[j]
                                                                  for j in order])


def _matmul_image(name: str, prim: Matmul, terms: MatmulTerms, srcs: list[Tensor], in_w: int,
                  config: CoreConfig, words: Any) -> tuple[np.ndarray, dict, dict]:
    """Micro-op image, descriptor fields (fmt, table) and layer facts of one matmul layer."""
    pe, p, s = config.pe, config.lanes, config.simd
    t_all = terms.terms                                  # (T, G, KH, KW, CT, P, S)
    n_terms, g_n, kh, kw, ct_n = t_all.shape[:5]
    fields: dict[str, Any] = {"fmt": FMT_INT}
    zero = 0                                             # the payload code of weight 0
    if pe == "bit_serial":
        bits, planes = cyc.tile_planes(t_all)           # (T, G, KH, KW, CT), (..., 8)
        sel = np.argwhere(planes)                       # (n, 6): term, g, u, v, ct, plane
        k, g, u, v, t, pl = sel.T
        b = bits[k, g, u, v, t]
        codes = t_all[k, g, u, v, t] & ((1 << b) - 1)[:, None, None]
        payload = ((codes >> pl[:, None, None]) & 1).reshape(len(sel), p * s)
        extra = {"shift": pl, "neg": (pl == b - 1).astype(np.int64)}
        stored = (bits > 0).any(axis=0)
    else:
        nz = (t_all != 0).any(axis=(-2, -1))             # (T, G, KH, KW, CT)
        stored = nz.any(axis=0)
        sel = np.argwhere(nz)
        k, g, u, v, t = sel.T
        vals = t_all[k, g, u, v, t].reshape(len(sel), p * s)
        if terms.kind == "pot":
            payload = PotFormat(config.weight_bits).encode(vals).astype(np.int64)
        elif terms.kind == "int":
            payload = IntFormat(config.weight_bits).encode(vals).astype(np.int64)
        else:
            table = np.zeros(1 << config.weight_bits, dtype=np.int64)
            table[:terms.table.size] = terms.table
            fmt = CodebookFormat(config.weight_bits, table=tuple(terms.table.tolist()),
                                 table_bits=config.table_bits)
            payload = fmt.encode(vals).astype(np.int64)
            # the zero entry may be at any index: padding micro-ops must carry its index
            zero = int(fmt.encode([0])[0])
            fields = {"fmt": FMT_CODEBOOK, "table": table}
        extra = {}
    # micro-ops in walk order: group, tap, channel tile, term (bit_serial: then plane)
    counts = np.bincount(g, minlength=g_n)
    floor = cyc.min_group_steps(p, s)
    fill = np.maximum(floor - counts, 0)                 # every group gets `floor` micro-ops
    fg = np.repeat(np.arange(g_n), fill)
    key = np.lexsort((k, t, v, u, g)) if len(g) else np.zeros(0, np.int64)
    cols = {"g": np.concatenate([g[key], fg]), "u": np.concatenate([u[key], 0 * fg]),
            "v": np.concatenate([v[key], 0 * fg]), "t": np.concatenate([t[key], 0 * fg])}
    if config.pack:     # the second word: the paired tap's last tile, or the first word again
        q = (terms.pairs[g, u, v, t] if terms.pairs is not None
             else np.full(len(g), -1, np.int64))
        q = np.concatenate([q[key], np.full(len(fg), -1, np.int64)])
        paired = q >= 0
        cols.update(u2=np.where(paired, q // kw, cols["u"]),
                    v2=np.where(paired, q % kw, cols["v"]),
                    t2=np.where(paired, ct_n - 1, cols["t"]),
                    split=np.where(paired, terms.split, 0))
    payload = np.concatenate([payload[key], np.full((len(fg), p * s), zero, np.int64)])
    extra = {n: np.concatenate([e[key], 0 * fg]) for n, e in extra.items()}
    order = np.argsort(cols["g"], kind="stable")
    cols = {n: c[order] for n, c in cols.items()}
    payload = payload[order]
    extra = {n: e[order] for n, e in extra.items()}
    n = len(order)
    glast = np.zeros(n, np.int64)
    glast[np.cumsum(np.bincount(cols["g"], minlength=g_n)) - 1] = 1
    # channel tile -> (source, its tile); off = the source's distance + tap + tile
    src_of = np.repeat(np.arange(len(srcs)), terms.source_tiles)
    local = np.concatenate([np.arange(c) for c in terms.source_tiles])
    dist = np.array([src.base - srcs[0].base for src in srcs], dtype=np.int64)
    if (dist < 0).any():
        raise AssertionError(f"{name}: sources must be in address order")
    (dh, dw), ct0 = prim.dilation, srcs[0].ct
    du, dv = cols["u"] * dh, cols["v"] * dw
    off = dist[src_of[cols["t"]]] + (du * in_w + dv) * ct0 + local[cols["t"]]
    fields2 = {"off": off, "u": du, "v": dv}
    if config.pack:
        du2, dv2 = cols["u2"] * dh, cols["v2"] * dw
        fields2.update(off2=dist[src_of[cols["t2"]]] + (du2 * in_w + dv2) * ct0
                       + local[cols["t2"]], u2=du2, v2=dv2, split=cols["split"])
    for field, val in fields2.items():
        words.weight.check(field, val, f"{name}: micro-op field {field}")
    img = words.weight.pack(n, glast=glast, w=payload, **fields2, **extra)
    meta: dict[str, Any] = {"groups": g_n, "k_tiles": kh * kw * ct_n,
                            "steps": counts.tolist(),
                            "tile_mask": stored.reshape(g_n, -1).tolist()}
    if pe == "bit_serial":
        meta["tile_bits"] = bits.max(axis=0).reshape(g_n, -1).tolist()
    return img, fields, meta


def _params(prim: Matmul, config: CoreConfig, words: Any) -> np.ndarray:
    p = config.lanes
    c_out = int(prim.weight.shape[0])
    g_n = math.ceil(c_out / p)
    rq = prim.requant
    bias = np.zeros(g_n * p, np.int64)
    m = np.ones(g_n * p, np.int64)
    sh = np.ones(g_n * p, np.int64)
    bias[:c_out], m[:c_out], sh[:c_out] = rq.bias, rq.M, rq.S
    return words.param.pack(g_n, bias=bias.reshape(g_n, p), m=m.reshape(g_n, p),
                            s=sh.reshape(g_n, p))


def network_cycles(network: QuantizedNetwork, config: CoreConfig) -> list[dict[str, Any]]:
    """Model cycles of every op of ``network`` on a core ``config``, without packing.

    Returns one dict per op: ``name``, ``kind`` (the op kind), ``cycles`` (0 for an op that
    lowers to nothing, such as flatten, and for a max pool fused into the matmul before it,
    which names that matmul in ``fused_into``) and, for matmul layers, ``words`` (micro-ops
    per group), ``positions`` (that it computes), ``macs`` (products of nonzero weights per
    inference), ``bit_ops`` (their one-bits at each weight's narrowest two's complement
    width) and ``fused`` (the max pool in its write-back, if any); a layer in the depthwise
    mode (:mod:`hwq.layout.dwmode`) has ``dw`` and, as ``steps``, each channel tile's
    micro-ops of a row's first position and of the others (its ``cycles``: the sum of its
    descriptors').
    """
    plan = plan_network(network, config)
    overheads = cyc.core_overheads(config.pack)
    by_op = {layer.op.name: layer for layer in plan.layers}
    fused = {layer.pool_name: layer.op.name for layer in plan.layers if layer.pool is not None}
    out = []
    for op in network.ops:
        entry: dict[str, Any] = {"name": op.name, "kind": op.kind, "cycles": 0}
        layer = by_op.get(op.name)
        if op.name in fused:
            entry["fused_into"] = fused[op.name]
        if layer is not None and isinstance(layer.prim, Pool):
            kh, kw = layer.prim.kernel
            entry["cycles"] = cyc.maxpool_cycles(channels=layer.in_chw[0], simd=config.simd,
                                                 out_positions=layer.out_chw[1] *
                                                 layer.out_chw[2], taps=kh * kw,
                                                 overheads=overheads)
        elif layer is not None:
            steps = layer.terms.group_steps(config.pe)
            positions = layer.out_chw[1] * layer.out_chw[2]
            if layer.pool is not None:      # the conv positions of the pool windows
                positions *= layer.pool.kernel[0] * layer.pool.kernel[1]
                entry["fused"] = layer.pool_name
            w = layer.prim.weight[layer.prim.weight != 0]
            entry.update(steps=steps.tolist(), positions=positions,
                         macs=positions * int(w.size),
                         bit_ops=positions * int(cyc.bit_ops(w)))
            if layer.dw is not None:        # the depthwise mode: one descriptor per tile
                entry.update(steps=[list(layer.dw.steps(t)) for t in range(layer.dw.tiles)],
                             dw=True, cycles=sum(layer.dw.cycles(*layer.out_chw[1:],
                                                                 overheads)))
                out.append(entry)
                continue
            entry["cycles"] = cyc.matmul_cycles(positions=positions, steps=steps,
                                                lanes=config.lanes, simd=config.simd,
                                                overheads=overheads) \
                + (FUSED_WRITE_STAGES if layer.pool is not None else 0)
        out.append(entry)
    return out
