import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq import golden
from hwq.golden.ops import avgpool2d_sum, global_avgpool_sum, maxpool2d
from tests.golden import reference as ref
from tests.golden.strategies import padding, pair_arg, tensor

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _pool_case(draw):
    """Random pooling geometry (padding at most half the kernel) and a fitting input."""
    kernel_arg, (kh, kw) = pair_arg(draw, 1, 4)
    stride_arg, (sh, sw) = draw(st.sampled_from([(None, (kh, kw)), pair_arg(draw, 1, 5)]))
    pad_arg, (top, bottom, left, right) = padding(draw, kh // 2, kw // 2)
    h_min, w_min = max(1, kh - top - bottom), max(1, kw - left - right)
    h = h_min if draw(st.booleans()) else draw(st.integers(h_min, h_min + 6))
    w = w_min if draw(st.booleans()) else draw(st.integers(w_min, w_min + 6))
    x = tensor(draw, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w),
               draw(st.sampled_from([2, 8, 16])))
    return x, kernel_arg, stride_arg, pad_arg, (kh, kw), (sh, sw), (top, bottom, left, right)


@given(st.data())
@settings(max_examples=1500)
def test_maxpool2d_matches_reference(data):
    x, k_arg, s_arg, p_arg, k, s, p = _pool_case(data.draw)
    got = maxpool2d(x, k_arg, s_arg, p_arg)
    assert got.dtype == np.int64
    assert got.tolist() == ref.maxpool2d(x.tolist(), k, s, p)


@given(st.data())
@settings(max_examples=1500)
def test_avgpool2d_sum_matches_reference(data):
    x, k_arg, s_arg, p_arg, k, s, p = _pool_case(data.draw)
    got = avgpool2d_sum(x, k_arg, stride=s_arg, padding=p_arg)
    assert got.dtype == np.int64
    assert got.tolist() == ref.avgpool2d_sum(x.tolist(), k, s, p)


@given(st.data())
@settings(max_examples=500)
def test_global_avgpool_sum_matches_reference(data):
    shape = tuple(data.draw(st.integers(1, n)) for n in (2, 3, 9, 9))
    x = tensor(data.draw, shape, 16)
    got = global_avgpool_sum(x)
    assert got.shape == (*shape[:2], 1, 1)
    assert got.tolist() == ref.global_avgpool_sum(x.tolist())


def test_maxpool2d_default_is_2x2_stride_2():
    x = np.arange(2 * 3 * 5 * 7).reshape(2, 3, 5, 7) * 37 % 101 - 50
    assert maxpool2d(x).tolist() == ref.maxpool2d(x.tolist())  # the wave-1 reference
    assert maxpool2d(x).shape == (2, 3, 2, 3)  # odd last row and column dropped
    assert golden.maxpool2d(x).tolist() == maxpool2d(x, 2, 2, 0).tolist()


def test_pool_hand_computed():
    x = np.arange(16).reshape(1, 1, 4, 4)
    # ResNet stem geometry 3x3 / 2 / 1: windows clipped at the top/left edge
    assert maxpool2d(x, 3, 2, 1).tolist() == [[[[5, 7], [13, 15]]]]
    # all negative: the padding (implicit -infinity) never wins
    assert maxpool2d(-x - 1, 3, 2, 1).tolist() == [[[[-1, -2], [-5, -6]]]]
    assert avgpool2d_sum(x, 2).tolist() == [[[[10, 18], [42, 50]]]]
    # zero padding counts in the window (count_include_pad): 3x3 windows on 2x2 ones
    assert avgpool2d_sum(np.ones((1, 1, 2, 2), np.int64), 3, 1, 1).tolist() == [[[[4, 4], [4, 4]]]]
    # non-square kernel, stride larger than the kernel, padding on one side
    assert avgpool2d_sum(x, (1, 2), (3, 3), (0, 0, 1, 0)).tolist() == [[[[0, 5], [12, 29]]]]
    assert global_avgpool_sum(x).tolist() == [[[[120]]]]


def test_maxpool2d_int64_extremes():
    for value in (INT64_MIN, INT64_MAX):
        x = np.full((1, 2, 3, 3), value, np.int64)
        assert maxpool2d(x, 3, 2, 1).tolist() == [[[[value] * 2] * 2] * 2]
    x = np.array([INT64_MIN, INT64_MAX, -1, 0]).reshape(1, 1, 2, 2)
    assert maxpool2d(x, 2, 1, 1).tolist() == [[[[INT64_MIN, INT64_MAX, INT64_MAX],
                                                 [-1, INT64_MAX, INT64_MAX],
                                                 [-1, 0, 0]]]]


