"""The network input in im2col order (Program format 3, :class:`hwq.layout.program.Window`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwq import golden
from hwq.config import CoreConfig
from hwq.golden.conv import conv2d
from hwq.ir import Add, Conv2d, Flatten, Linear, MaxPool2d, QuantizedNetwork, Requant, WeightSpec
from hwq.layout import Program, compile
from hwq.layout.compiler import network_cycles
from hwq.layout.executor import execute
from hwq.layout.program import Window
from hwq.testing import random_inputs, random_network


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    ((5, 5), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((3, 2), (1, 2), (2, 0, 1, 3), (2, 1)),
])
def test_windows_times_the_weight_are_the_convolution(kernel, stride, padding, dilation):
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(2, 3, 9, 7))
    w = rng.integers(-8, 8, size=(4, 3, *kernel))
    win = Window(chw=(3, 9, 7), kernel=kernel, stride=stride, padding=padding,
                 dilation=dilation)
    cols = win.apply(x)                                     # (N, OH, OW, KH*KW*C)
    acc = cols @ w.transpose(0, 2, 3, 1).reshape(4, -1).T   # (N, OH, OW, C_out)
    want = conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    assert cols.shape[1:3] == win.out_hw() == want.shape[2:]
    np.testing.assert_array_equal(acc.transpose(0, 3, 1, 2), want)


def _conv(name: str, c_in: int, c_out: int, k: int, rng, **kw) -> Conv2d:
    w = rng.integers(-7, 8, size=(c_out, c_in, k, k))
    rq = Requant(bias=np.zeros(c_out, np.int64), M=np.full(c_out, 1 << 20),
                 S=np.full(c_out, 30), lo=0, hi=127)
    return Conv2d(name=name, weight=w, spec=WeightSpec("int", 4), requant=rq, **kw)


def _lenet_like(rng) -> QuantizedNetwork:
    lin = Linear(name="fc", weight=rng.integers(-7, 8, size=(10, 16 * 4 * 4)),
                 spec=WeightSpec("int", 4),
                 requant=Requant(bias=np.zeros(10, np.int64), M=np.full(10, 1 << 20),
                                 S=np.full(10, 30), lo=-128, hi=127))
    return QuantizedNetwork(input_shape=(1, 28, 28), act_bits=8, input_scale=1.0, ops=[
        _conv("conv1", 1, 20, 5, rng), MaxPool2d(name="pool1"),
        _conv("conv2", 20, 16, 5, rng), MaxPool2d(name="pool2"), Flatten(name="flat"), lin])


def test_first_conv_of_one_channel_packs_its_taps():
    rng = np.random.default_rng(1)
    net = _lenet_like(rng)
    config = CoreConfig(pe="multiply", lanes=8, simd=8, act_depth=4096, weight_depth=2048)
    program = compile(net, config)
    # 25 taps of 1 channel: ceil(25 / 8) = 4 micro-ops per group instead of 25
    assert program.input.window == Window(chw=(1, 28, 28), kernel=(5, 5), stride=(1, 1),
                                          padding=(0, 0, 0, 0), dilation=(1, 1))
    assert program.input.chw == (25, 24, 24) and program.input.ct == 4
    conv1 = program.layers[0]
    assert conv1["k_tiles"] == 4 and conv1["steps"] == [4, 4, 4]
    assert conv1["cycles"] == 576 * 12 + 24
    # the second conv keeps its stored input: 25 taps x ceil(20 / 8) channel tiles
    assert program.layers[2]["k_tiles"] == 75
    assert [e["cycles"] for e in network_cycles(net, config)][:1] == [576 * 12 + 24]
    x = random_inputs(rng, net, 3)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


def test_three_channel_stem_with_stride_and_padding():
    rng = np.random.default_rng(2)
    net = random_network(rng, input_shape=(3, 9, 9), kind="pot", bits=4)
    program = compile(net, CoreConfig(pe="shift_add", lanes=4, simd=4))
    first = net.ops[0]
    kh, kw = first.kernel
    assert program.input.window is not None
    assert program.layers[0]["k_tiles"] == -(-kh * kw * 3 // 4)
    x = random_inputs(rng, net, 4)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


def test_no_window_when_it_packs_nothing_or_the_input_has_two_readers():
    rng = np.random.default_rng(3)
    full = QuantizedNetwork(input_shape=(8, 6, 6), act_bits=8, input_scale=1.0,
                            ops=[_conv("c", 8, 8, 3, rng)])
    assert compile(full, CoreConfig(pe="multiply", lanes=8, simd=8)).input.window is None
    one_by_one = QuantizedNetwork(input_shape=(3, 6, 6), act_bits=8, input_scale=1.0,
                                  ops=[_conv("c", 3, 8, 1, rng)])
    assert compile(one_by_one, CoreConfig(pe="multiply", lanes=8, simd=8)).input.window is None
    rq = Requant(bias=np.zeros(3, np.int64), M=np.full(3, 1 << 20), S=np.full(3, 21), lo=-128,
                 hi=127)
    fork = QuantizedNetwork(input_shape=(3, 6, 6), act_bits=8, input_scale=1.0, ops=[
        _conv("c", 3, 3, 3, rng, padding=1),
        Add(name="add", inputs=("c", "input"), weights=(1, 1), requant=rq)])
    program = compile(fork, CoreConfig(pe="multiply", lanes=4, simd=4))
    assert program.input.window is None and program.layers[0]["k_tiles"] == 9
    x = random_inputs(rng, fork, 2)
    np.testing.assert_array_equal(execute(program, x), golden.run(fork, x))


def test_window_round_trips_and_is_checked_on_load(tmp_path):
    rng = np.random.default_rng(4)
    program = compile(_lenet_like(rng), CoreConfig(pe="multiply", lanes=8, simd=8,
                                                   act_depth=4096, weight_depth=2048))
    again = Program.from_bytes(program.to_bytes())
    assert again.input == program.input and again.output.window is None
    from tests.layout.test_program import header_of, load_error, with_header

    header = header_of(program)
    header["input"]["window"]["kernel"] = [5, 4]
    assert load_error(tmp_path, with_header(program, json.dumps(header))) == (
        "Program header field input.chw must be [20, 24, 25] (the stored im2col shape of "
        "the window), not [25, 24, 24]")
    header = header_of(program)
    header["input"]["window"]["stride"] = [0, 1]
    assert load_error(tmp_path, with_header(program, json.dumps(header))) == (
        "Program header field input.window.stride must be 2 integers >= 1, not [0, 1]")
    header = header_of(program)
    header["output"]["window"] = header["input"]["window"]
    assert load_error(tmp_path, with_header(program, json.dumps(header))).startswith(
        "Program header field output.window must be null (only the input is stored in "
        "im2col order)")


def test_no_window_when_the_activation_memory_cannot_hold_it():
    rng = np.random.default_rng(5)
    net = _lenet_like(rng)
    # conv1 writes 576 * 3 words beside its input: 576 * 4 words as windows (4032 in all),
    # 784 words as stored (2512)
    small = CoreConfig(pe="multiply", lanes=8, simd=8, act_depth=3072, weight_depth=2048)
    program = compile(net, small)
    assert program.input.window is None and program.layers[0]["k_tiles"] == 25
    assert program.layers[0]["cycles"] == network_cycles(net, small)[0]["cycles"] \
        == 576 * 75 + 24
    x = random_inputs(rng, net, 2)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
