"""``Conv2d``: convolution with integer weights, then requant (any groups, kernel, padding).

Weights ``(C_out, C_in // groups, KH, KW)`` as in PyTorch; ``stride`` and ``dilation`` per
axis; zero ``padding`` per side ``(top, bottom, left, right)`` (so ``padding='same'`` maps
exactly); ``groups`` divides ``C_in`` and ``C_out`` (depthwise: ``groups = C_in = C_out``).
Golden: :func:`hwq.golden.ops.conv2d` then the requant. Lowering: a :class:`Matmul` whose
dense weight is block diagonal over the groups (the core skips the all-zero tiles).
A 1-D convolution is this op with ``H = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwq.golden.ops import conv2d, conv_output_size, padding4, pair
from hwq.ir.lowering import Matmul, Storage
from hwq.ir.ops._common import check_scale, check_weights, read_weights, weights_manifest
from hwq.ir.registry import Op, register
from hwq.ir.schema import Fields
from hwq.ir.spec import Requant, WeightSpec

_DIM = 1 << 16


@register
@dataclass(frozen=True, eq=False, kw_only=True)
class Conv2d(Op):
    kind = "conv2d"
    has_weights = True

    weight: np.ndarray
    spec: WeightSpec
    requant: Requant
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    out_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "stride", pair(self.stride, f"{self.name}: stride"))
        set_(self, "padding", padding4(self.padding, f"{self.name}: padding"))
        set_(self, "dilation", pair(self.dilation, f"{self.name}: dilation"))
        for what, v in (("stride", self.stride), ("dilation", self.dilation)):
            if min(v) < 1:
                raise ValueError(f"{self.name}: {what} must be positive, not {v}")
        g = self.groups
        if isinstance(g, bool) or not isinstance(g, int | np.integer) or g < 1:
            raise ValueError(f"{self.name}: groups must be a positive integer, not {g!r}")
        set_(self, "groups", int(g))
        check_scale(self)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    def output_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        (shape,) = shapes
        w = self.weight
        if w.ndim != 4:
            raise ValueError(f"{self.name}: conv weights must be (C_out, C_in/groups, KH, KW), "
                             f"not {w.shape}")
        if self.out_channels % self.groups:
            raise ValueError(f"{self.name}: groups={self.groups} does not divide the "
                             f"{self.out_channels} output channels")
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(f"{self.name}: input of shape {shape} does not fit weights "
                             f"{w.shape} with groups={self.groups} (expects "
                             f"({self.in_channels}, H, W))")
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        t, b, l, r = self.padding
        h = conv_output_size(shape[1], kh, sh, t, b, dh)
        wd = conv_output_size(shape[2], kw, sw, l, r, dw)
        if h < 1 or wd < 1:
            raise ValueError(f"{self.name}: input {shape[1]}x{shape[2]} with padding "
                             f"{self.padding} is smaller than the {kh}x{kw} kernel "
                             f"(dilation {self.dilation})")
        return (self.out_channels, h, wd)

    def check(self, act_bits: int) -> None:
        check_weights(self, act_bits)

    def run(self, xs: list[np.ndarray], act_bits: int) -> np.ndarray:
        acc = conv2d(xs[0], self.weight, stride=self.stride, padding=self.padding,
                     dilation=self.dilation, groups=self.groups, act_bits=act_bits)
        return self.requant.apply(acc)

    def scale(self, scales: list[float]) -> float:
        return self.out_scale

    def manifest(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        fields, tensors = weights_manifest(self)
        fields.update(stride=list(self.stride), padding=list(self.padding),
                      dilation=list(self.dilation), groups=self.groups)
        return fields, tensors

    @classmethod
    def from_manifest(cls, name: str, inputs: tuple[str, ...], fields: Fields,
                      tensors: dict[str, np.ndarray]) -> Conv2d:
        return cls(name=name, inputs=inputs, **read_weights(fields, tensors),
                   stride=fields.ints("stride", 1, _DIM, lengths=(2,)),
                   padding=fields.ints("padding", 0, _DIM, lengths=(4,)),
                   dilation=fields.ints("dilation", 1, _DIM, lengths=(2,)),
                   groups=fields.int("groups", 1, _DIM))

    def dense_weight(self) -> np.ndarray:
        """``(C_out, C_in, KH, KW)``: the grouped weight with zeros outside each group."""
        if self.groups == 1:
            return self.weight
        c_out, cg = self.out_channels, int(self.weight.shape[1])
        og = c_out // self.groups
        dense = np.zeros((c_out, self.in_channels, *self.kernel), dtype=np.int64)
        o = np.arange(c_out)
        for j in range(cg):
            dense[o, (o // og) * cg + j] = self.weight[:, j]
        return dense

    def lower(self, storages: list[Storage]) -> Matmul:
        return Matmul(weight=self.dense_weight(), requant=self.requant, spec=self.spec,
                      stride=self.stride, padding=self.padding, dilation=self.dilation)
