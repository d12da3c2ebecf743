# amaranth: UnusedElaboratable=no
"""The core with weights in external memory, in Amaranth's simulator: the AXI4 read master,
the double-buffered weight tiles and the load waits, against hwq.golden and the model."""

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.golden.memory import SIM_BASE, bursts
from hwq.hardware import PE_FORMATS
from hwq.layout import compile
from hwq.layout.compiler import core_config
from hwq.rtl.axi_memory import AxiMemory
from hwq.rtl.core import Core
from hwq.rtl.simulation import simulate_core
from hwq.testing import random_inputs, random_network, tight_weight_depth

ARCH = (("conv", 8, 3, 1, 1, True), ("pool",), ("conv", 12, 3, 1, 0, True), ("flatten",),
        ("linear", 10, False))


def _program(pe, kind, lanes, simd, *, ext_bits=64, burst=4, outstanding=2, seed=1):
    rng = np.random.default_rng(seed)
    net = random_network(rng, input_shape=(3, 6, 6), arch=ARCH, kind=kind, bits=[2, 3, 4],
                         per_channel_bits=True, zero_tile_fraction=0.3, zero_tile=(lanes, simd))
    cfg = core_config(net, pe=pe, lanes=lanes, simd=simd, ext_bits=ext_bits, ext_burst=burst,
                      ext_outstanding=outstanding, weights="external")
    # buffers of one unit of groups: the larger layers are cut into several tiles
    depth = tight_weight_depth(compile(net, cfg, weights="external"))
    small = CoreConfig(**{**cfg.to_dict(), "weight_depth": depth, "desc_depth": 64})
    return net, compile(net, small, weights="external"), random_inputs(rng, net, 2)


# every PE and weight format, each on one array shape, bus width and latency
SHAPES = [(4, 4, 64, 3), (8, 2, 32, 1), (2, 8, 128, 7)]
CASES = [(pe, kind, *SHAPES[i % len(SHAPES)]) for i, (pe, kind) in enumerate(PE_FORMATS)]


@pytest.mark.parametrize(("pe", "kind", "lanes", "simd", "ext_bits", "latency"), CASES)
def test_every_pe_runs_tiled_weights_bit_exact_in_the_modelled_cycles(pe, kind, lanes, simd,
                                                                       ext_bits, latency):
    net, program, x = _program(pe, kind, lanes, simd, ext_bits=ext_bits)
    assert sum("tile" in layer for layer in program.layers) > 3
    run = simulate_core(program, x, latency=latency)
    np.testing.assert_array_equal(run.outputs, golden.run(net, x))
    assert run.layer_cycles == [run.model_layer_cycles] * len(x)
    plain = sum(layer["cycles"] for layer in program.layers)
    assert run.stall_cycles == [sum(run.model_layer_cycles) - plain] * len(x)


@pytest.mark.parametrize(("pe", "kind", "outstanding"),
                         [("shift_add", "pot", 1), ("bit_serial", "int", 3)])
def test_random_stalls_keep_the_outputs_and_stay_within_the_bound(pe, kind, outstanding):
    net, program, x = _program(pe, kind, 4, 4, outstanding=outstanding)
    run = simulate_core(program, x, latency=2, stall=0.4, seed=5)
    np.testing.assert_array_equal(run.outputs, golden.run(net, x))
    plain = [layer["cycles"] for layer in program.layers]
    for counts, stalls in zip(run.layer_cycles, run.stall_cycles, strict=True):
        assert all(c >= p for c, p in zip(counts, plain, strict=True))
        assert sum(counts) - sum(plain) == stalls > 0
    # the stalls made it slower than the fixed latency
    assert sum(run.layer_cycles[0]) > sum(run.model_layer_cycles)


def test_the_loader_reads_aligned_bursts_of_the_image_once():
    net, program, x = _program("multiply", "int", 4, 4, burst=4)
    cfg, words = program.config, program.words
    seen = {}

    def spy(bus, **kw):
        seen["memory"] = AxiMemory(bus, **kw)
        return seen["memory"]

    import hwq.rtl.simulation as simulation
    real = simulation.AxiMemory
    simulation.AxiMemory = spy
    try:
        run = simulate_core(program, x[:1], latency=2)
    finally:
        simulation.AxiMemory = real
    np.testing.assert_array_equal(run.outputs, golden.run(net, x[:1]))
    memory = seen["memory"]
    nbytes = cfg.ext_bits // 8
    expect = []
    for layer in program.layers:
        if layer.get("ld_words"):
            first = layer["ld_src"] * words.ext_beats
            beat = first
            for n in bursts(first, layer["ld_words"] * words.ext_beats, cfg.ext_burst):
                expect.append((SIM_BASE + beat * nbytes, n))
                beat += n
    assert memory.requests == expect
    assert memory.beats == program.images["ext"].shape[0] * words.ext_beats


def test_a_core_without_the_port_has_no_m_axi():
    assert "m_axi" not in Core(config=CoreConfig(pe="shift_add")).signature.members
    ext = Core(config=CoreConfig(pe="shift_add", ext_bits=32))
    assert len(ext.m_axi.rdata) == 32 and len(ext.m_axi.araddr) == 32
