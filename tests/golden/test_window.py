import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq import golden
from hwq.golden import ops
from hwq.golden.window import conv2d_output_size, conv_output_size, padding4, pair


def test_pair_and_padding4_forms():
    assert pair(3, "K") == (3, 3)
    assert pair((3, 1), "K") == (3, 1)
    assert pair([2, 5], "K") == (2, 5)
    assert pair(np.int32(4), "K") == (4, 4)
    assert pair(np.array([1, 2]), "K") == (1, 2)
    assert pair((np.int64(7), 0), "K") == (7, 0)
    assert all(type(v) is int for v in pair(np.int16(2), "K") + pair(np.array([1, 2]), "K"))
    assert padding4(2, "P") == (2, 2, 2, 2)
    assert padding4((1, 3), "P") == (1, 1, 3, 3)
    assert padding4([0, 1, 2, 3], "P") == (0, 1, 2, 3)
    assert padding4(np.uint8(1), "P") == (1, 1, 1, 1)
    assert all(type(v) is int for v in padding4(np.array([1, 2, 3, 4]), "P"))


@pytest.mark.parametrize(
    "value, exc, message",
    [
        (True, TypeError, "K must be an integer or a pair of integers (h, w), not True"),
        (1.7, TypeError, "not 1.7"),
        (2.0, TypeError, "not 2.0"),
        ("8", TypeError, "not '8'"),
        (None, TypeError, "not None"),
        ((1, 2.0), TypeError, "not (1, 2.0)"),
        ((1, False), TypeError, "not (1, False)"),
        ([[1, 2]], TypeError, "not [[1, 2]]"),
        (np.array([[1, 2]]), TypeError, "K must be an integer or a pair of integers (h, w), not array"),
        (np.array([1.0, 2.0]), TypeError, "not array([1., 2.])"),
        ((1, 2, 3), ValueError, "K must be an integer or a pair of integers (h, w), not (1, 2, 3)"),
        ((), ValueError, "not ()"),
    ],
)
def test_pair_refuses(value, exc, message):
    with pytest.raises(exc) as info:
        pair(value, "K")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "value, exc, message",
    [
        (-1, ValueError, "P must be a non-negative integer, a pair (h, w) or four integers "
                         "(top, bottom, left, right), not -1"),
        ((0, -1), ValueError, "not (0, -1)"),
        ((1, 1, 1, -2), ValueError, "not (1, 1, 1, -2)"),
        ((1, 2, 3), ValueError, "not (1, 2, 3)"),
        ("same", TypeError, "not 'same'"),
        (0.5, TypeError, "not 0.5"),
        (False, TypeError, "not False"),
    ],
)
def test_padding4_refuses(value, exc, message):
    with pytest.raises(exc) as info:
        padding4(value, "P")
    assert message in str(info.value)


@given(st.integers(1, 20), st.integers(1, 5), st.integers(1, 4), st.integers(0, 3), st.integers(0, 3),
       st.integers(1, 3))
@settings(max_examples=300)
def test_conv_output_size_is_pytorch(size, kernel, stride, pad_lo, pad_hi, dilation):
    want = (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1
    assert conv_output_size(size, kernel, stride, pad_lo, pad_hi, dilation) == want
    if want >= 1:  # torch agrees on the shape (it refuses kernels that do not fit)
        x = torch.zeros(1, 1, 1, size)
        out = F.conv2d(F.pad(x, (pad_lo, pad_hi)), torch.zeros(1, 1, 1, kernel), stride=stride,
                       dilation=dilation)
        assert out.shape[-1] == want
    if pad_lo == pad_hi and dilation == 1:
        assert conv2d_output_size(size, kernel, stride, pad_lo) == want


def test_conv_output_size_refuses():
    with pytest.raises(ValueError, match=r"Stride must be an integer in 1\.\.1099511627776, not 0"):
        conv_output_size(5, 3, 0, 0, 0)
    with pytest.raises(TypeError, match=r"Kernel size must be an integer in 1\.\.\d+, not 2\.5"):
        conv_output_size(5, 2.5, 1, 0, 0)
    assert conv_output_size(2, 5, 1, 0, 0) == -2  # does not fit: the caller refuses it


def test_reexports():
    for name in ("conv2d", "maxpool2d", "avgpool2d_sum", "global_avgpool_sum", "add",
                 "add_multipliers", "pair", "padding4", "conv_output_size", "conv2d_output_size"):
        assert getattr(golden, name) is getattr(ops, name), name
        assert name in golden.__all__ and name in ops.__all__
