"""Random integer networks for tests and benchmarks (layout, RTL, simulation).

>>> import numpy as np
>>> net = random_network(np.random.default_rng(0), kind="pot", bits=4)
>>> [op.kind for op in net.ops]
['conv2d', 'conv2d', 'maxpool2d', 'flatten', 'linear']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from hwq.golden._checks import signed_range
from hwq.golden.requant import multiplier_from_scale
from hwq.ir import (
    ADD_WEIGHT_MAX,
    INPUT,
    Add,
    AvgPool2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    QuantizedNetwork,
    Requant,
    WeightSpec,
)

#: A small network with awkward shapes: channels not a multiple of 4 or 8, stride 2, padding.
DEFAULT_ARCH: tuple[tuple[Any, ...], ...] = (
    ("conv", 5, 3, 1, 1, True),   # out channels, kernel, stride, padding, relu
    ("conv", 7, 3, 2, 1, True),
    ("pool",),
    ("flatten",),
    ("linear", 10, False),        # out features, relu
)


def random_weights(rng: np.random.Generator, shape: tuple[int, ...], kind: str, bits: np.ndarray,
                   table: np.ndarray | None = None) -> np.ndarray:
    """Uniformly random representable weights of ``shape`` at per-element ``bits``."""
    b = np.broadcast_to(bits, shape)
    if kind == "int":
        lo = signed_range(b)[0]
        return rng.integers(lo, -lo, dtype=np.int64)  # upper bound exclusive: 2**(b-1) - 1
    if kind == "pot":
        # exponents capped at 14: POT(6)/POT(7) allow shifts up to 62, whose products no
        # accumulator of a real core holds; the cap keeps every layer within 48 bits
        max_e = np.minimum((1 << (b - 1)) - 2, 14)
        e = rng.integers(-1, max_e + 1)
        sign = rng.choice(np.array([-1, 1]), size=shape)
        return np.where(e < 0, 0, sign * np.left_shift(1, np.maximum(e, 0))).astype(np.int64)
    if kind == "codebook":
        assert table is not None
        size = np.minimum(1 << b, table.size)
        return table[rng.integers(0, size)]
    raise ValueError(f"Weight format must be int, pot or codebook, not {kind!r}")


def random_network(
    rng: np.random.Generator,
    *,
    input_shape: Sequence[int] = (3, 8, 8),
    arch: Sequence[tuple[Any, ...]] = DEFAULT_ARCH,
    kind: str = "int",
    bits: int | Sequence[int] = 4,
    act_bits: int = 8,
    per_channel_bits: bool = False,
    zero_tile_fraction: float = 0.0,
    zero_tile: tuple[int, int] = (4, 4),
) -> QuantizedNetwork:
    """A valid random :class:`QuantizedNetwork` whose activations spread over their range.

    Parameters
    ----------
    kind : {"int", "pot", "codebook"}
    bits : int or sequence of ints
        code width; with ``per_channel_bits`` each output channel draws from ``bits``.
    zero_tile_fraction : float
        fraction of ``zero_tile`` = (channels, inputs) blocks of each weight matrix (as
        ``(C_out, K)``) set to zero, to exercise sparse-tile skipping.
    """
    choices = np.atleast_1d(np.asarray(bits, dtype=np.int64))
    lo_a, hi_a = signed_range(act_bits)
    shape = tuple(int(s) for s in input_shape)
    ops = []
    for i, layer in enumerate(arch):
        name = f"{layer[0]}{i}"
        if layer[0] in ("conv", "linear"):
            if layer[0] == "conv":
                c_out, k, stride, padding, relu = layer[1:]
                wshape: tuple[int, ...] = (c_out, shape[0], k, k)
            else:
                c_out, relu = layer[1:]
                wshape = (c_out, shape[0])
            if per_channel_bits:
                b = rng.choice(choices, size=(c_out,) + (1,) * (len(wshape) - 1))
            else:
                b = np.asarray(rng.choice(choices))
            table = None
            if kind == "codebook":
                nonzero = rng.choice(np.r_[-128:0, 1:128], size=(1 << int(np.max(b))) - 1,
                                     replace=False)
                # the zero anywhere that every index width of the layer can address
                zero_at = int(rng.integers(0, 1 << int(np.min(b))))
                table = np.insert(nonzero, zero_at, 0).astype(np.int64)
            w = random_weights(rng, wshape, kind, b, table)
            if zero_tile_fraction > 0:
                w = _zero_tiles(rng, w, zero_tile_fraction, zero_tile)
            k_total = int(np.prod(wshape[1:]))
            w_rms = float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) or 1.0
            typical = np.sqrt(k_total) * w_rms * (hi_a / 2)
            m = multiplier_from_scale(np.full(c_out, (hi_a / 2) / typical))
            spread = min(int(typical) // 4 + 1, 1 << 30)
            bias = rng.integers(-spread, spread, size=c_out)
            rq = Requant(bias=bias, M=m.M, S=m.S, lo=0 if relu else lo_a, hi=hi_a)
            spec = WeightSpec(kind=kind, bits=b, table=table)
            if layer[0] == "conv":
                ops.append(Conv2d(name=name, weight=w, spec=spec, requant=rq, stride=stride,
                                  padding=padding))
            else:
                ops.append(Linear(name=name, weight=w, spec=spec, requant=rq))
        elif layer[0] == "pool":
            ops.append(MaxPool2d(name=name))
        elif layer[0] == "flatten":
            ops.append(Flatten(name=name))
        else:
            raise ValueError(f"Unknown layer {layer!r}; use conv, linear, pool or flatten")
        shape = QuantizedNetwork(input_shape=input_shape, act_bits=act_bits, input_scale=1.0,
                                 ops=ops).shapes()[-1]
    return QuantizedNetwork(input_shape=tuple(input_shape), act_bits=act_bits, input_scale=1.0,
                            ops=ops, meta={"generator": "hwq.testing.random_network"})


def random_inputs(rng: np.random.Generator, network: QuantizedNetwork, n: int) -> np.ndarray:
    lo, hi = network.act_range
    return rng.integers(lo, hi + 1, size=(n, *network.input_shape), dtype=np.int64)


def _zero_tiles(rng: np.random.Generator, w: np.ndarray, fraction: float,
                tile: tuple[int, int]) -> np.ndarray:
    flat = w.reshape(w.shape[0], -1).copy()
    rows, cols = tile
    for r in range(0, flat.shape[0], rows):
        for c in range(0, flat.shape[1], cols):
            if rng.random() < fraction:
                flat[r : r + rows, c : c + cols] = 0
    return flat.reshape(w.shape)


#: Block kinds of :func:`random_graph_network`.
GRAPH_BLOCKS = ("res", "res_proj", "dw", "grouped", "maxpool", "avgpool", "odd_conv")


class _GraphBuilder:
    """Ops of a random graph network, each with requant parameters that keep activations
    spread over their range."""

    def __init__(self, rng: np.random.Generator, kind: str, bits: np.ndarray, act_bits: int,
                 per_channel_bits: bool, input_shape: tuple[int, ...]) -> None:
        self.rng, self.kind, self.bits, self.act_bits = rng, kind, bits, act_bits
        self.per_channel = per_channel_bits
        self.ops: list = []
        self.shapes = {INPUT: tuple(input_shape)}
        self.hi = signed_range(act_bits)[1]

    def _name(self, stem: str) -> str:
        return f"{stem}{len(self.ops)}"

    def _push(self, op) -> str:
        self.ops.append(op)
        shapes = [self.shapes[t] for t in op.inputs]
        self.shapes[op.name] = op.output_shape(shapes)
        return op.name

    def _requant(self, channels: int, typical: float, relu: bool) -> Requant:
        lo, hi = signed_range(self.act_bits)
        m = multiplier_from_scale(np.full(channels, (hi / 2) / max(typical, 1e-9)))
        return Requant(bias=np.zeros(channels, np.int64), M=m.M, S=m.S,
                       lo=0 if relu else lo, hi=hi)

    def conv(self, x: str, c_out: int, kernel=(3, 3), stride=1, padding=0, dilation=1,
             groups: int = 1, relu: bool = True) -> str:
        rng = self.rng
        c_in = self.shapes[x][0]
        wshape = (c_out, c_in // groups, *kernel)
        b = (rng.choice(self.bits, size=(c_out, 1, 1, 1)) if self.per_channel
             else np.asarray(rng.choice(self.bits)))
        table = None
        if self.kind == "codebook":
            nonzero = rng.choice(np.r_[-128:0, 1:128], size=(1 << int(np.max(b))) - 1,
                                 replace=False)
            zero_at = int(rng.integers(0, 1 << int(np.min(b))))
            table = np.insert(nonzero, zero_at, 0).astype(np.int64)
        w = random_weights(rng, wshape, self.kind, b, table)
        k_total = int(np.prod(wshape[1:]))
        w_rms = float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) or 1.0
        rq = self._requant(c_out, np.sqrt(k_total) * w_rms * (self.hi / 2), relu)
        spread = max(1, int(np.sqrt(k_total) * w_rms * self.hi / 8))
        rq = Requant(bias=rng.integers(-spread, spread + 1, size=c_out), M=rq.M, S=rq.S,
                     lo=rq.lo, hi=rq.hi)
        return self._push(Conv2d(name=self._name("conv"), inputs=(x,), weight=w,
                                 spec=WeightSpec(kind=self.kind, bits=b, table=table),
                                 requant=rq, stride=stride, padding=padding,
                                 dilation=dilation, groups=groups))

    def add(self, a: str, b: str, relu: bool) -> str:
        wa, wb = (int(v) for v in self.rng.integers(1, ADD_WEIGHT_MAX + 1, size=2))
        if self.rng.random() < 0.5:                   # small weights are common too
            wa, wb = (int(v) for v in self.rng.integers(1, 9, size=2))
        rq = self._requant(self.shapes[a][0], (wa + wb) * self.hi / 3, relu)
        return self._push(Add(name=self._name("add"), inputs=(a, b), weights=(wa, wb),
                              requant=rq))

    def avgpool(self, x: str, kernel, stride, padding) -> str:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        rq = self._requant(self.shapes[x][0], kh * kw * self.hi / 3, False)
        return self._push(AvgPool2d(name=self._name("avg"), inputs=(x,), requant=rq,
                                    kernel=kernel, stride=stride, padding=padding))

    def gap(self, x: str) -> str:
        c, h, w = self.shapes[x]
        rq = self._requant(c, h * w * self.hi / 3, False)
        return self._push(GlobalAvgPool2d(name=self._name("gap"), inputs=(x,), requant=rq))

    def maxpool(self, x: str, kernel, stride, padding) -> str:
        return self._push(MaxPool2d(name=self._name("pool"), inputs=(x,), kernel=kernel,
                                    stride=stride, padding=padding))

    def linear(self, x: str, c_out: int, relu: bool) -> str:
        rng = self.rng
        k = self.shapes[x][0]
        b = (rng.choice(self.bits, size=(c_out, 1)) if self.per_channel
             else np.asarray(rng.choice(self.bits)))
        table = None
        if self.kind == "codebook":
            nonzero = rng.choice(np.r_[-128:0, 1:128], size=(1 << int(np.max(b))) - 1,
                                 replace=False)
            table = np.insert(nonzero, int(rng.integers(0, 1 << int(np.min(b)))), 0)
        w = random_weights(rng, (c_out, k), self.kind, b, table)
        w_rms = float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) or 1.0
        rq = self._requant(c_out, np.sqrt(k) * w_rms * (self.hi / 2), relu)
        return self._push(Linear(name=self._name("fc"), inputs=(x,), weight=w,
                                 spec=WeightSpec(kind=self.kind, bits=b, table=table),
                                 requant=rq))

    def flatten(self, x: str) -> str:
        return self._push(Flatten(name=self._name("flat"), inputs=(x,)))


def random_graph_network(
    rng: np.random.Generator,
    *,
    input_shape: Sequence[int] = (3, 9, 9),
    blocks: Sequence[str] | None = None,
    kind: str = "int",
    bits: int | Sequence[int] = 4,
    act_bits: int = 8,
    per_channel_bits: bool = False,
    classes: int = 5,
) -> QuantizedNetwork:
    """A valid random graph :class:`QuantizedNetwork`: a stem conv, ``blocks`` (residual
    blocks with identity or strided 1x1 shortcuts, depthwise-separable and grouped convs,
    general max and average pools, convs with non-square kernels, per-side padding and
    dilation), then a global average pool or a flatten, and a linear layer.

    ``blocks`` defaults to three kinds drawn from :data:`GRAPH_BLOCKS`.

    >>> net = random_graph_network(np.random.default_rng(0), blocks=["res", "dw"])
    >>> [op.kind for op in net.ops][:5]
    ['conv2d', 'conv2d', 'conv2d', 'add', 'conv2d']
    """
    choices = np.atleast_1d(np.asarray(bits, dtype=np.int64))
    g = _GraphBuilder(rng, kind, choices, act_bits, per_channel_bits, tuple(input_shape))
    if blocks is None:
        blocks = [str(b) for b in rng.choice(GRAPH_BLOCKS, size=3)]
    x = g.conv(INPUT, int(rng.integers(4, 9)), kernel=(3, 3), padding=1)
    for block in blocks:
        c, h, w = g.shapes[x]
        if block == "res":
            y = g.conv(x, c, padding=1)
            y = g.conv(y, c, padding=1, relu=False)
            x = g.add(y, x, relu=bool(rng.random() < 0.7))
        elif block == "res_proj":
            c2 = c + int(rng.integers(1, 5))
            stride = 2 if min(h, w) >= 4 else 1
            y = g.conv(x, c2, stride=stride, padding=1)
            y = g.conv(y, c2, padding=1, relu=False)
            s = g.conv(x, c2, kernel=(1, 1), stride=stride, relu=False)
            x = g.add(s, y, relu=True) if rng.random() < 0.5 else g.add(y, s, relu=True)
        elif block == "dw":
            x = g.conv(x, c, groups=c, padding=1)
            x = g.conv(x, int(rng.integers(3, 12)), kernel=(1, 1))
        elif block == "grouped":
            groups = int(rng.choice([d for d in range(1, c + 1) if c % d == 0]))
            x = g.conv(x, groups * int(rng.integers(1, 4)), groups=groups, padding=1)
        elif block == "maxpool" and min(h, w) >= 2:
            k = int(rng.integers(2, min(3, h, w) + 1))
            x = g.maxpool(x, kernel=k, stride=int(rng.integers(1, 3)),
                          padding=int(rng.integers(0, k // 2 + 1)))
        elif block == "avgpool" and min(h, w) >= 2:
            kh, kw = int(rng.integers(2, min(3, h) + 1)), int(rng.integers(1, min(3, w) + 1))
            x = g.avgpool(x, kernel=(kh, kw), stride=int(rng.integers(1, 3)),
                          padding=(int(rng.integers(0, kh // 2 + 1)),
                                   int(rng.integers(0, kw // 2 + 1))))
        elif block == "odd_conv":
            while True:     # a non-square kernel, per-side padding, dilation, two strides
                kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
                pad = tuple(int(v) for v in rng.integers(0, 3, size=4))
                dh = int(rng.integers(1, 3))
                if h + pad[0] + pad[1] > dh * (kh - 1) and w + pad[2] + pad[3] > kw - 1:
                    break
            x = g.conv(x, int(rng.integers(2, 10)), kernel=(kh, kw),
                       stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))), padding=pad,
                       dilation=(dh, 1))
        elif block not in GRAPH_BLOCKS:
            raise ValueError(f"Unknown block {block!r}; use one of {', '.join(GRAPH_BLOCKS)}")
    if rng.random() < 0.5 and g.shapes[x][1] * g.shapes[x][2] > 1:
        x = g.gap(x)
    x = g.flatten(x)
    g.linear(x, classes, relu=False)
    return QuantizedNetwork(input_shape=tuple(input_shape), act_bits=act_bits, input_scale=1.0,
                            ops=g.ops, meta={"generator": "hwq.testing.random_graph_network"})


def tight_weight_depth(program: Any) -> int:
    """The smallest ``weight_depth`` whose two buffers each hold the largest unit of
    output-channel groups of ``program``'s layers (:mod:`hwq.layout.tiling`): with it,
    every layer of more than one unit is cut into several tiles."""
    cfg = program.config
    floor, align = max(1, cfg.lanes // cfg.simd), max(1, cfg.simd // cfg.lanes)
    units = [sum(max(s, floor) for s in layer["steps"][u:u + align])
             for layer in program.layers if "steps" in layer
             for u in range(0, len(layer["steps"]), align)]
    return max(16, 2 * max(units))


def pool_fusion_network(rng: np.random.Generator, *, kind: str = "int",
                        bits: int | Sequence[int] = 4, act_bits: int = 8,
                        per_channel_bits: bool = False) -> QuantizedNetwork:
    """A graph of max pools that the layout compiler fuses into the write-back of the
    matmul before them and pools it must not fuse (:func:`hwq.layout.plan.fusable`).

    Fused: ``pool1`` (2x2/2 after a padded conv of 10x10: whole windows), ``pool4`` (a 2x1
    window, stride 2 after an add: positions in no window, a row and every other column,
    are skipped). Not fused: ``pool5`` (its input, conv2's, is also read by the add),
    ``pool8`` (windows overlap), ``pool10`` (padding). Some convs have no ReLU, so pooled
    values are negative too.
    """
    choices = np.atleast_1d(np.asarray(bits, dtype=np.int64))
    shape = (3, 10, 10)
    g = _GraphBuilder(rng, kind, choices, act_bits, per_channel_bits, shape)
    c0 = g.conv(INPUT, 5, kernel=(3, 3), padding=1, relu=False)       # 5 x 10 x 10
    p1 = g.maxpool(c0, kernel=2, stride=2, padding=0)                  # fused: 5 x 5 x 5
    c2 = g.conv(p1, 5, kernel=(3, 3), padding=1)                       # 5 x 5 x 5
    a3 = g.add(c2, p1, relu=False)
    p4 = g.maxpool(a3, kernel=(2, 1), stride=2, padding=0)             # fused: 5 x 2 x 3
    p5 = g.maxpool(c2, kernel=(2, 1), stride=2, padding=0)             # c2 read twice
    a6 = g.add(p4, p5, relu=True)
    c7 = g.conv(a6, 7, kernel=(1, 1), relu=False)                      # 7 x 2 x 3
    p8 = g.maxpool(c7, kernel=2, stride=1, padding=0)                  # overlap: 7 x 1 x 2
    c9 = g.conv(p8, 6, kernel=(1, 1))
    p10 = g.maxpool(c9, kernel=2, stride=2, padding=1)                 # padding: 6 x 1 x 2
    x = g.flatten(p10)
    g.linear(x, 4, relu=False)
    return QuantizedNetwork(input_shape=shape, act_bits=act_bits, input_scale=1.0, ops=g.ops,
                            meta={"generator": "hwq.testing.pool_fusion_network"})


def kpack_network(rng: np.random.Generator, *, c_in: int, c_out: int = 6,
                  kernel: tuple[int, int] = (3, 3), stride: int = 1, padding: int = 1,
                  dilation: int = 1, hw: tuple[int, int] = (7, 7), kind: str = "int",
                  bits: int | Sequence[int] = 4, act_bits: int = 8,
                  zero_taps: float = 0.3, lanes: int = 4, simd: int = 4,
                  linear: bool = True) -> QuantizedNetwork:
    """A 1x1 stem conv to ``c_in`` channels, then the conv under test (``c_in -> c_out``,
    ``kernel``, ``stride``, ``padding``, ``dilation``) and, with ``linear``, a flatten and
    a linear layer (whose taps are the conv's output positions): the layers that K packing
    pairs (:mod:`hwq.layout.kpack`).

    ``zero_taps``: the fraction of (group of ``lanes`` output channels, kernel tap) whose
    last ``c_in mod simd`` input channels are zeroed, so that some partial tiles are all
    zero (and skipped, or left without a partner).
    """
    choices = np.atleast_1d(np.asarray(bits, dtype=np.int64))
    g = _GraphBuilder(rng, kind, choices, act_bits, False, (2, *hw))
    x = g.conv(INPUT, c_in, kernel=(1, 1), relu=False)
    x = g.conv(x, c_out, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
               relu=bool(rng.random() < 0.5))
    conv = g.ops[-1]
    rem = c_in % simd
    if zero_taps and rem:
        w = conv.weight.copy()
        for o in range(0, c_out, lanes):
            for u in range(kernel[0]):
                for v in range(kernel[1]):
                    if rng.random() < zero_taps:
                        w[o:o + lanes, c_in - rem:, u, v] = 0
        g.ops[-1] = replace(conv, weight=w)
    if linear:
        x = g.flatten(x)
        g.linear(x, 5, relu=False)
    return QuantizedNetwork(input_shape=(2, *hw), act_bits=act_bits, input_scale=1.0,
                            ops=g.ops, meta={"generator": "hwq.testing.kpack_network"})


def depthwise_network(rng: np.random.Generator, *, channels: int,
                      kernel: tuple[int, int] = (3, 3), stride: int = 1, padding: int = 1,
                      hw: tuple[int, int] = (7, 7), kind: str = "pot",
                      bits: int | Sequence[int] = (3, 4), act_bits: int = 8,
                      zero_taps: float = 0.0, tail: bool = True) -> QuantizedNetwork:
    """A 1x1 stem conv to ``channels``, the depthwise conv under test (``groups ==
    channels``, ``kernel``, ``stride``, ``padding``) and, with ``tail``, a 1x1 conv after it:
    the layers of the array's depthwise mode (:mod:`hwq.layout.dwmode`).

    ``zero_taps``: the fraction of the depthwise conv's (channel, tap) weights set to 0
    (whole taps of a channel tile become zero: their micro-ops must still read).
    """
    choices = np.atleast_1d(np.asarray(bits, dtype=np.int64))
    g = _GraphBuilder(rng, kind, choices, act_bits, False, (3, *hw))
    x = g.conv(INPUT, channels, kernel=(1, 1), relu=False)
    x = g.conv(x, channels, kernel=kernel, stride=stride, padding=padding, groups=channels,
               relu=bool(rng.random() < 0.5))
    if zero_taps:
        conv = g.ops[-1]
        w = conv.weight.copy()
        w[rng.random(w.shape) < zero_taps] = 0
        g.ops[-1] = replace(conv, weight=w)
    if tail:
        g.conv(x, 5, kernel=(1, 1), relu=False)
    return QuantizedNetwork(input_shape=(3, *hw), act_bits=act_bits, input_scale=1.0,
                            ops=g.ops, meta={"generator": "hwq.testing.depthwise_network"})
