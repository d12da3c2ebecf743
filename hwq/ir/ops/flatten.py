"""``Flatten``: ``(C, H, W) -> (C*H*W,)`` in PyTorch (channel-major) order, no arithmetic.

Lowered to an :class:`Alias`: the tensor stays where and as it is stored, and the linear
layer that reads it takes its weights in the stored order (:mod:`hwq.ir.ops.linear`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwq.golden.ops import flatten
from hwq.ir.lowering import Alias, Storage
from hwq.ir.registry import Op, register


@register
@dataclass(frozen=True, eq=False, kw_only=True)
class Flatten(Op):
    kind = "flatten"

    def output_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return (int(np.prod(shapes[0])),)

    def run(self, xs: list[np.ndarray], act_bits: int) -> np.ndarray:
        return flatten(xs[0])

    def lower(self, storages: list[Storage]) -> Alias:
        return Alias()
