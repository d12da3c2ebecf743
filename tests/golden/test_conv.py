import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq import golden
from hwq.golden.ops import conv2d
from tests.golden import reference as ref
from tests.golden.strategies import padding, pair_arg, tensor


@given(st.data())
@settings(max_examples=1500)
def test_conv2d_matches_reference(data):
    draw = data.draw
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    og = draw(st.integers(1, 3))
    if draw(st.booleans()):  # depthwise (channel multiplier og)
        cg, groups = 1, draw(st.integers(1, 5))
    kernel_arg, (kh, kw) = pair_arg(draw, 1, 4)
    dil_arg, (dh, dw) = pair_arg(draw, 1, 3)
    stride_arg, (sh, sw) = pair_arg(draw, 1, 5)
    pad_arg, (top, bottom, left, right) = padding(draw, 3, 3)
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    h_min, w_min = max(1, eh - top - bottom), max(1, ew - left - right)
    h = h_min if draw(st.booleans()) else draw(st.integers(h_min, h_min + 5))  # often a 1-row fit
    w_ = w_min if draw(st.booleans()) else draw(st.integers(w_min, w_min + 5))
    n = draw(st.integers(1, 2))
    a_bits, w_bits = draw(st.sampled_from([2, 4, 8, 12, 16])), draw(st.integers(2, 8))
    x = tensor(draw, (n, groups * cg, h, w_), a_bits)
    w = tensor(draw, (groups * og, cg, kh, kw), w_bits)
    got = conv2d(x, w, stride=stride_arg, padding=pad_arg, dilation=dil_arg, groups=groups,
                 act_bits=a_bits)
    assert got.dtype == np.int64
    assert got.tolist() == ref.conv2d(x.tolist(), w.tolist(), (sh, sw), (top, bottom, left, right),
                                      (dh, dw), groups)


def test_conv2d_int64_path_is_exact():
    # 2**40-sized weights: the product bound passes 2**53, so int64 GEMMs are used; float64
    # would round these sums.
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 15), 1 << 15, (2, 4, 5, 6))
    for groups, cg in ((1, 4), (2, 2), (4, 1)):
        w = rng.integers(-(1 << 40), 1 << 40, (4, cg, 3, 2))
        got = conv2d(x, w, stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=groups)
        assert got.tolist() == ref.conv2d(x.tolist(), w.tolist(), (2, 1), (1, 0, 2, 1), (1, 2),
                                          groups)


def test_conv2d_hand_computed():
    x = np.arange(1, 10).reshape(1, 1, 3, 3)  # 1 2 3 / 4 5 6 / 7 8 9
    ones = np.ones((1, 1, 2, 2), np.int64)
    assert conv2d(x, ones).tolist() == [[[[12, 16], [24, 28]]]]
    assert conv2d(x, ones, dilation=2).tolist() == [[[[1 + 3 + 7 + 9]]]]
    # bottom/right zero row and column, stride 2: windows {1,2,4,5} {3,6} {7,8} {9}
    assert conv2d(x, ones, stride=2, padding=(0, 1, 0, 1)).tolist() == [[[[12, 9], [15, 9]]]]
    # 1x3 kernel [1, 0, -1]: x[., 0] - x[., 2] on every row
    assert conv2d(x, np.array([[[[1, 0, -1]]]])).tolist() == [[[[-2], [-2], [-2]]]]
    # 3x1 kernel, padding (1, 0): column sums of neighbours
    col = conv2d(x, np.ones((1, 1, 3, 1), np.int64), padding=(1, 0)).tolist()
    assert col == [[[[5, 7, 9], [12, 15, 18], [11, 13, 15]]]]
    # depthwise with channel multiplier 2: channel c feeds outputs 2c and 2c+1
    x2 = np.stack([x[0, 0], -x[0, 0]])[None]
    w2 = np.array([2, 3, 5, 7]).reshape(4, 1, 1, 1)
    assert conv2d(x2, w2, groups=2).tolist() == [[(x[0, 0] * 2).tolist(), (x[0, 0] * 3).tolist(),
                                                  (-x[0, 0] * 5).tolist(), (-x[0, 0] * 7).tolist()]]
    # 2 groups of 2 channels: out0 = x0 - x1, out1 = 10*x2 + x3
    x4 = np.array([1, 2, 3, 4]).reshape(1, 4, 1, 1)
    w4 = np.array([[1, -1], [10, 1]]).reshape(2, 2, 1, 1)
    assert conv2d(x4, w4, groups=2).tolist() == [[[[-1]], [[34]]]]


