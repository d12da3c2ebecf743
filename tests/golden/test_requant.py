
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq.golden import multiplier_from_scale, requantize, requantize_reference
from hwq.golden.requant import M_MAX

# small, 48-bit (the widest accumulator a core has) and up to the 2**62 limit
ACC = st.one_of(st.integers(-(1 << 40), 1 << 40), st.integers(-(1 << 47), (1 << 47) - 1),
                st.integers(-(1 << 62) + 1, (1 << 62) - 1))


@given(
    st.lists(ACC, min_size=1, max_size=16),
    st.integers(-(1 << 31), (1 << 31) - 1),
    st.integers(1, M_MAX),
    st.integers(1, 62),
    st.integers(2, 16),
    st.booleans(),
)
@settings(max_examples=3000)
def test_requantize_matches_reference(acc, bias, m, s, bits, relu):
    lo = 0 if relu else -(1 << (bits - 1))
    hi = (1 << (bits - 1)) - 1
    got = requantize(np.array([acc]).T, [bias], [m], [s], lo=lo, hi=hi)
    want = [[requantize_reference(a, bias, m, s, lo, hi)] for a in acc]
    assert got.tolist() == want


@given(st.data())
@settings(max_examples=1000)
def test_requantize_per_channel_nchw(data):
    c = data.draw(st.integers(1, 5))
    acc = np.array(data.draw(st.lists(st.integers(-(1 << 24), 1 << 24), min_size=2 * c * 3 * 2,
                                      max_size=2 * c * 3 * 2))).reshape(2, c, 3, 2)
    bias = data.draw(st.lists(st.integers(-(1 << 20), 1 << 20), min_size=c, max_size=c))
    m = data.draw(st.lists(st.integers(1, M_MAX), min_size=c, max_size=c))
    s = data.draw(st.lists(st.integers(1, 62), min_size=c, max_size=c))
    got = requantize(acc, bias, m, s, lo=-128, hi=127)
    for idx in np.ndindex(acc.shape):
        ch = idx[1]
        assert got[idx] == requantize_reference(int(acc[idx]), bias[ch], m[ch], s[ch], -128, 127)


def test_rounding_ties_go_up():
    acc = np.array([[-5], [-3], [-1], [1], [3], [5]])
    # x / 2 with ties up: -2.5 -> -2, -1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 1.5 -> 2, 2.5 -> 3
    assert requantize(acc, [0], [1], [1], lo=-128, hi=127).ravel().tolist() == [-2, -1, 0, 1, 2, 3]


def test_extremes_s1_s62_largest_m():
    big = (1 << 62) // M_MAX  # largest |t| with |t * M_MAX| < 2**62
    acc = np.array([[big], [-big], [0], [1], [-1]])
    for s in (1, 62):
        got = requantize(acc, [0], [M_MAX], [s], lo=-(1 << 62), hi=1 << 62).ravel().tolist()
        want = [requantize_reference(int(a), 0, M_MAX, s, -(1 << 62), 1 << 62) for a in acc.ravel()]
        assert got == want
    # the largest product that fits int64: (2**63 - 1) // M_MAX * M_MAX
    t = ((1 << 63) - 1) // M_MAX
    for s in (1, 2, 62):
        got = requantize(np.array([[t], [-t]]), [0], [M_MAX], [s], lo=-(1 << 62), hi=1 << 62)
        assert got.ravel().tolist() == [
            requantize_reference(v, 0, M_MAX, s, -(1 << 62), 1 << 62) for v in (t, -t)
        ]


def test_clamp_and_relu():
    acc = np.array([[-1000], [-5], [5], [1000]])
    assert requantize(acc, [0], [1], [1], lo=0, hi=127).ravel().tolist() == [0, 0, 3, 127]
    assert requantize(acc, [0], [1], [1], lo=-128, hi=127).ravel().tolist() == [-128, -2, 3, 127]


def test_all_zero():
    acc = np.zeros((3, 4), dtype=np.int64)
    assert (requantize(acc, [0] * 4, [M_MAX] * 4, [62] * 4, lo=-8, hi=7) == 0).all()


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(M=[0]), ValueError, "Requant multiplier M must be a positive 24-bit integer"),
        (dict(M=[1 << 24]), ValueError, "first 16777216"),
        (dict(S=[0]), ValueError, "Requant shift S must be a shift (1..62)"),
        (dict(S=[63]), ValueError, "first 63"),
        (dict(bias=[1 << 31]), ValueError, "Bias must be int32"),
        (dict(bias=[0, 0]), ValueError, "one value per channel, shape (1,), not (2,)"),
        (dict(acc=np.array([[1.5]])), TypeError, "Accumulators must be an integer array"),
        (dict(acc=np.array([1])), ValueError, "must have a channel axis"),
    ],
)
def test_bad_input(kwargs, exc, message):
    args = dict(acc=np.array([[1]]), bias=[0], M=[1], S=[1])
    args.update(kwargs)
    with pytest.raises(exc) as info:
        requantize(args["acc"], args["bias"], args["M"], args["S"], lo=-8, hi=7)
    assert message in str(info.value)


