"""The core's hardware primitives, the form every op lowers to (:meth:`hwq.ir.Op.lower`).

The core runs two kinds of layer descriptor, and a third primitive costs nothing:

:class:`Matmul`
    a convolution of a dense integer weight ``(C_out, C_in, KH, KW)`` over the channel
    concatenation of one or more stored tensors of equal ``H x W`` (stride, zero padding per
    side, dilation), then the per-channel requant. Convolutions (any ``groups``: the weight
    is block diagonal and the all-zero tiles are skipped), linear layers (a ``H x W`` kernel
    over the stored tensor), average pools (a depthwise kernel of ones) and residual adds
    (a 1x1 kernel over both inputs, ``[wa * I | wb * I]``) all lower to it.
:class:`Pool`
    a max pool over a stored tensor.
:class:`Alias`
    the output is the input's storage seen with another shape (flatten).

Everything here is pure NumPy; the layout compiler (:mod:`hwq.layout.compiler`) turns
primitives into descriptors and micro-ops, and :mod:`hwq.golden.cycles` prices them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwq.golden.ops import conv_output_size
from hwq.ir.spec import Requant, WeightSpec

__all__ = ["Alias", "Lowered", "Matmul", "Pool", "Storage"]


@dataclass(frozen=True)
class Storage:
    """How a tensor lies in the activation memory: ``(C, H, W)``, position-major, the
    channels of a position in ``ceil(C / simd)`` words. A 1-D tensor of ``K`` values is
    ``(K, 1, 1)``; a flattened tensor keeps the storage of what it flattens."""

    chw: tuple[int, int, int]

    @classmethod
    def of_shape(cls, shape: tuple[int, ...]) -> Storage:
        if len(shape) == 3:
            return cls(tuple(int(s) for s in shape))
        if len(shape) == 1:
            return cls((int(shape[0]), 1, 1))
        raise ValueError(f"A stored tensor is (C, H, W) or (K,), not {shape}")


@dataclass(frozen=True, eq=False)
class Matmul:
    """Convolution over the channel concatenation of the op's inputs ``sources``.

    Attributes
    ----------
    weight : int64 array ``(C_out, C_in, KH, KW)``
        dense values; ``C_in`` is the sum of the sources' channels.
    requant : Requant
    spec : WeightSpec or None
        the stored format of the weights, or None for weights the op synthesizes (pool
        ones, add multipliers): the compiler then picks an exact encoding for the PE.
    sources : tuple of int
        indices into the op's inputs, concatenated along channels; all of one ``H x W``.
    stride, dilation : (int, int)
    padding : (top, bottom, left, right)
    """

    weight: np.ndarray
    requant: Requant
    spec: WeightSpec | None
    sources: tuple[int, ...] = (0,)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        t, b, l, r = self.padding
        return (conv_output_size(h, kh, sh, t, b, dh), conv_output_size(w, kw, sw, l, r, dw))


@dataclass(frozen=True)
class Pool:
    """Max pool of a stored tensor: window ``kernel``, ``stride``, padding
    ``(top, bottom, left, right)`` that never wins."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw) = self.kernel, self.stride
        t, b, l, r = self.padding
        return conv_output_size(h, kh, sh, t, b), conv_output_size(w, kw, sw, l, r)


@dataclass(frozen=True)
class Alias:
    """The output is the input's storage under another shape (no descriptor, no cycles)."""


Lowered = Matmul | Pool | Alias
