from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq import golden
from hwq.golden.eltwise import add, add_multipliers
from hwq.golden.requant import M_MAX
from tests.golden import reference as ref
from tests.golden.strategies import tensor

SCALES = st.floats(1e-12, 1e6, allow_nan=False, allow_infinity=False)


@given(st.data())
@settings(max_examples=1500)
def test_add_matches_reference(data):
    draw = data.draw
    c = draw(st.integers(1, 4))
    shape = draw(st.sampled_from([(2, c), (1, c, 3, 2), (2, c, 1, 4)]))
    a, b = tensor(draw, shape, 16), tensor(draw, shape, 16)

    def param(lo, hi):  # scalar or per channel, often at the ends of the range
        values = st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi]))
        return draw(values) if draw(st.booleans()) else draw(st.lists(values, min_size=c, max_size=c))

    ma, mb, s = param(1, M_MAX), param(1, M_MAX), param(1, 62)
    bits = draw(st.integers(2, 16))
    lo = 0 if draw(st.booleans()) else -(1 << (bits - 1))
    hi = (1 << (bits - 1)) - 1
    got = add(a, b, ma=ma, mb=mb, s=s, lo=lo, hi=hi)
    assert got.dtype == np.int64 and got.shape == shape

    def at(p, ch):
        return p if isinstance(p, int) else p[ch]

    want = [ref.add(int(a[i]), int(b[i]), at(ma, i[1]), at(mb, i[1]), at(s, i[1]), lo, hi)
            for i in np.ndindex(shape)]
    assert got.ravel().tolist() == want


def test_add_extremes_unclamped():
    # the largest |a*ma + b*mb| (2 * 2**15 * (2**24 - 1)) survives exactly at every shift
    lo16, hi16 = -(1 << 15), (1 << 15) - 1
    a = np.array([[lo16, hi16, lo16, hi16]])
    b = np.array([[lo16, hi16, hi16, lo16]])
    for s in (1, 2, 23, 40, 61, 62):
        got = add(a, b, ma=M_MAX, mb=M_MAX, s=s, lo=-(1 << 62), hi=1 << 62)
        want = [(int(x) * M_MAX + int(y) * M_MAX + (1 << (s - 1))) >> s for x, y in zip(a[0], b[0], strict=True)]
        assert got[0].tolist() == want
    assert add(a, b, ma=M_MAX, mb=M_MAX, s=1, lo=-(1 << 62), hi=1 << 62)[0, 0] == -(M_MAX << 15)


def test_add_hand_computed():
    # ties round half up: -1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 1.5 -> 2
    a = np.array([[-3, -1, 1, 3]])
    assert add(a, np.zeros_like(a), ma=1, mb=1, s=1, lo=-128, hi=127).tolist() == [[-1, 0, 1, 2]]
    # y = (3*a + 5*b) / 4 with ReLU and clamp to 4 bits
    a = np.array([[10, -10, 1, 2]])
    b = np.array([[2, 2, 1, -1]])
    # (30+10)/4 = 10 -> 7; (-30+10)/4 = -5 -> 0; 8/4 = 2; (6-5)/4 = 0.25 -> 0
    assert add(a, b, ma=3, mb=5, s=2, lo=0, hi=7).tolist() == [[7, 0, 2, 0]]
    # per channel (axis 1) on NCHW
    a = np.ones((1, 2, 1, 2), np.int64)
    got = add(a, a, ma=[1, 4], mb=[1, 2], s=[1, 2], lo=-128, hi=127)
    assert got.tolist() == [[[[1, 1]], [[2, 2]]]]  # (1+1+1)>>1 = 1; (4+2+2)>>2 = 2


@given(SCALES, SCALES, SCALES)
@settings(max_examples=3000)
def test_add_multipliers_match_reference_and_bound(scale_a, scale_b, scale_out):
    ra, rb = scale_a / scale_out, scale_b / scale_out
    if max(ra, rb) >= (M_MAX + 0.5) / 2:
        with pytest.raises(ValueError, match="must be below"):
            add_multipliers(scale_a, scale_b, scale_out)
        return
    want = ref.add_multipliers(scale_a, scale_b, scale_out)
    if min(want[:2]) == 0:
        with pytest.raises(ValueError, match="too far apart"):
            add_multipliers(scale_a, scale_b, scale_out)
        return
    ma, mb, s = add_multipliers(scale_a, scale_b, scale_out)
    assert (ma, mb, s) == want
    assert all(type(v) is int for v in (ma, mb, s))
    assert 1 <= s <= 62 and 1 <= min(ma, mb) and max(ma, mb) <= M_MAX
    if s < 62:
        assert 1 << 23 <= max(ma, mb)
    for m, r in ((ma, ra), (mb, rb)):  # nearest: |m * 2**-s - r| <= 2**-(s+1), exactly
        assert abs(Fraction(m, 1 << s) - Fraction(r)) <= Fraction(1, 1 << (s + 1))