@pytest.mark.parametrize("bits", [8, 16])
def test_conv2d_depthwise_64_channels_extremes(bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    for value in (lo, hi):
        x = np.full((2, 64, 7, 5), value, np.int64)
        w = np.full((64, 1, 3, 3), -128, np.int64)
        got = conv2d(x, w, padding=1, groups=64, act_bits=bits)
        assert got.tolist() == ref.conv2d(x.tolist(), w.tolist(), 1, 1, 1, 64)
        assert got[0, 0, 1, 1] == 9 * value * -128  # interior: all nine taps


@pytest.mark.parametrize(
    "groups, c_in, c_out, kernel, stride, padding, dilation",
    [
        (1, 3, 4, (3, 3), 1, (1, 1, 1, 1), 1),
        (4, 4, 8, (3, 3), 2, (1, 2, 0, 1), 2),  # depthwise, multiplier 2, asymmetric padding
        (16, 16, 16, (5, 3), (2, 1), (2, 2, 1, 1), (1, 2)),
        (2, 6, 4, (1, 1), 3, (0, 0, 0, 0), 1),
        (3, 6, 9, (2, 4), 1, (0, 1, 3, 0), 3),
    ],
)
def test_conv2d_matches_torch(groups, c_in, c_out, kernel, stride, padding, dilation):
    # float64 is exact here: every partial sum is below 2**53 (16-bit x 8-bit, K <= 75)
    rng = np.random.default_rng(groups)
    x = rng.integers(-(1 << 15), 1 << 15, (2, c_in, 11, 9))
    w = rng.integers(-128, 128, (c_out, c_in // groups, *kernel))
    top, bottom, left, right = padding
    xt = F.pad(torch.from_numpy(x).double(), (left, right, top, bottom))
    want = F.conv2d(xt, torch.from_numpy(w).double(), stride=stride, dilation=dilation,
                    groups=groups).numpy()
    got = conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    np.testing.assert_array_equal(got, want.astype(np.int64))
    assert np.array_equal(want, np.rint(want))


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"groups": 3}, ValueError, "Conv groups must divide the input channels (4), not 3"),
        ({"groups": 0}, ValueError, "Conv groups must be an integer in 1..65536, not 0"),
        ({"groups": 2, "w": np.zeros((3, 2, 1, 1), int)}, ValueError,
         "Conv groups must divide the output channels (3, weights (3, 2, 1, 1)), not 2"),
        ({"groups": 2, "w": np.zeros((2, 1, 1, 1), int)}, ValueError,
         "Conv input has 4 channels but the weights expect 2 (2 groups of 1)"),
        ({"w": np.zeros((2, 4, 5, 1), int)}, ValueError,
         "Conv input 3x3 with padding 0 is smaller than the 5x1 kernel"),
        ({"w": np.zeros((2, 4, 2, 2), int), "dilation": (3, 1)}, ValueError,
         "Conv input 3x3 with padding 0 is smaller than the 2x2 kernel (dilation (3, 1): 4x2)"),
        ({"w": np.zeros((2, 4, 2, 2), int), "dilation": (3, 1), "padding": (1, 0)}, None,
         None),  # the dilated 4x2 kernel fits 3 + 2 padded rows
        ({"w": np.zeros((0, 4, 1, 1), int)}, ValueError,
         "Conv weights must have no empty axis, not shape (0, 4, 1, 1)"),
        ({"w": np.zeros((2, 4, 1), int)}, ValueError,
         "Conv weights must have 4 dimensions (C_out, C_in // groups, KH, KW), not shape (2, 4, 1)"),
        ({"w": np.zeros((2, 4, 1, 1))}, TypeError, "Conv weights must be an integer array, not dtype float64"),
        ({"x": np.zeros((1, 4, 0, 3), int)}, ValueError, "Conv input must be at least 1x1, not 0x3"),
        ({"stride": 0}, ValueError, "Conv stride must be an integer in 1..65536, not 0"),
        ({"stride": (1, 0)}, ValueError, "Conv stride must be integers in 1..65536, not (1, 0)"),
        ({"stride": 1.7}, TypeError, "Conv stride must be an integer or a pair of integers (h, w), not 1.7"),
        ({"dilation": True}, TypeError, "Conv dilation must be an integer or a pair of integers (h, w), not True"),
        ({"dilation": (1, 2, 3)}, ValueError,
         "Conv dilation must be an integer or a pair of integers (h, w), not (1, 2, 3)"),
        ({"padding": -1}, ValueError, "Conv padding must be a non-negative integer, a pair (h, w) or four"),
        ({"padding": (1, 2, 3)}, ValueError, "not (1, 2, 3)"),
        ({"padding": "same"}, TypeError, "Conv padding must be a non-negative integer"),
        ({"padding": 1 << 17}, ValueError, "Conv padding must be an integer in 0..65536, not 131072"),
        ({"act_bits": 8, "x": np.full((1, 4, 3, 3), 128)}, ValueError, "8-bit signed (-128..127)"),
    ],
)
def test_conv2d_bad_input(kwargs, exc, message):
    x = kwargs.pop("x", np.zeros((1, 4, 3, 3), int))
    w = kwargs.pop("w", np.zeros((2, 4, 1, 1), int))
    if exc is None:
        assert conv2d(x, w, **kwargs).shape == (1, 2, 2, 2)
        return
    with pytest.raises(exc) as info:
        conv2d(x, w, **kwargs)
    assert message in str(info.value)


def test_existing_callers_unchanged():
    # the wave-1 call form and the symmetric output-size helper
    x = np.arange(2 * 3 * 6 * 5).reshape(2, 3, 6, 5) % 17 - 8
    w = np.arange(4 * 3 * 3 * 3).reshape(4, 3, 3, 3) % 7 - 3
    got = golden.conv2d(x, w, stride=2, padding=1, act_bits=8)
    assert got.tolist() == ref.conv2d(x.tolist(), w.tolist(), 2, 1)
    assert got.shape[2:] == (golden.conv2d_output_size(6, 3, 2, 1), golden.conv2d_output_size(5, 3, 2, 1))
    assert got.shape[2:] == (3, 3)
