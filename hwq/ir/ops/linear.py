"""``Linear``: a fully connected layer with integer weights ``(C_out, K)``, then requant.

Its input is 1-D (``(K,)``; flatten first). Golden: :func:`hwq.golden.ops.linear` then the
requant. Lowering: a :class:`Matmul` whose kernel covers the stored input: after a flatten
of ``(C, H, W)`` the weights are reordered to a ``H x W`` kernel over the ``C`` channels,
so the flatten costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwq.golden.ops import linear
from hwq.ir.lowering import Matmul, Storage
from hwq.ir.ops._common import check_scale, check_weights, read_weights, weights_manifest
from hwq.ir.registry import Op, register
from hwq.ir.schema import Fields
from hwq.ir.spec import Requant, WeightSpec


@register
@dataclass(frozen=True, eq=False, kw_only=True)
class Linear(Op):
    kind = "linear"
    has_weights = True

    weight: np.ndarray
    spec: WeightSpec
    requant: Requant
    out_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_scale(self)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    def output_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        (shape,) = shapes
        if self.weight.ndim != 2 or len(shape) != 1 or shape[0] != self.weight.shape[1]:
            raise ValueError(f"{self.name}: input of shape {shape} does not fit linear weights "
                             f"{self.weight.shape} (flatten first?)")
        return (self.out_channels,)

    def check(self, act_bits: int) -> None:
        check_weights(self, act_bits)

    def run(self, xs: list[np.ndarray], act_bits: int) -> np.ndarray:
        return self.requant.apply(linear(xs[0], self.weight, act_bits=act_bits))

    def scale(self, scales: list[float]) -> float:
        return self.out_scale

    def manifest(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return weights_manifest(self)

    @classmethod
    def from_manifest(cls, name: str, inputs: tuple[str, ...], fields: Fields,
                      tensors: dict[str, np.ndarray]) -> Linear:
        return cls(name=name, inputs=inputs, **read_weights(fields, tensors))

    def lower(self, storages: list[Storage]) -> Matmul:
        c, h, w = storages[0].chw
        return Matmul(weight=self.weight.reshape(-1, c, h, w), requant=self.requant,
                      spec=self.spec)