def test_add_multipliers_vectorized_and_end_to_end():
    ma, mb, s = add_multipliers([0.5, 0.02], [0.25, 0.03], [1.0, 0.04])
    assert (ma.tolist(), mb.tolist(), s.tolist()) == ([1 << 23, 1 << 23], [1 << 22, 3 << 22], [24, 24])
    assert add_multipliers(0.1, 0.3, 0.2) == (4194304, 12582912, 23)  # ratios 0.5, 1.5
    assert add_multipliers(1.0, 1.0, 1.0) == (1 << 23, 1 << 23, 23)
    # rounding up to 2**24 moves the shift: r = 1 - 2**-30 needs 24 bits at s = 23
    assert add_multipliers(1 - 2**-30, 2**-20, 1.0) == (1 << 23, 8, 23)
    # tiny ratios keep s = 62 with the larger multiplier below 2**23
    assert add_multipliers(2**-45, 2**-50, 1.0) == (1 << 17, 1 << 12, 62)
    # y = a*0.6 + b*0.45 on real values: the integer add is within 1 of round(y)
    ma, mb, s = add_multipliers(0.06, 0.045, 0.1)
    rng = np.random.default_rng(0)
    a, b = rng.integers(-(1 << 15), 1 << 15, (2, 1, 1000))
    got = add(a, b, ma=ma, mb=mb, s=s, lo=-(1 << 20), hi=1 << 20)
    assert np.abs(got - (a * 0.6 + b * 0.45)).max() <= 0.5 + 2 * (1 << 15) * 2.0 ** -(s + 1)


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: add([[1]], [[1, 2]], ma=1, mb=1, s=1, lo=0, hi=1), ValueError,
         "Add inputs must have the same shape, not (1, 1) and (1, 2)"),
        (lambda: add([1], [1], ma=1, mb=1, s=1, lo=0, hi=1), ValueError,
         "Add inputs must have a channel axis (N, C, ...), not shape (1,)"),
        (lambda: add([[1 << 15]], [[0]], ma=1, mb=1, s=1, lo=0, hi=1), ValueError,
         "Add input a must be 16-bit signed (-32768..32767); 1 value(s) are not, first 32768 at index (0, 0)"),
        (lambda: add([[0]], [[-(1 << 15) - 1]], ma=1, mb=1, s=1, lo=0, hi=1), ValueError,
         "Add input b must be 16-bit signed"),
        (lambda: add([[0.5]], [[0]], ma=1, mb=1, s=1, lo=0, hi=1), TypeError,
         "Add input a must be an integer array, not dtype float64"),
        (lambda: add([[0]], [[0]], ma=0, mb=1, s=1, lo=0, hi=1), ValueError,
         "Add multiplier ma must be a positive 24-bit integer (1..16777215)"),
        (lambda: add([[0]], [[0]], ma=1, mb=1 << 24, s=1, lo=0, hi=1), ValueError,
         "Add multiplier mb must be a positive 24-bit integer (1..16777215)"),
        (lambda: add([[0, 0]], [[0, 0]], ma=1, mb=1, s=[1, 63], lo=0, hi=1), ValueError,
         "Add shift s must be a shift (1..62); 1 value(s) are not, first 63 at index (1,)"),
        (lambda: add([[0, 0]], [[0, 0]], ma=[1, 2, 3], mb=1, s=1, lo=0, hi=1), ValueError,
         "Add multiplier ma must have one value per channel, shape (2,), not (3,)"),
        (lambda: add([[0]], [[0]], ma=1, mb=1, s=1, lo=5, hi=1), ValueError,
         "Clamp high bound must be an integer in 5..4611686018427387904, not 1"),
        (lambda: add_multipliers(0.5, -1.0, 1.0), ValueError,
         "Add scale_b must be a finite positive float, not -1.0"),
        (lambda: add_multipliers(0.5, 1.0, float("nan")), ValueError,
         "Add scale_out must be a finite positive float, not nan"),
        (lambda: add_multipliers("x", 1.0, 1.0), TypeError,
         "Add scale_a must be a finite positive float, not 'x'"),
        (lambda: add_multipliers(1e7, 1.0, 1.0), ValueError,
         "Add scale ratio max(scale_a, scale_b) / scale_out must be below 8388607.75 "
         "(multipliers < 2**24 with s >= 1), not 10000000.0 (scale_a=10000000.0, scale_b=1.0, scale_out=1.0)"),
        (lambda: add_multipliers(1.0, 1e-9, 1.0), ValueError,
         "Add scales scale_a=1.0, scale_b=1e-09, scale_out=1.0 are too far apart: with the larger "
         "multiplier at 24 bits (or s = 62) the smaller rounds to 0"),
        (lambda: add_multipliers(1e-20, 1e-20, 1.0), ValueError, "too far apart"),
    ],
)
def test_add_bad_input(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert message in str(info.value)


def test_reexported():
    assert golden.add is add and golden.add_multipliers is add_multipliers
