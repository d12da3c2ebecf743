"""Run QONNX models with qonnx's executor and compare them with hwq op by op."""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from hwq import golden
from hwq.ir import INPUT, Add, AvgPool2d, Conv2d, GlobalAvgPool2d, Linear

U32 = 2.0 ** -24  # float32 unit roundoff


def execute(model, x: np.ndarray, *, full: bool = False) -> dict[str, np.ndarray]:
    """qonnx's ``execute_onnx`` of ``model`` on ``x`` (float32) at its single input."""
    wrapper = ModelWrapper(model)
    name = [i.name for i in wrapper.graph.input
            if wrapper.get_initializer(i.name) is None][0]
    return execute_onnx(wrapper, {name: np.asarray(x, dtype=np.float32)},
                        return_full_exec_context=full)


def accumulate(op, xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """The op's integer accumulators, the same sum over ``|terms|`` and the number of terms
    (from hwq.golden)."""
    if isinstance(op, Conv2d):
        geo = dict(stride=op.stride, padding=op.padding, dilation=op.dilation, groups=op.groups)
        return (golden.conv2d(xs[0], op.weight, **geo),
                golden.conv2d(np.abs(xs[0]), np.abs(op.weight), **geo),
                int(np.prod(op.weight.shape[1:])))
    if isinstance(op, Linear):
        return (golden.linear(xs[0], op.weight), golden.linear(np.abs(xs[0]), np.abs(op.weight)),
                op.weight.shape[1])
    if isinstance(op, Add):
        wa, wb = op.weights
        return xs[0] * wa + xs[1] * wb, np.abs(xs[0]) * wa + np.abs(xs[1]) * wb, 2
    if isinstance(op, AvgPool2d):
        geo = dict(kernel=op.kernel, stride=op.stride, padding=op.padding)
        return (golden.avgpool2d_sum(xs[0], **geo), golden.avgpool2d_sum(np.abs(xs[0]), **geo),
                op.kernel[0] * op.kernel[1])
    assert isinstance(op, GlobalAvgPool2d)
    return (golden.global_avgpool_sum(xs[0]), golden.global_avgpool_sum(np.abs(xs[0])),
            xs[0].shape[2] * xs[0].shape[3])


def compare_layers(result, ctx: dict[str, np.ndarray], x_int: np.ndarray, *,
                   float_exact: bool = False) -> tuple[dict[str, int], np.ndarray]:
    """Run every op of the imported network on qonnx's integer inputs and compare its output
    with qonnx's (the tensor of the same name), asserting the import's stated bound.

    An output may differ from qonnx's by at most 1, and only where hwq's exact value
    ``u = (acc + bias) * M * 2**-S`` lies within ``delta`` of a rounding boundary
    ``k + 1/2``, with ``delta`` the import's error (``r * bias_err + |u| * mult_err``) plus a
    rigorous bound of qonnx's float32 arithmetic: ``gamma_n * r * (sum |x*w| + |bias| +
    bias_err)``, ``gamma_n = n*u/(1 - n*u)``, ``u = 2**-24``, ``n`` = terms + 4 (input and
    weight dequantization, bias add, division by the output scale). Ops without a requant
    (max pool, flatten) must be equal. ``float_exact``: qonnx's float32 arithmetic is
    exact on this model (dyadic scales of few bits), so its outputs must be QONNX's
    real-number ones, ``clip(round_half_even(u))``, and hwq's ``clip(floor(u + 1/2))``:
    they differ only on ties. Returns the number of differing outputs per op and, per
    sample, whether any op differed in it.
    """
    net = result.network
    scales = net.scales()
    ints = {INPUT: x_int}
    differ = {}
    samples = np.zeros(len(x_int), dtype=bool)
    for op in net.ops:
        xs = [ints[t] for t in op.inputs]
        y = op.run(xs, net.act_bits)
        if op.name not in ctx:  # an op whose output qonnx never holds (a fused pool's input)
            ints[op.name] = y
            continue
        q = np.rint(ctx[op.name].astype(np.float64) / scales[op.name]).astype(np.int64)
        ints[op.name] = q
        bad = q != y
        differ[op.name] = int(bad.sum())
        samples |= bad.reshape(len(bad), -1).any(axis=1)
        assert np.abs(q - y).max(initial=0) <= 1, op.name
        if not hasattr(op, "requant"):
            assert not bad.any(), op.name
            continue
        acc, mag, terms = accumulate(op, xs)
        rq, err = op.requant, result.errors[op.name]
        shape = (1, -1) + (1,) * (acc.ndim - 2)
        b, m, s = (v.reshape(shape) for v in (rq.bias, rq.M, rq.S))
        t = (acc + b) * m
        assert np.abs(t).max() < 2 ** 53
        u = np.ldexp(t.astype(np.float64), -s)
        r = np.ldexp(m.astype(np.float64), -s)
        if float_exact:
            assert err["bias"] == err["multiplier"] == 0, (op.name, err)
            np.testing.assert_array_equal(q, np.clip(np.round(u), rq.lo, rq.hi), op.name)
            np.testing.assert_array_equal(y, np.clip(np.floor(u + 0.5), rq.lo, rq.hi))
            continue
        n = terms + 4
        gamma = n * U32 / (1 - n * U32)
        delta = (r * err["bias"] + np.abs(u) * err["multiplier"] * 2
                 + gamma * r * (mag + np.abs(b) + err["bias"]) * (1 + err["multiplier"]) * 1.01
                 + 1e-9)
        dist = np.abs(u - np.floor(u) - 0.5)
        near = np.broadcast_to(dist <= delta, bad.shape)
        assert (near | ~bad).all(), (op.name, float(np.broadcast_to(dist, bad.shape)[bad].min()))
    return differ, samples
