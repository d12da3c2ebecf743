import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq import golden


@pytest.mark.parametrize("bits", range(2, 9))
def test_bitplanes_exhaustive(bits):
    values = np.arange(-(1 << (bits - 1)), 1 << (bits - 1))
    planes = golden.bitplanes(values, bits)
    assert planes.shape == (bits, values.size)
    assert set(np.unique(planes).tolist()) <= {0, 1}
    np.testing.assert_array_equal(golden.from_bitplanes(planes), values)
    coef = golden.plane_coefficients(bits)
    for v, column in zip(values.tolist(), planes.T.tolist(), strict=True):
        assert sum(c * p for c, p in zip(coef.tolist(), column, strict=True)) == v


@pytest.mark.parametrize("bits", [2, 3])
def test_bitserial_product_exhaustive_small(bits):
    # every (activation, weight) pair of 4-bit activations and `bits`-bit weights
    acts = np.arange(-8, 8)
    weights = np.arange(-(1 << (bits - 1)), 1 << (bits - 1))
    pairs = np.array(list(itertools.product(acts, weights)))
    x, w = pairs[:, :1], pairs[:, 1:]
    got = np.array([golden.bitserial_linear(xi[None], wi[None], bits)[0, 0] for xi, wi in zip(x, w, strict=True)])
    np.testing.assert_array_equal(got, x[:, 0] * w[:, 0])


@given(st.data())
@settings(max_examples=2000)
def test_bitserial_equals_direct(data):
    bits = data.draw(st.integers(2, 8))
    n, k, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 24)), data.draw(st.integers(1, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-(1 << 15), 1 << 15, size=(n, k))
    w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(c, k))
    np.testing.assert_array_equal(golden.bitserial_linear(x, w, bits), golden.linear(x, w))


@given(st.data())
@settings(max_examples=2000)
def test_shift_add_equals_direct(data):
    bits = data.draw(st.integers(2, 6))
    n, k, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 24)), data.draw(st.integers(1, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-128, 128, size=(n, k))
    codes = rng.integers(0, 1 << bits, size=(c, k))  # every code, "negative zero" included
    fmt = golden.PotFormat(bits)
    np.testing.assert_array_equal(golden.shift_add_linear(x, codes, bits), golden.linear(x, fmt.decode(codes)))