@pytest.mark.parametrize("s", [1, 2, 20, 31, 32, 33, 34, 50, 61, 62])
@pytest.mark.parametrize("lo, hi", [(-(1 << 15), (1 << 15) - 1), (0, 127),
                                    (-(1 << 62), 1 << 62)])
def test_products_beyond_64_bits_are_exact(s, lo, hi):
    # 48-bit accumulators, int32 bias and 24-bit M: (acc + bias) * M needs up to 73 bits;
    # accumulators up to 2**62 need 87. Every k = S - 1 around the 32-bit limb boundary.
    acc = np.array([[(1 << 47) - 1, (1 << 31) - 1], [-(1 << 47), -(1 << 31)], [1 << 40, 0],
                    [-(1 << 40) - 1, 1], [(1 << 62) - 1, -1], [-(1 << 62) + 1, (1 << 62) - 1],
                    [12345678901234, -98765432109876], [(1 << 39) + 1, -(1 << 39) - 1]])
    bias = [(1 << 31) - 1, -(1 << 31)]
    for m in ([M_MAX, M_MAX], [M_MAX - 1, 1 << 23], [3, 5]):
        got = requantize(acc, bias, m, [s, s], lo=lo, hi=hi)
        want = [[requantize_reference(int(a), bias[c], m[c], s, lo, hi) for c, a in enumerate(row)]
                for row in acc]
        assert got.tolist() == want


@given(st.floats(min_value=2.0**-63, max_value=8388607.75, exclude_min=True, exclude_max=True))
@settings(max_examples=3000)
def test_multiplier_from_scale_bound(r):
    m = multiplier_from_scale(r)
    M, S = int(m.M), int(m.S)
    assert 1 <= M <= M_MAX and 1 <= S <= 62
    exact = abs(M - r * 2.0**S) * 2.0**-S  # scaling by 2**S is exact in float64
    assert exact <= float(m.error_bound)
    assert float(m.error_bound) == 2.0 ** -(S + 1)
    if r >= 2.0**-38:  # S <= 62 leaves room for 24 significant bits
        assert (1 << 23) <= M
        assert exact <= r * 2.0**-24
    else:
        assert S == 62




@pytest.mark.parametrize("r, M, S", [(2.0**-62, 1, 62), (3 * 2.0**-61, 6, 62), (0.75, 12582912, 24),
                                     (1.0, 8388608, 23), (2.0**22, 8388608, 1), (8388607.5, 16777215, 1)])
def test_multiplier_exact_values(r, M, S):
    m = multiplier_from_scale(r)
    assert (int(m.M), int(m.S)) == (M, S)


def test_multiplier_carry_renormalizes():
    # mantissa 1 - 2**-26 rounds to 2**24: renormalized to M = 2**23, one shift less
    r = 1 - 2.0**-26
    m = multiplier_from_scale(r)
    assert (int(m.M), int(m.S)) == (1 << 23, 23)


@pytest.mark.parametrize("r, message", [
    (float("nan"), "finite positive float, not nan"),
    (float("inf"), "finite positive float, not inf"),
    (0.0, "finite positive float, not 0.0"),
    (-1.0, "finite positive float, not -1.0"),
    (2.0**23, "below 8388607.75 (M < 2**24 with S >= 1), not 8388608.0"),
    (8388607.75, "not 8388607.75"),
    (2.0**-70, "above 2**-63"),
    (2.0**-63, "above 2**-63"),
])
def test_multiplier_bad_scales(r, message):
    with pytest.raises(ValueError) as info:
        multiplier_from_scale(r)
    assert message in str(info.value)


def test_requant_close_to_float_scale():
    # the documented error: |t*M*2**-S - t*r| <= |t| * 2**-(S+1)
    rng = np.random.default_rng(0)
    r = rng.uniform(1e-4, 1.0, size=64)
    m = multiplier_from_scale(r)
    t = rng.integers(-(1 << 20), 1 << 20, size=(100, 64))
    y = requantize(t, np.zeros(64, np.int64), m.M, m.S, lo=-(1 << 40), hi=1 << 40)
    ideal = t * r
    assert np.all(np.abs(y - ideal) <= 0.5 + np.abs(t) * 2.0 ** -(m.S + 1) + 1e-9)
