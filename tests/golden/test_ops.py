import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq import golden
from hwq.golden.gemm import int_matmul, matmul_dtype
from tests.golden import reference as ref


def _acts(draw, shape, bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    n = int(np.prod(shape))
    return np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)),
                    dtype=np.int64).reshape(shape)


@given(st.data())
@settings(max_examples=2000)
def test_linear_matches_reference(data):
    n, k, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 40)), data.draw(st.integers(1, 6))
    a_bits, w_bits = data.draw(st.integers(2, 16)), data.draw(st.integers(2, 8))
    x = _acts(data.draw, (n, k), a_bits)
    w = _acts(data.draw, (c, k), w_bits)
    got = golden.linear(x, w, act_bits=a_bits)
    assert got.dtype == np.int64
    assert got.tolist() == ref.linear(x.tolist(), w.tolist())


@given(st.data())
@settings(max_examples=2000)
def test_conv2d_matches_reference(data):
    k = data.draw(st.integers(1, 3))
    stride, padding = data.draw(st.integers(1, 2)), data.draw(st.integers(0, 2))
    h = data.draw(st.integers(max(1, k - 2 * padding), 6))
    w_ = data.draw(st.integers(max(1, k - 2 * padding), 6))
    n, c_in, c_out = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    a_bits, w_bits = data.draw(st.sampled_from([2, 4, 8, 12, 16])), data.draw(st.integers(2, 8))
    x = _acts(data.draw, (n, c_in, h, w_), a_bits)
    w = _acts(data.draw, (c_out, c_in, k, k), w_bits)
    got = golden.conv2d(x, w, stride=stride, padding=padding, act_bits=a_bits)
    assert got.tolist() == ref.conv2d(x.tolist(), w.tolist(), stride, padding)


@given(st.data())
@settings(max_examples=1000)
def test_maxpool_and_flatten(data):
    n, c = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    h, w = data.draw(st.integers(2, 7)), data.draw(st.integers(2, 7))
    x = _acts(data.draw, (n, c, h, w), 8)
    assert golden.maxpool2d(x).tolist() == ref.maxpool2d(x.tolist())
    flat = golden.flatten(x)
    assert flat.tolist() == [[v for ch in xn for row in ch for v in row] for xn in x.tolist()]


def test_conv2d_extremes_all_paths():
    rng = np.random.default_rng(1)
    for a_bits, w_bits, k in [(8, 8, 3), (16, 8, 3), (16, 8, 64)]:
        lo, hi = -(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1
        x = rng.choice([lo, hi], size=(1, 4, 5, 5))
        w = rng.choice([-(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1], size=(2, 4, 3, 3))
        got = golden.conv2d(x, w, padding=1)
        assert got.tolist() == ref.conv2d(x.tolist(), w.tolist(), 1, 1)
        x = rng.choice([lo, hi], size=(2, k * 10))
        wl = rng.choice([-(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1], size=(3, k * 10))
        assert golden.linear(x, wl).tolist() == ref.linear(x.tolist(), wl.tolist())


def test_gemm_dtype_choice_and_int64_path():
    assert matmul_dtype(576, 128, 128) == np.float32  # int8 conv 3x3x64: 2**23.2
    assert matmul_dtype(1024, 128, 128) == np.float64
    assert matmul_dtype(1 << 20, 1 << 15, 1 << 20) == np.int64
    with pytest.raises(ValueError, match="exceeds int64"):
        matmul_dtype(1 << 40, 1 << 15, 1 << 20)
    # values where float64 would round: the int64 path is exact
    a = np.array([[(1 << 40) + 1, 3]], dtype=np.int64)
    b = np.array([[(1 << 20) + 1], [5]], dtype=np.int64)
    assert int_matmul(a, b).tolist() == [[((1 << 40) + 1) * ((1 << 20) + 1) + 15]]


def test_k1_and_zeros():
    assert golden.linear([[5]], [[-3]]).tolist() == [[-15]]
    assert golden.conv2d(np.zeros((1, 1, 3, 3), np.int64), np.ones((2, 1, 1, 1), np.int64)).tolist() \
        == np.zeros((1, 2, 3, 3)).tolist()


def test_accumulator_bound_is_exact():
    w = np.array([[3, -2, 0], [-8, -8, -8]])
    lo, hi = golden.accumulator_range(w, 4)  # acts in -8..7
    assert lo.tolist() == [3 * -8 + -2 * 7, -8 * 7 * 3]
    assert hi.tolist() == [3 * 7 + -2 * -8, 8 * 8 * 3]
    # brute force over all inputs of channel 0
    sums = [3 * a - 2 * b for a in range(-8, 8) for b in range(-8, 8)]
    assert (min(sums), max(sums)) == (int(lo[0]), int(hi[0]))
    assert golden.accumulator_bits(w, 4) == 9  # 192 needs 9 signed bits
    assert golden.accumulator_bits(w, 4, bias=[0, -1000]) == 12
    assert golden.check_accumulator(w, 4, 9) == 9
    with pytest.raises(ValueError, match="Accumulator of 8 bits can overflow: this layer needs 9 bits"):
        golden.check_accumulator(w, 4, 8)
    assert golden.worst_case_accumulator_bits(1, 8, -128, 127) == 16
    assert golden.worst_case_accumulator_bits(576, 8, -128, 127) == 25


def test_accumulator_range_huge_is_exact():
    w = np.array([[1 << 62]], dtype=np.int64)
    lo, hi = golden.accumulator_range(w, 16)
    assert (int(lo[0]), int(hi[0])) == (-(1 << 62) * (1 << 15), (1 << 62) * ((1 << 15) - 1))


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: golden.linear([[1.0]], [[1]]), TypeError, "Activations must be an integer array, not dtype float64"),
        (lambda: golden.linear([[1, 2]], [[1]]), ValueError, "K=2 features but the weights expect K=1"),
        (lambda: golden.linear([[200]], [[1]], act_bits=8), ValueError, "8-bit signed (-128..127)"),
        (lambda: golden.linear([[1]], [[1]], act_bits=17), ValueError, "Activation bit width must be an integer in 2..16, not 17"),
        (lambda: golden.conv2d(np.zeros((1, 2, 3, 3), int), np.zeros((1, 3, 1, 1), int)), ValueError,
         "Conv input has 2 channels but the weights expect 3"),
        (lambda: golden.conv2d(np.zeros((1, 1, 2, 2), int), np.zeros((1, 1, 3, 3), int)), ValueError,
         "smaller than the 3x3 kernel"),
        (lambda: golden.conv2d(np.zeros((1, 1, 3, 3), int), np.zeros((1, 1, 1, 1), int), stride=0), ValueError,
         "Conv stride must be an integer in 1..65536, not 0"),
        (lambda: golden.conv2d(np.zeros((1, 3, 3), int), np.zeros((1, 1, 1, 1), int)), ValueError,
         "Activations must have 4 dimensions (N, C, H, W), not shape (1, 3, 3)"),
        (lambda: golden.maxpool2d(np.zeros((1, 1, 1, 4), int)), ValueError, "at least 2x2, not 1x4"),
    ],
)
def test_bad_input(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert message in str(info.value)
