"""The core with K packing (a second activation read port) in Amaranth's simulator: every
PE type, outputs equal to hwq.golden and every layer counter equal to the cycle model."""

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.layout import compile
from hwq.rtl.generate import generate
from hwq.rtl.simulation import simulate_core
from hwq.testing import kpack_network, random_inputs

SMALL = dict(act_depth=256, weight_depth=2048, param_depth=16, desc_depth=8)


@pytest.mark.parametrize(("pe", "kind", "c_in", "lanes", "simd"), [
    ("shift_add", "pot", 6, 4, 4),          # rem 2 = simd / 2
    ("bit_serial", "int", 5, 4, 4),         # rem 1
    ("bit_serial", "codebook", 9, 2, 4),    # rem 1, lanes < simd
    ("multiply", "int", 3, 4, 8),           # one partial tile per tap, rem 3
    ("multiply", "codebook", 6, 4, 4),
])
def test_packed_core_equals_golden_and_cycle_model(pe, kind, c_in, lanes, simd):
    rng = np.random.default_rng(c_in * 7 + lanes)
    net = kpack_network(rng, c_in=c_in, kind=kind, bits=[2, 3, 4] if kind != "pot" else [3, 4],
                        hw=(5, 5), lanes=lanes, simd=simd, dilation=2, padding=2)
    program = compile(net, CoreConfig(pe=pe, lanes=lanes, simd=simd, pack=True, **SMALL))
    lay = program.layers[1]
    img = program.images["weight"][lay["w_base"]:lay["w_base"] + lay["w_words"]]
    assert program.words.weight.unpack(img)["split"].any()     # the conv packs
    x = random_inputs(rng, net, 1)
    result = simulate_core(program, x)
    np.testing.assert_array_equal(result.outputs, golden.run(net, x))
    assert result.layer_cycles[0] == [layer["cycles"] for layer in program.layers]
    assert result.cycles[0] == program.cycles()


def test_pack_adds_a_second_activation_read_port_only_when_on():
    plain = generate(CoreConfig(pe="multiply", lanes=2, simd=4, **SMALL))
    packed = generate(CoreConfig(pe="multiply", lanes=2, simd=4, pack=True, **SMALL))
    reads = [[line for line in v.splitlines() if "<= act_mem[" in line] for v in (plain, packed)]
    assert len(reads[0]) == 1 and "act_rd__addr" in reads[0][0]
    assert len(reads[1]) == 2 and "afetch.act_addr2" in reads[1][1]
