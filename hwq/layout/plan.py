"""The layout compiler's plan of a network on a core: descriptors, storage and memory needs.

:func:`plan_network` decides everything :func:`hwq.layout.compiler.compile` needs before it
packs words: one layer per descriptor (an op and its primitive, :mod:`hwq.ir.lowering`), the
storage each tensor shares, the activation regions' liveness, the weight and parameter
words, and the memory depths they need (:func:`memory_needs`).

Fused pooling (:func:`_fuse_pools`): on a core with a pool buffer (``pool_words``), a max
pool runs in the write-back of the matmul that produces its input, as one descriptor that
computes only the conv positions of the pool windows, in window order, and writes the
pooled tensor; the conv's own output is never stored. The standalone pool descriptor stays
for every pool the rule of :func:`fusable` refuses, and for every pool of a program whose
activations run in row tiles (:mod:`hwq.layout.acttiles`).

Activations: every stored tensor gets a region by liveness (:mod:`hwq.layout.alloc`). The
network input is stored in im2col order when that packs the first layer's kernel taps into
the SIMD lanes and the memory holds it (:func:`_input_window`,
:class:`~hwq.layout.program.Window`); the first layer is then a 1x1 convolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hwq.config import CoreConfig
from hwq.golden import cycles as cyc
from hwq.ir import INPUT, Alias, Matmul, Pool, QuantizedNetwork, Storage
from hwq.layout.alloc import Interval, allocate
from hwq.layout.dwmode import DwLayer, plan_layer
from hwq.layout.encode import MatmulTerms, matmul_terms
from hwq.layout.program import Window

__all__ = ["Layer", "Plan", "fusable", "fused_need", "memory_needs", "plan_network"]


@dataclass(eq=False)
class Layer:
    """One descriptor: an op, its primitive, the stored tensors it reads and writes."""

    op: Any
    prim: Matmul | Pool
    sources: list[str]            # storage owners read, in the primitive's source order
    out: str                      # storage owner written (the op's own tensor)
    in_chw: tuple[int, int, int]
    out_chw: tuple[int, int, int]
    terms: MatmulTerms | None = None
    pool: Pool | None = None      # a max pool fused into this matmul's write-back
    pool_name: str | None = None  # its op
    dw: DwLayer | None = None     # the depthwise mode's mapping (:mod:`hwq.layout.dwmode`)


@dataclass(eq=False)
class Plan:
    """Everything :func:`compile` decides before packing: layers, storage, memory needs."""

    layers: list[Layer]
    owner: dict[str, str]                  # tensor -> the tensor whose storage it shares
    storage: dict[str, Storage]
    intervals: list[Interval]
    weight_words: int
    param_words: int
    window: Window | None = None           # the input's im2col order, if it has one


def plan_network(network: QuantizedNetwork, config: CoreConfig, *, fuse: bool = True,
          dw: bool = True) -> Plan:
    """The plan of ``network`` on ``config``: with the input in im2col order when that packs
    the first layer's taps (:func:`_input_window`) and the activation memory holds it, else
    with the input as stored; with the max pools :func:`fusable` allows fused unless
    ``fuse`` is False (a program with activation tiles, :mod:`hwq.layout.acttiles`); with
    the depthwise mode's layers (:mod:`hwq.layout.dwmode`) unless ``dw`` is False (weight or
    activation tiles)."""
    plan = _plan_with(network, config, window=True, fuse=fuse, dw=dw)
    if plan.window is not None and memory_needs(plan)["act_depth"] > config.act_depth:
        return _plan_with(network, config, window=False, fuse=fuse, dw=dw)
    return plan


def _plan_with(network: QuantizedNetwork, config: CoreConfig, *, window: bool,
               fuse: bool = True, dw: bool = True) -> Plan:
    shapes = network.tensor_shapes()
    storage = {INPUT: Storage.of_shape(network.input_shape)}
    owner = {INPUT: INPUT}
    layers: list[Layer] = []
    s = config.simd
    for op in network.ops:
        prim = op.lower([storage[t] for t in op.inputs])
        if isinstance(prim, Alias):
            storage[op.name] = storage[op.inputs[0]]
            owner[op.name] = owner[op.inputs[0]]
            continue
        owner[op.name] = op.name
        c, h, w = storage[op.inputs[0]].chw
        if isinstance(prim, Pool):
            out = (c, *prim.out_hw(h, w))
            sources = [owner[op.inputs[0]]]
        else:
            out = (int(prim.weight.shape[0]), *prim.out_hw(h, w))
            sources = [owner[op.inputs[i]] for i in prim.sources]
            chws = {storage[op.inputs[i]].chw[1:] for i in prim.sources}
            if len(chws) != 1:
                raise ValueError(f"{op.name}: the core reads tensors of one height and width "
                                 f"together, not {sorted(chws)}")
        storage[op.name] = Storage(out)
        if len(shapes[op.name]) == 3 and out != shapes[op.name]:
            raise AssertionError(f"{op.name}: lowered shape {out} != {shapes[op.name]}")
        layers.append(Layer(op=op, prim=prim, sources=sources, out=op.name,
                             in_chw=(c, h, w), out_chw=out))
    if not layers:
        raise ValueError("Network has no conv2d, linear or maxpool2d layer for the core to run")
    window = _input_window(network, layers, owner, storage, s) if window else None
    if fuse:
        layers = _fuse_pools(network, layers, owner, config)

    # liveness: a storage owner lives from the layer writing it to the last layer reading it
    index = {layer.out: i for i, layer in enumerate(layers)}
    last = {INPUT: -1, **{layer.out: i for i, layer in enumerate(layers)}}
    for i, layer in enumerate(layers):
        for t in layer.sources:
            last[t] = max(last[t], i)
    out_owner = owner[network.output]
    last[out_owner] = len(layers)
    intervals = [Interval(name=t, words=_words(storage[t], s), start=index.get(t, -1),
                          end=last[t]) for t in [INPUT] + [layer.out for layer in layers]]

    weight_words = param_words = 0
    for layer in layers:
        if isinstance(layer.prim, Matmul):
            chans = [storage[t].chw[0] for t in layer.sources]
            layer.terms = matmul_terms(layer.prim, chans, config, layer.op.name)
            floor = cyc.min_group_steps(config.lanes, s)
            steps = np.maximum(layer.terms.group_steps(config.pe), floor)
            if dw and config.depthwise and layer.pool is None:
                plain = matmul_terms(layer.prim, chans, replace(config, pack=False,
                                                                depthwise=False), layer.op.name)
                layer.dw = plan_layer(layer.prim, chans, config, plain, layer.out_chw[1:],
                                      steps)
            if layer.dw is not None:
                weight_words += sum(sum(layer.dw.steps(t)) for t in range(layer.dw.tiles))
            else:
                weight_words += int(steps.sum())
            param_words += math.ceil(layer.out_chw[0] / config.lanes)
    return Plan(layers=layers, owner=owner, storage=storage, intervals=intervals,
                 weight_words=weight_words, param_words=param_words, window=window)


def _input_window(network: QuantizedNetwork, layers: list[Layer], owner: dict[str, str],
                  storage: dict[str, Storage], simd: int) -> Window | None:
    """Store the network input in im2col order when that packs the first layer's taps.

    When the first layer is a matmul that alone reads the network input and its
    ``KH * KW * ceil(C / simd)`` channel tiles per group exceed ``ceil(KH * KW * C / simd)``,
    the input is stored as its windows (:class:`~hwq.layout.program.Window`, written by the
    host) and the layer becomes a 1x1 convolution over them with the weight's taps and
    channels in the same ``(u, v, c)`` order. Updates ``layers[0]`` and the input's storage;
    returns the window, or None (nothing changed).
    """
    first = layers[0]
    readers = [lay for lay in layers if INPUT in lay.sources]
    if (not isinstance(first.prim, Matmul) or readers != [first] or first.sources != [INPUT]
            or owner[network.output] == INPUT):
        return None
    prim = first.prim
    c, h, w = storage[INPUT].chw
    kh, kw = prim.kernel
    if kh * kw * math.ceil(c / simd) <= math.ceil(kh * kw * c / simd):
        return None
    win = Window(chw=(c, h, w), kernel=(kh, kw), stride=prim.stride, padding=prim.padding,
                 dilation=prim.dilation)
    c_out = prim.weight.shape[0]
    weight = prim.weight.transpose(0, 2, 3, 1).reshape(c_out, kh * kw * c, 1, 1)
    first.prim = replace(prim, weight=np.ascontiguousarray(weight), stride=(1, 1),
                         padding=(0, 0, 0, 0), dilation=(1, 1))
    storage[INPUT] = Storage(win.stored_chw())
    first.in_chw = win.stored_chw()
    if first.prim.out_hw(*first.in_chw[1:]) != first.out_chw[1:]:
        raise AssertionError(f"{first.op.name}: im2col positions {first.in_chw[1:]} != "
                             f"{first.out_chw[1:]}")
    return win


def fusable(pool: Layer, producer: Layer | None, readers: int, network_output: bool,
             config: CoreConfig) -> str | None:
    """Why max pool ``pool`` cannot run in ``producer``'s write-back, or None if it can.

    The rule: the pool's input is written by a matmul (conv, linear, add, average pool) and
    read by nothing else (not by another layer, not the network's output); the pool has no
    padding and its windows do not overlap (``stride >= kernel`` in both directions, so each
    conv position is in at most one window: computing it once per window costs no more
    than the standalone walk); the matmul is not already fused; the core has a pool buffer
    of at least the matmul's output channel tiles (``pool_words >= ceil(C / simd)``); a conv
    position takes two cycles or more (``ceil(C / lanes) * max(1, lanes // simd) >= 2``: the
    write-back writes a running maximum into the buffer a cycle after reading it, so the
    same word's next read must come two cycles later, :mod:`hwq.rtl.writeback`). Conv
    positions in no window (a floor-mode remainder, a stride past the kernel) are skipped.
    """
    if producer is None or not isinstance(producer.prim, Matmul):
        return "its input is not a matmul's output"
    if producer.pool is not None:
        return "its producer already has a pool"
    if readers != 1 or network_output:
        return "its input is also read elsewhere"
    (kh, kw), (sh, sw) = pool.prim.kernel, pool.prim.stride
    if any(pool.prim.padding):
        return "it has padding"
    if sh < kh or sw < kw:
        return "its windows overlap"
    groups = math.ceil(producer.out_chw[0] / config.lanes)
    if groups * cyc.min_group_steps(config.lanes, config.simd) < 2:
        return ("its matmul has one group of output channels (a position in one cycle: the "
                "buffer's running maximum would be read before it is written back)")
    need = math.ceil(producer.out_chw[0] / config.simd)
    if config.pool_words < need:
        return (f"the pool buffer holds {config.pool_words} words, the matmul writes {need} "
                "per position")
    return None


def _fuse_pools(network: QuantizedNetwork, layers: list[Layer], owner: dict[str, str],
                config: CoreConfig) -> list[Layer]:
    """``layers`` with every max pool that :func:`fusable` allows folded into the matmul
    before it: the matmul writes the pool's tensor over the pooled positions, the pool has
    no layer of its own."""
    producers = {layer.out: layer for layer in layers}
    kept = []
    for layer in layers:
        if isinstance(layer.prim, Pool):
            src = layer.sources[0]
            readers = sum(src in lay.sources for lay in layers)
            producer = producers.get(src)
            if fusable(layer, producer, readers, owner[network.output] == src,
                        config) is None:
                producer.pool, producer.pool_name = layer.prim, layer.op.name
                producer.out, producer.out_chw = layer.out, layer.out_chw
                continue
        kept.append(layer)
    return kept


def fused_need(network: QuantizedNetwork, config: CoreConfig) -> int:
    """The pool buffer words the pools that may fuse on ``config`` need (0: none may)."""
    plan = plan_network(network, replace(config, pool_words=CoreConfig.INT_FIELDS["pool_words"][2]))
    return max((math.ceil(lay.out_chw[0] / config.simd) for lay in plan.layers
                if lay.pool is not None), default=0)


def _words(st: Storage, simd: int) -> int:
    c, h, w = st.chw
    return h * w * math.ceil(c / simd)


def memory_needs(plan: Plan) -> dict[str, int]:
    """Words (descriptors) each memory must hold."""
    _, peak = allocate(plan.intervals)
    descs = sum(1 if lay.dw is None else lay.dw.tiles for lay in plan.layers)
    return {"desc_depth": descs, "act_depth": peak,
            "weight_depth": plan.weight_words, "param_depth": plan.param_words}
