"""Pooling ops: ``MaxPool2d``, ``AvgPool2d`` and ``GlobalAvgPool2d``.

``MaxPool2d(kernel, stride, padding)``: the window maximum; padding never wins (PyTorch's
semantics); ``ceil_mode`` is not supported. Golden :func:`hwq.golden.ops.maxpool2d`;
lowered to the core's :class:`Pool` primitive. The output keeps the input's scale.

``AvgPool2d(kernel, stride, padding)`` and ``GlobalAvgPool2d``: the integer window sum
(zero padding counted, PyTorch's ``count_include_pad=True``), then a requant whose ``M, S``
hold ``1 / (KH * KW)`` and the change of scale (bias 0). Golden
:func:`hwq.golden.ops.avgpool2d_sum` / :func:`~hwq.golden.ops.global_avgpool_sum` then the
requant; lowered to a depthwise :class:`Matmul` with a kernel of ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwq.golden.ops import (
    avgpool2d_sum,
    conv_output_size,
    global_avgpool_sum,
    maxpool2d,
    padding4,
    pair,
)
from hwq.ir.lowering import Matmul, Pool, Storage
from hwq.ir.ops._common import (
    check_requant,
    check_scale,
    ones_depthwise,
    read_requant,
    requant_manifest,
)
from hwq.ir.registry import Op, register
from hwq.ir.schema import Fields
from hwq.ir.spec import Requant

_DIM = 1 << 16


class _Window(Op):
    """Window geometry shared by the max and average pools (not registered)."""

    def _init_window(self) -> None:
        set_ = object.__setattr__
        set_(self, "kernel", pair(self.kernel, f"{self.name}: kernel"))
        stride = self.kernel if self.stride is None else self.stride
        set_(self, "stride", pair(stride, f"{self.name}: stride"))
        set_(self, "padding", padding4(self.padding, f"{self.name}: padding"))
        if min(self.kernel) < 1 or min(self.stride) < 1:
            raise ValueError(f"{self.name}: kernel and stride must be positive, not "
                             f"{self.kernel}, {self.stride}")
        (kh, kw), (t, b, l, r) = self.kernel, self.padding
        if max(t, b) > kh // 2 or max(l, r) > kw // 2:
            raise ValueError(f"{self.name}: pool padding {self.padding} must be at most half "
                             f"the {kh}x{kw} kernel on each side (as in PyTorch)")

    def _window_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        (kh, kw), (sh, sw) = self.kernel, self.stride
        t, b, l, r = self.padding
        least = (max(1, kh - t - b), max(1, kw - l - r))
        what = f"{self.kind.removesuffix('2d')} {kh}x{kw}"
        if len(shape) != 3 or shape[1] < least[0] or shape[2] < least[1]:
            raise ValueError(f"{self.name}: {what} needs a (C, H, W) input of at least "
                             f"{least[0]}x{least[1]}, not {shape}")
        return (shape[0], conv_output_size(shape[1], kh, sh, t, b),
                conv_output_size(shape[2], kw, sw, l, r))

    def _window_manifest(self) -> dict[str, Any]:
        return {"kernel": list(self.kernel), "stride": list(self.stride),
                "padding": list(self.padding)}

    @staticmethod
    def _read_window(f: Fields) -> dict[str, Any]:
        return dict(kernel=f.ints("kernel", 1, _DIM, lengths=(2,)),
                    stride=f.ints("stride", 1, _DIM, lengths=(2,)),
                    padding=f.ints("padding", 0, _DIM, lengths=(4,)))


@register
@dataclass(frozen=True, eq=False, kw_only=True)
class MaxPool2d(_Window):
    kind = "maxpool2d"

    kernel: Any = 2
    stride: Any = None
    padding: Any = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._init_window()

    def output_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return self._window_shape(shapes[0])

    def run(self, xs: list[np.ndarray], act_bits: int) -> np.ndarray:
        return maxpool2d(xs[0], kernel=self.kernel, stride=self.stride, padding=self.padding)

    def manifest(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self._window_manifest(), {}

    @classmethod
    def from_manifest(cls, name: str, inputs: tuple[str, ...], fields: Fields,
                      tensors: dict[str, np.ndarray]) -> MaxPool2d:
        return cls(name=name, inputs=inputs, **cls._read_window(fields))

    def lower(self, storages: list[Storage]) -> Pool:
        return Pool(kernel=self.kernel, stride=self.stride, padding=self.padding)


@register
@dataclass(frozen=True, eq=False, kw_only=True)
class AvgPool2d(_Window):
    kind = "avgpool2d"

    requant: Requant
    kernel: Any = 2
    stride: Any = None
    padding: Any = 0
    out_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._init_window()
        check_scale(self)

    def output_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        out = self._window_shape(shapes[0])
        _check_channels(self, out[0])
        return out

    def check(self, act_bits: int) -> None:
        check_requant(self, self.requant.channels, act_bits)

    def run(self, xs: list[np.ndarray], act_bits: int) -> np.ndarray:
        return self.requant.apply(avgpool2d_sum(xs[0], kernel=self.kernel, stride=self.stride,
                                                padding=self.padding))

    def scale(self, scales: list[float]) -> float:
        return self.out_scale

    def manifest(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        fields, tensors = requant_manifest(self.requant)
        fields.update(self._window_manifest(), out_scale=self.out_scale)
        return fields, tensors

    @classmethod
    def from_manifest(cls, name: str, inputs: tuple[str, ...], fields: Fields,
                      tensors: dict[str, np.ndarray]) -> AvgPool2d:
        return cls(name=name, inputs=inputs, requant=read_requant(fields, tensors),
                   out_scale=fields.float("out_scale"), **cls._read_window(fields))

    def lower(self, storages: list[Storage]) -> Matmul:
        c = storages[0].chw[0]
        return Matmul(weight=ones_depthwise(c, *self.kernel), requant=self.requant, spec=None,
                      stride=self.stride, padding=self.padding)


@register
@dataclass(frozen=True, eq=False, kw_only=True)
class GlobalAvgPool2d(Op):
    """Average over the whole ``H x W`` (PyTorch ``AdaptiveAvgPool2d(1)``): ``(C, 1, 1)``."""

    kind = "global_avgpool2d"

    requant: Requant
    out_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_scale(self)

    def output_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        (shape,) = shapes
        if len(shape) != 3:
            raise ValueError(f"{self.name}: a global average pool needs a (C, H, W) input, "
                             f"not {shape}")
        _check_channels(self, shape[0])
        return (shape[0], 1, 1)

    def check(self, act_bits: int) -> None:
        check_requant(self, self.requant.channels, act_bits)

    def run(self, xs: list[np.ndarray], act_bits: int) -> np.ndarray:
        return self.requant.apply(global_avgpool_sum(xs[0]))

    def scale(self, scales: list[float]) -> float:
        return self.out_scale

    def manifest(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        fields, tensors = requant_manifest(self.requant)
        fields["out_scale"] = self.out_scale
        return fields, tensors

    @classmethod
    def from_manifest(cls, name: str, inputs: tuple[str, ...], fields: Fields,
                      tensors: dict[str, np.ndarray]) -> GlobalAvgPool2d:
        return cls(name=name, inputs=inputs, requant=read_requant(fields, tensors),
                   out_scale=fields.float("out_scale"))

    def lower(self, storages: list[Storage]) -> Matmul:
        c, h, w = storages[0].chw
        return Matmul(weight=ones_depthwise(c, h, w), requant=self.requant, spec=None)


def _check_channels(op: Op, channels: int) -> None:
    if op.requant.channels != channels:
        raise ValueError(f"{op.name}: requant has {op.requant.channels} channels, the input "
                         f"{channels}")
