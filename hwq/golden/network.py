"""Run a whole :class:`hwq.ir.QuantizedNetwork` on integers: the golden model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hwq.golden._checks import as_int_array, check_int, check_positive, check_range, signed_range
from hwq.golden.ops import ACT_BITS

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


def run_op(op: Op, x: np.ndarray | list[np.ndarray], act_bits: int) -> np.ndarray:
    """One op on a batch of integer activations (a list of arrays for several inputs)."""
    xs = list(x) if isinstance(x, list | tuple) else [x]
    return op.run(xs, act_bits)


def run(network: QuantizedNetwork, x: object, *, trace: bool = False):
    """Execute ``network`` on integer inputs ``x`` of shape ``(N, *input_shape)``.

    Ops run in the network's order, each on the tensors it names; a tensor is dropped once
    its last reader has run. Returns the output tensor (int64), or with ``trace=True`` the
    list of every op's output, in op order.
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
    last_read = {t: i for i, op in enumerate(network.ops) for t in op.inputs}
    env = {network.INPUT: xa}
    outputs = []
    for i, op in enumerate(network.ops):
        y = op.run([env[t] for t in op.inputs], network.act_bits)
        env[op.name] = y
        if trace:
            outputs.append(y)
        for t in set(op.inputs):
            if last_read[t] == i:
                del env[t]
    return outputs if trace else env[network.output]
