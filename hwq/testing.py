"""Random integer networks for tests and benchmarks (layout, RTL, simulation).

>>> import numpy as np
>>> net = random_network(np.random.default_rng(0), kind="pot", bits=4)
>>> [op.kind for op in net.ops]
['conv2d', 'conv2d', 'maxpool2d', 'flatten', 'linear']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hwq.golden._checks import signed_range
from hwq.golden.requant import multiplier_from_scale
from hwq.ir import Conv2d, Flatten, Linear, MaxPool2d, QuantizedNetwork, Requant, WeightSpec

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
        lo = -(1 << (b - 1))
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
