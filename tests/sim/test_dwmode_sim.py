"""The MAC array's depthwise mode on Verilator (the compiled harness): random depthwise
layers on every PE type and MNIST sepnet, outputs equal to hwq.golden and every layer
counter equal to the cycle model."""

from __future__ import annotations

import numpy as np
import pytest

from hwq.config import CoreConfig
from hwq.layout.compiler import compile as compile_network
from hwq.layout.compiler import core_config
from hwq.sim.simulate import simulate
from hwq.testing import depthwise_network, random_inputs

from .exact import assert_exact_run

#: one 8x8 core per PE type for every layer (one Verilator build each)
CORE = dict(lanes=8, simd=8, act_depth=2048, weight_depth=1024, param_depth=64, desc_depth=16,
            pack=True, depthwise=True)
#: (channels, kernel, stride, padding, (H, W))
LAYERS = [(8, (3, 3), 1, 1, (7, 7)), (16, (3, 3), 2, 1, (14, 14)), (12, (3, 3), 1, 0, (5, 5)),
          (8, (3, 3), 2, 0, (7, 5)), (16, (2, 2), 1, 1, (5, 14)), (12, (1, 3), 1, 1, (5, 7))]
CASES = [("shift_add", "pot"), ("bit_serial", "int"), ("multiply", "int")]


@pytest.mark.parametrize("pe, kind", CASES, ids=[p for p, _ in CASES])
def test_depthwise_layers_on_the_core(pe, kind):
    config = CoreConfig(pe=pe, weight_bits=4, **CORE)
    rng = np.random.default_rng(41)
    for i, (c, kernel, stride, padding, hw) in enumerate(LAYERS):
        net = depthwise_network(rng, channels=c, kernel=kernel, stride=stride,
                                padding=padding, hw=hw, kind=kind,
                                bits=[3, 4] if kind == "pot" else [2, 3, 4],
                                zero_taps=0.2 if i % 2 else 0.0)
        program = compile_network(net, config)
        assert sum("dw_tile" in lay for lay in program.layers) == -(-c // 8)
        x = random_inputs(rng, net, 2)
        assert_exact_run(simulate(program, None, x, backend="compiled", jobs=1, progress=False),
                         program, net, x)


@pytest.mark.slow
def test_sepnet_with_the_depthwise_mode():
    from hwq.golden.network import quantize_input
    from hwq.quant.api import quantize
    from hwq.workloads import get_workload

    workload = get_workload("sepnet")
    data = workload.load_data()
    net = quantize(workload.pretrained(progress=False), "inq", bits=4, data=data, seed=0,
                   progress=False, schedule=(1.0,)).network
    config = core_config(net, pe="shift_add", lanes=8, simd=8, depthwise="on")
    program = compile_network(net, config)
    dw = {lay["name"] for lay in program.layers if "dw_tile" in lay}
    assert len(dw) == 4                 # 16ch@28x28 s1, 32ch s2, 32ch@14x14 s1, 64ch s2
    x = quantize_input(data.x_test[:3].numpy(), net.input_scale, net.act_bits)
    assert_exact_run(simulate(program, None, x, backend="compiled", jobs=1, progress=False),
                     program, net, x)


def test_depthwise_layer_on_both_backends():
    # cocotb (the protocol-checked testbench) and the compiled harness agree exactly
    from .test_core_sim import on_both_backends

    config = CoreConfig(pe="shift_add", weight_bits=4, **{**CORE, "act_depth": 256,
                                                          "weight_depth": 64})
    rng = np.random.default_rng(43)
    net = depthwise_network(rng, channels=12, stride=2, hw=(5, 7), kind="pot", bits=[3, 4])
    program = compile_network(net, config)
    x = random_inputs(rng, net, 1)
    assert_exact_run(on_both_backends(program, x), program, net, x)
