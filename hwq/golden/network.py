"""Run a whole :class:`hwq.ir.QuantizedNetwork` on integers: the golden model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hwq.golden._checks import as_int_array, check_int, check_positive, check_range, signed_range
from hwq.golden.ops import ACT_BITS, conv2d, flatten, linear, maxpool2d
from hwq.golden.requant import requantize

if TYPE_CHECKING:
    from hwq.ir import Op, QuantizedNetwork


def quantize_input(x: object, scale: float, act_bits: int) -> np.ndarray:
    """Float input -> integers: ``clamp(round_half_even(x / scale))`` to ``act_bits`` bits.

    ``scale`` is a finite positive number, ``act_bits`` an integer in 2..16.
    """
    scale = check_positive(scale, "Input scale")
    lo, hi = signed_range(check_int(act_bits, "Activation bit width", *ACT_BITS))
    xf = np.asarray(x, dtype=np.float64)
    if not np.isfinite(xf).all():
        raise ValueError("Input must be finite; it holds NaN or infinity")
    return np.clip(np.rint(xf / scale), lo, hi).astype(np.int64)


def run_op(op: Op, x: np.ndarray, act_bits: int) -> np.ndarray:
    """One op on a batch of integer activations."""
    kind = op.kind
    if kind == "conv2d":
        acc = conv2d(x, op.weight, stride=op.stride, padding=op.padding, act_bits=act_bits)
    elif kind == "linear":
        acc = linear(x, op.weight, act_bits=act_bits)
    elif kind == "maxpool2d":
        return maxpool2d(x)
    elif kind == "flatten":
        return flatten(x)
    else:
        raise TypeError(f"Unknown op kind {kind!r}")
    rq = op.requant
    return requantize(acc, rq.bias, rq.M, rq.S, lo=rq.lo, hi=rq.hi, axis=1)


def run(network: QuantizedNetwork, x: object, *, trace: bool = False):
    """Execute ``network`` on integer inputs ``x`` of shape ``(N, *input_shape)``.

    Returns the last op's int64 output, or with ``trace=True`` the list of every op's output.
    """
    from hwq.ir import QuantizedNetwork

    if not isinstance(network, QuantizedNetwork):
        raise TypeError(f"Network must be a hwq.ir.QuantizedNetwork, not {type(network).__name__}")
    xa = as_int_array(x, "Network input")
    if xa.ndim == 0 or xa.shape[0] == 0:
        raise ValueError(f"Network input must hold at least one sample (N >= 1), not shape "
                         f"{xa.shape}")
    if xa.shape[1:] != network.input_shape:
        want = ", ".join(map(str, network.input_shape))
        raise ValueError(f"Network input must have shape (N, {want}), not {xa.shape}")
    check_range(xa, *network.act_range, "Network input", f"{network.act_bits}-bit signed")
    outputs = []
    for op in network.ops:
        xa = run_op(op, xa, network.act_bits)
        outputs.append(xa)
    return outputs if trace else xa