@pytest.mark.parametrize("kernel, stride, padding", [(3, 2, 1), ((2, 3), (1, 2), (1, 0)), (2, None, 0),
                                                     (1, 3, 0), ((4, 2), 1, (2, 1))])
def test_pools_match_torch(kernel, stride, padding):
    rng = np.random.default_rng(7)
    x = rng.integers(-(1 << 15), 1 << 15, (2, 3, 9, 8))
    xt = torch.from_numpy(x).double()
    stride_t = kernel if stride is None else stride
    want = F.max_pool2d(xt, kernel, stride_t, padding).numpy()
    np.testing.assert_array_equal(maxpool2d(x, kernel, stride, padding), want.astype(np.int64))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    # divisor_override=1 makes torch return the window sums, exactly
    sums = F.avg_pool2d(xt, kernel, stride_t, padding, count_include_pad=True,
                        divisor_override=1).numpy()
    got = avgpool2d_sum(x, kernel, stride, padding)
    np.testing.assert_array_equal(got, sums.astype(np.int64))
    # the plain average times kh*kw: the sum up to float rounding (|sum| < 2**20, error < 1e-6)
    avg = F.avg_pool2d(xt, kernel, stride_t, padding, count_include_pad=True).numpy()
    np.testing.assert_array_equal(got, np.rint(avg * (kh * kw)).astype(np.int64))
    gsum = F.adaptive_avg_pool2d(xt, 1).numpy() * (9 * 8)
    np.testing.assert_array_equal(global_avgpool_sum(x), np.rint(gsum).astype(np.int64))


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda x: maxpool2d(x, 3, 1, 2), ValueError,
         "Maxpool padding must be at most half the kernel on each side (as in PyTorch), not 2 for a 3x3 kernel"),
        (lambda x: maxpool2d(x, (2, 3), 1, (0, 0, 0, 2)), ValueError, "not (0, 0, 0, 2) for a 2x3 kernel"),
        (lambda x: maxpool2d(x, 1, 1, 1), ValueError, "not 1 for a 1x1 kernel"),
        (lambda x: avgpool2d_sum(x, 2, 2, (2, 0)), ValueError,
         "Avgpool padding must be at most half the kernel on each side"),
        (lambda x: maxpool2d(x, 5), ValueError, "Maxpool 5x5 needs an input of at least 5x5, not 4x3"),
        (lambda x: maxpool2d(x, (3, 6), 1, 1), ValueError,
         "Maxpool 3x6 with padding 1 needs an input of at least 1x4, not 4x3"),
        (lambda x: avgpool2d_sum(x, (6, 2)), ValueError, "Avgpool 6x2 needs an input of at least 6x2, not 4x3"),
        (lambda x: maxpool2d(x[:, :, :0], 2, 1, 1), ValueError, "at least 1x1, not 0x3"),
        (lambda x: maxpool2d(x, 0), ValueError, "Maxpool kernel must be an integer in 1..65536, not 0"),
        (lambda x: maxpool2d(x, 2, (1, 0)), ValueError, "Maxpool stride must be integers in 1..65536, not (1, 0)"),
        (lambda x: maxpool2d(x, 2.0), TypeError, "Maxpool kernel must be an integer or a pair of integers (h, w), not 2.0"),
        (lambda x: avgpool2d_sum(x, "2"), TypeError, "Avgpool kernel must be an integer or a pair of integers (h, w), not '2'"),
        (lambda x: maxpool2d(x[0]), ValueError, "Activations must have 4 dimensions (N, C, H, W), not shape (1, 4, 3)"),
        (lambda x: global_avgpool_sum(x[:, :, :, :0]), ValueError, "Global avgpool input must be at least 1x1, not 4x0"),
        (lambda x: avgpool2d_sum(np.full((1, 1, 2, 2), 1 << 62), 2), ValueError,
         "Avgpool window sum of 4 values up to 4611686018427387904 in magnitude overflows int64"),
        (lambda x: global_avgpool_sum(np.full((1, 1, 1, 2), -(1 << 62) - 1)), ValueError,
         "Global avgpool sum of 2 values"),
    ],
)
def test_pool_bad_input(call, exc, message):
    with pytest.raises(exc) as info:
        call(np.zeros((1, 1, 4, 3), np.int64))
    assert message in str(info.value)
