"""TQ's per-layer plan: bit depths, blocks, the uniform quantizer of a block and the
smallest allocation a model's shapes allow (see :mod:`hwq.quant.tq`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from hwq.golden._checks import signed_range
from hwq.quant.base import weight_layers
from hwq.quant.transforms import (
    Transform,
    as_vectors,
    check_variant,
)

#: Bit depths of the coefficient blocks (0 = pruned; the INT formats are 2..8 bits).
BIT_DEPTHS = (0, 2, 3, 4, 5, 6, 7, 8)
BASIS_SUFFIX = "_basis"
#: Output distortion measures (``distortion=``): ``mse`` of the logits (the paper), ``fisher``.
DISTORTIONS = ("mse", "fisher")


def uniform_quantize(t: np.ndarray, step: float, bits: int) -> np.ndarray:
    """Integer codes ``clip(round_half_even(t / step), -2^(R-1), 2^(R-1) - 1)`` (int64).

    ``bits = 0`` gives all zeros.

    >>> uniform_quantize(np.array([-1.0, -0.26, 0.05, 0.9]), 0.25, 3).tolist()
    [-4, -1, 0, 3]
    >>> uniform_quantize(np.array([0.7]), 0.25, 0).tolist()
    [0]
    """
    if bits == 0:
        return np.zeros(np.shape(t), dtype=np.int64)
    lo, hi = signed_range(bits)
    return np.clip(np.rint(np.asarray(t) / step), lo, hi).astype(np.int64)


# --- per-layer plan -------------------------------------------------------------------------


@dataclass(eq=False)
class LayerPlan:
    """How one weight layer is transformed, split into blocks and quantized.

    Attributes
    ----------
    name : str
        the layer's name in the folded model.
    variant : {"row", "column"}
        the mixing axis (``column`` with ``has_basis=False`` for untransformed layers:
        blocks of output channels).
    transform : Transform
    has_basis : bool
        whether a basis layer is inserted (False: identity, no extra layer).
    blocks : list of int arrays
        coefficient channel indices of each block (contiguous, in ``transform.values``
        order).
    depths : tuple of int
        allowed bit depths of the blocks (``BIT_DEPTHS`` or ``2..8``).
    coef : float64 array (rows, m)
        the coefficients ``T`` as vectors (``as_vectors(Theta) @ U``).
    """

    name: str
    variant: str
    transform: Transform
    has_basis: bool
    blocks: list[np.ndarray]
    depths: tuple[int, ...]
    coef: np.ndarray
    weight_shape: tuple[int, ...]
    basis_bits: int = 8

    @property
    def m(self) -> int:
        return self.transform.size

    def block_bits(self, k: int, depth: int) -> int:
        """Storage bits of block ``k`` at ``depth``: coefficients plus its basis rows."""
        channels = len(self.blocks[k])
        coef = self.coef.shape[0] * channels * depth
        basis = self.m * channels if (self.has_basis and depth > 0) else 0
        return int(coef + basis * self.basis_bits)


def _from_vectors(v: np.ndarray, shape: tuple[int, ...], variant: str) -> np.ndarray:
    """Inverse of :func:`as_vectors` for a weight of ``shape``."""
    s4 = shape if len(shape) == 4 else (shape[0], shape[1], 1, 1)
    if variant == "row":
        a = v.reshape(s4[0], s4[2], s4[3], s4[1]).transpose(0, 3, 1, 2)
    else:
        a = v.reshape(s4[1], s4[2], s4[3], s4[0]).transpose(3, 0, 1, 2)
    return a.reshape(shape)



def smallest_bits(model: nn.Module, *, variant: str = "row", blocks: int = 16,
                  basis_bits: int = 8) -> tuple[int, int]:
    """``(bits, weights)``: the fewest storage bits any TQ allocation of ``model`` takes, from
    its layer shapes alone, and its original weight count.

    The allocation :func:`allocate` cannot go below: every block of an untransformed layer at
    2 bits; a transformed layer's first block at 2 bits with its basis rows and its other
    blocks at depth 0 (:func:`analyze_tq` keeps a channel per layer). The smallest average
    ``bits`` target is ``bits / weights``.
    """
    check_variant(variant)
    _check_positive_int("blocks", blocks)
    total = weights = 0
    for _, m in weight_layers(model):
        weights += int(m.weight.numel())
        mixed = _is_transformed(m, variant)
        rows, size = as_vectors(m.weight.detach(), variant if mixed else "column").shape
        plan = LayerPlan(
            name="", variant=variant if mixed else "column",
            transform=Transform("identity", np.eye(size), np.eye(size), np.zeros(size)),
            has_basis=mixed, depths=BIT_DEPTHS if mixed else BIT_DEPTHS[1:],
            blocks=list(np.array_split(np.arange(size), min(blocks, size))),
            coef=np.zeros((rows, size)), weight_shape=tuple(m.weight.shape),
            basis_bits=basis_bits)
        for k in range(len(plan.blocks)):
            allowed = [d for d in plan.depths if not (mixed and k == 0 and d == 0)]
            total += min(plan.block_bits(k, d) for d in allowed)
    return total, weights


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"TQ {name} must be an integer >= {minimum}, not {value!r}")
    return value


def _is_transformed(module: nn.Module, variant: str) -> bool:
    """A Conv2d whose mixing axis has ``m > 1`` channels and at least ``m`` vectors.

    With fewer vectors than channels ``C_tt`` is singular and the coding gain infinite
    (e.g. the first conv's column variant: 9 vectors of 16 output channels).
    """
    if not isinstance(module, nn.Conv2d) or module.groups != 1:
        return False          # a grouped (depthwise) conv keeps its own weights
    m, other = ((module.in_channels, module.out_channels) if variant == "row"
                else (module.out_channels, module.in_channels))
    return 1 < m <= other * module.kernel_size[0] * module.kernel_size[1]
