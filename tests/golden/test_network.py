"""golden.run on whole networks, against the naive references op by op; IR validation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq import golden
from hwq.golden.requant import requantize_reference
from hwq.ir import Conv2d, Flatten, Linear, MaxPool2d, QuantizedNetwork, Requant, WeightSpec
from hwq.testing import random_inputs, random_network
from tests.golden import reference as ref


def _reference_run(net, x):
    """The network through the pure-Python references."""
    out = x.tolist()
    for op in net.ops:
        if op.kind in ("conv2d", "linear"):
            if op.kind == "conv2d":
                acc = ref.conv2d(out, op.weight.tolist(), op.stride[0], op.padding[0])
            else:
                acc = ref.linear(out, op.weight.tolist())
            rq = op.requant
            args = (rq.bias.tolist(), rq.M.tolist(), rq.S.tolist())
            out = np.vectorize(lambda a, c, b=args, q=rq: requantize_reference(
                int(a), b[0][c], b[1][c], b[2][c], q.lo, q.hi))(
                np.array(acc), _channel_index(np.array(acc).shape)).tolist()
        elif op.kind == "maxpool2d":
            out = ref.maxpool2d(out)
        else:
            out = [np.array(o).ravel().tolist() for o in out]
    return np.array(out)


def _channel_index(shape):
    idx = np.arange(shape[1]).reshape((1, shape[1]) + (1,) * (len(shape) - 2))
    return np.broadcast_to(idx, shape)


@given(st.integers(0, 2**32 - 1), st.sampled_from(["int", "pot", "codebook"]), st.booleans())
@settings(max_examples=200)
def test_run_matches_reference(seed, kind, per_channel):
    rng = np.random.default_rng(seed)
    bits = {"int": [2, 3, 8], "pot": [2, 4, 5], "codebook": [1, 2, 4]}[kind]
    net = random_network(rng, kind=kind, bits=bits, per_channel_bits=per_channel,
                         input_shape=(2, 6, 6), zero_tile_fraction=0.2)
    x = random_inputs(rng, net, 2)
    trace = golden.run(net, x, trace=True)
    np.testing.assert_array_equal(trace[-1], _reference_run(net, x))
    assert [t.shape[1:] for t in trace] == net.shapes()


def _conv(name="c", w=None, bits=4, lo=0, hi=127, **kw):
    w = np.ones((2, 1, 3, 3), np.int64) if w is None else w
    rq = Requant(bias=np.zeros(w.shape[0], np.int64), M=np.ones(w.shape[0], np.int64),
                 S=np.ones(w.shape[0], np.int64), lo=lo, hi=hi)
    return Conv2d(name=name, weight=w, spec=WeightSpec(kind="int", bits=np.asarray(bits)),
                  requant=rq, **kw)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: QuantizedNetwork(input_shape=(1, 4, 4), act_bits=8, input_scale=1.0,
                                  ops=[_conv(w=np.full((2, 1, 3, 3), 9, np.int64))]),
         "c: INT weights must be 4-bit two's complement (-8..7); 18 value(s) are not, first 9"),
        (lambda: QuantizedNetwork(input_shape=(3, 4, 4), act_bits=8, input_scale=1.0, ops=[_conv()]),
         "c: input of shape (3, 4, 4) does not fit weights (2, 1, 3, 3)"),
        (lambda: QuantizedNetwork(input_shape=(1, 4, 4), act_bits=8, input_scale=1.0,
                                  ops=[_conv(), Linear(name="l", weight=np.ones((2, 5), np.int64),
                                                       spec=WeightSpec(kind="int", bits=np.asarray(2)),
                                                       requant=_conv().requant)]),
         "l: input of shape (2, 2, 2) does not fit linear weights (2, 5) (flatten first?)"),
        (lambda: QuantizedNetwork(input_shape=(1, 4, 4), act_bits=4, input_scale=1.0, ops=[_conv()]),
         "c: clamp bounds 0..127 must lie within the 4-bit activation range -8..7"),
        (lambda: QuantizedNetwork(input_shape=(1, 4, 4), act_bits=8, input_scale=float("nan"), ops=[]),
         "Input scale must be a finite positive float, not nan"),
        (lambda: QuantizedNetwork(input_shape=(1, 4, 4), act_bits=8, input_scale=1.0,
                                  ops=[_conv(), _conv()]),
         "Op names must be unique, not ['c', 'c']"),
        (lambda: QuantizedNetwork(input_shape=(1, 1, 1), act_bits=8, input_scale=1.0,
                                  ops=[MaxPool2d(name="p")]),
         "p: maxpool 2x2 needs a (C, H, W) input of at least 2x2, not (1, 1, 1)"),
        (lambda: WeightSpec(kind="fp4", bits=np.asarray(4)), "Weight format must be one of int, pot, codebook, not 'fp4'"),
        (lambda: WeightSpec(kind="codebook", bits=np.asarray(1), table=np.array([0, 1, 2])),
         "Codebook table of 3 entries needs more than the 1-bit indices given"),
        (lambda: _conv(bits=np.ones((3, 1, 1, 1), np.int64) * 4).spec.validate(np.zeros((2, 1, 3, 3), np.int64), "c"),
         "c: weight bit widths of shape (3, 1, 1, 1) do not broadcast to the weight shape (2, 1, 3, 3)"),
    ],
)
def test_invalid_networks(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


def test_mixed_bits_per_channel_validated_per_channel():
    w = np.array([[[[7]]], [[[1]]]], dtype=np.int64)  # 7 needs 4 bits, 1 fits in 2
    spec = WeightSpec(kind="int", bits=np.array([4, 2]).reshape(2, 1, 1, 1))
    spec.validate(w, "c")
    with pytest.raises(ValueError, match="c: INT weights must be 2-bit two's complement"):
        WeightSpec(kind="int", bits=np.array([2, 4]).reshape(2, 1, 1, 1)).validate(w, "c")
    assert spec.storage_bits(w.shape) == 6


def test_run_checks_input():
    net = QuantizedNetwork(input_shape=(1, 4, 4), act_bits=8, input_scale=1.0,
                           ops=[_conv(), Flatten(name="f")])
    with pytest.raises(ValueError, match=r"Network input must have shape \(N, 1, 4, 4\), not \(1, 4, 4\)"):
        golden.run(net, np.zeros((1, 4, 4), np.int64))
    with pytest.raises(ValueError, match="8-bit signed"):
        golden.run(net, np.full((1, 1, 4, 4), 128))
    assert golden.run(net, np.ones((1, 1, 4, 4), np.int64)).shape == (1, 8)


def test_quantize_input_rounds_half_even_and_clamps():
    x = np.array([0.5, 1.5, -0.5, 2.5, 1000.0, -1000.0])
    assert golden.quantize_input(x, 1.0, 8).tolist() == [0, 2, 0, 2, 127, -128]
    with pytest.raises(ValueError, match="NaN or infinity"):
        golden.quantize_input([np.nan], 1.0, 8)


@pytest.mark.parametrize("network, exc, message", [
    (None, TypeError, "Network must be a hwq.ir.QuantizedNetwork, not NoneType"),
    ("net.safetensors", TypeError, "Network must be a hwq.ir.QuantizedNetwork, not str"),
])
def test_run_refuses_what_is_not_a_network(network, exc, message):
    with pytest.raises(exc) as info:
        golden.run(network, np.zeros((1, 1, 4, 4), np.int64))
    assert str(info.value) == message


@pytest.mark.parametrize("x", [np.zeros((0, 1, 4, 4), np.int64), np.int64(3)])
def test_run_needs_at_least_one_sample(x):
    net = QuantizedNetwork(input_shape=(1, 4, 4), act_bits=8, input_scale=1.0,
                           ops=[_conv(), Flatten(name="f")])
    with pytest.raises(ValueError) as info:
        golden.run(net, x)
    assert str(info.value) == ("Network input must hold at least one sample (N >= 1), not shape "
                               f"{np.shape(x)}")


@pytest.mark.parametrize("scale, act_bits, exc, message", [
    (0, 8, ValueError, "Input scale must be a finite positive number, not 0"),
    (-1.0, 8, ValueError, "Input scale must be a finite positive number, not -1.0"),
    (float("nan"), 8, ValueError, "Input scale must be a finite positive number, not nan"),
    (float("inf"), 8, ValueError, "Input scale must be a finite positive number, not inf"),
    ("0.5", 8, TypeError, "Input scale must be a finite positive number, not '0.5'"),
    (True, 8, TypeError, "Input scale must be a finite positive number, not True"),
    (0.5, 1, ValueError, "Activation bit width must be an integer in 2..16, not 1"),
    (0.5, 99, ValueError, "Activation bit width must be an integer in 2..16, not 99"),
    (0.5, 8.0, TypeError, "Activation bit width must be an integer in 2..16, not 8.0"),
])
def test_quantize_input_refuses_bad_scale_and_width(scale, act_bits, exc, message):
    with pytest.raises(exc) as info:
        golden.quantize_input([1.0], scale, act_bits)
    assert str(info.value) == message


def test_quantize_input_takes_numpy_scalars():
    assert golden.quantize_input([1.0, -3.0], np.float32(0.5), np.int64(4)).tolist() == [2, -6]
