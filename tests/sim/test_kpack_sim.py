"""The core with K packing on Verilator (the compiled harness; one case on cocotb too):
every PE type on a random graph network and on LeNet-5's conv2 shapes (20 -> 50 channels,
5x5), outputs equal to hwq.golden and every layer counter equal to the cycle model."""

from __future__ import annotations

import numpy as np
import pytest

from hwq import golden
from hwq.config import CoreConfig
from hwq.layout.compiler import compile as compile_network
from hwq.sim.simulate import simulate
from hwq.testing import kpack_network, random_graph_network, random_inputs

from .exact import assert_exact_run
from .test_core_sim import on_both_backends

#: one core per PE type for both networks (one Verilator build each)
CORE = dict(lanes=4, simd=4, act_depth=4096, weight_depth=32768, param_depth=64, desc_depth=16)
CASES = [("shift_add", "pot"), ("bit_serial", "int"), ("bit_serial", "codebook"),
         ("multiply", "int"), ("multiply", "codebook")]


def _packed_layers(program) -> int:
    """Layers of ``program`` with at least one packed micro-op."""
    n = 0
    for lay in program.layers:
        if lay["kind"] == "matmul":
            img = program.images["weight"][lay["w_base"]:lay["w_base"] + lay["w_words"]]
            n += bool(program.words.weight.unpack(img)["split"].any())
    return n


def _compiled(program, x):
    return simulate(program, None, x, backend="compiled", jobs=1, progress=False)


@pytest.mark.parametrize("pe, kind", CASES, ids=[f"{p}-{k}" for p, k in CASES])
def test_packed_core_on_a_graph_and_on_lenet5_shapes(pe, kind):
    config = CoreConfig(pe=pe, pack=True, **CORE)
    rng = np.random.default_rng(23)
    # a random graph: residual adds (not packed), depthwise and grouped convs, pools, odd
    # kernels with dilation; its stem's channels leave partial tiles
    net = random_graph_network(rng, kind=kind, bits=[2, 3, 4], input_shape=(3, 9, 9),
                               blocks=["res", "dw", "odd_conv", "maxpool", "grouped"])
    program = compile_network(net, config)
    assert _packed_layers(program) >= 1
    x = random_inputs(rng, net, 3)
    assert_exact_run(_compiled(program, x), program, net, x)
    # LeNet-5's conv2 and fc1 shapes: 20 channels (rem 0 on simd 4: nothing to pack), so on
    # this core 22 channels (rem 2) and 50 channels after it (rem 2)
    net = kpack_network(rng, c_in=22, c_out=50, kernel=(5, 5), padding=0, hw=(12, 12),
                        kind=kind, bits=[3, 4], lanes=4, simd=4)
    program = compile_network(net, config)
    assert _packed_layers(program) == 2
    x = random_inputs(rng, net, 2)
    assert_exact_run(_compiled(program, x), program, net, x)


def test_lenet5_conv2_on_an_8x8_packed_core():
    # the real shapes on the 8x8 core: 20 channels on simd 8 (rem 4), conv2 at 63 micro-ops
    # per group and position, fc1 over 50 channels (rem 2)
    config = CoreConfig(pe="shift_add", lanes=8, simd=8, pack=True, act_depth=4096,
                        weight_depth=8192, param_depth=64, desc_depth=16)
    rng = np.random.default_rng(29)
    net = kpack_network(rng, c_in=20, c_out=50, kernel=(5, 5), padding=0, hw=(12, 12),
                        kind="pot", bits=[3, 4], zero_taps=0.0, lanes=8, simd=8)
    program = compile_network(net, config)
    assert program.layers[1]["steps"] == [63] * 7
    x = random_inputs(rng, net, 2)
    assert_exact_run(_compiled(program, x), program, net, x)


def test_packed_core_on_both_backends():
    # cocotb and the compiled harness agree on a packed core (outputs, counters, bus cycles)
    config = CoreConfig(pe="multiply", lanes=2, simd=4, pack=True, act_depth=256,
                        weight_depth=2048, param_depth=16, desc_depth=8)
    rng = np.random.default_rng(31)
    net = kpack_network(rng, c_in=6, kind="int", bits=[2, 4], hw=(5, 5), lanes=2, simd=4,
                        dilation=2, padding=2)
    program = compile_network(net, config)
    assert _packed_layers(program) == 2
    x = random_inputs(rng, net, 2)
    assert_exact_run(on_both_backends(program, x), program, net, x)


def test_packed_core_with_weights_and_activations_in_external_memory():
    # the DMA reads activations through the first read port while the second is the fetch's:
    # row tiles and weight tiles of a packed layer, outputs and counters exact
    from hwq.layout.compiler import core_config

    rng = np.random.default_rng(37)
    net = kpack_network(rng, c_in=20, c_out=12, kernel=(3, 3), padding=1, hw=(10, 10),
                        kind="int", bits=[3], lanes=4, simd=8)
    places = dict(weights="external", activations="external")
    config = core_config(net, pe="multiply", lanes=4, simd=8, pack="on", ext_bits=64,
                         **places)
    program = compile_network(net, config, **places)
    plain = compile_network(net, core_config(net, pe="multiply", lanes=4, simd=8, ext_bits=64,
                                             **places), **places)
    steps = [sum(sum(layer.get("steps", [])) for layer in p.layers) for p in (program, plain)]
    assert steps[0] < steps[1]                 # conv1 packs (20 channels: rem 4)
    assert any("rows" in layer for layer in program.layers)
    x = random_inputs(rng, net, 2)
    sim = _compiled(program, x)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    assert sim.cycle_model_mismatches() == []
