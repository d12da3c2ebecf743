"""Weights and activations in external memory on the Verilated core: the C++ memory model of
the compiled backend and cocotbext-axi's AxiRam under cocotb, against hwq.golden and the
model."""

from __future__ import annotations

import numpy as np
import pytest

from hwq import golden
from hwq.config import CoreConfig
from hwq.golden.memory import MemoryTiming
from hwq.layout.compiler import compile as compile_network
from hwq.layout.compiler import core_config
from hwq.sim.simulate import simulate
from hwq.testing import random_inputs, random_network, tight_weight_depth

ARCH = (("conv", 8, 3, 1, 1, True), ("pool",), ("conv", 12, 3, 1, 0, True), ("flatten",),
        ("linear", 10, False))


def _tiled(pe="shift_add", kind="pot", lanes=4, simd=4, ext_bits=64, outstanding=2):
    rng = np.random.default_rng(7)
    net = random_network(rng, input_shape=(3, 6, 6), arch=ARCH, kind=kind, bits=[2, 3, 4],
                         per_channel_bits=True, zero_tile_fraction=0.3, zero_tile=(lanes, simd))
    cfg = core_config(net, pe=pe, lanes=lanes, simd=simd, ext_bits=ext_bits, ext_burst=4,
                      ext_outstanding=outstanding, weights="external")
    depth = tight_weight_depth(compile_network(net, cfg, weights="external"))
    cfg = CoreConfig(**{**cfg.to_dict(), "weight_depth": depth, "desc_depth": 64})
    return net, compile_network(net, cfg, weights="external"), random_inputs(rng, net, 4)


def test_compiled_backend_fixed_latency_is_exact_and_stalls_stay_within_the_bound():
    net, program, x = _tiled()
    want = golden.run(net, x)
    fixed = simulate(program, None, x, memory=MemoryTiming(latency=5), jobs=2, progress=False)
    np.testing.assert_array_equal(fixed.outputs, want)
    assert not fixed.model_is_bound and fixed.cycle_model_mismatches() == []
    assert (fixed.layer_cycles == fixed.model_layer_cycles[None]).all()
    plain = np.array([layer["cycles"] for layer in program.layers])
    assert fixed.stall_cycles.tolist() == [int(fixed.model_layer_cycles.sum() - plain.sum())] * 4
    beats = program.images["ext"].shape[0] * program.words.ext_beats
    assert fixed.ext_beats.tolist() == [beats] * 4
    stalled = simulate(program, None, x, memory=MemoryTiming(latency=2, stall=0.3, seed=9),
                       jobs=1, progress=False)
    np.testing.assert_array_equal(stalled.outputs, want)
    assert stalled.model_is_bound and stalled.cycle_model_mismatches() == []
    assert (stalled.layer_cycles.sum(axis=1) - plain.sum() == stalled.stall_cycles).all()
    assert (stalled.stall_cycles > 0).all()


def test_cocotb_backend_reads_the_image_from_axi_ram():
    net, program, x = _tiled(pe="multiply", kind="codebook", lanes=8, simd=2, ext_bits=32,
                             outstanding=3)
    run = simulate(program, None, x[:2], backend="cocotb", progress=False)
    np.testing.assert_array_equal(run.outputs, golden.run(net, x[:2]))
    assert run.cycle_model_mismatches() == [] and not run.model_is_bound
    with pytest.raises(ValueError, match="The cocotb backend's memory .* has a latency of 2 "
                                         "cycles, not 6: use the compiled backend"):
        simulate(program, None, x[:1], backend="cocotb", memory=MemoryTiming(latency=6))


def _wide_conv():
    """A conv of 256 positions whose 4 groups are each a tile: compute per tile (256 x 9
    micro-ops) far exceeds its transfer (9 words)."""
    return random_network(np.random.default_rng(3), input_shape=(8, 16, 16), kind="int",
                          bits=4, arch=(("conv", 32, 3, 1, 1, True),))


def test_double_buffering_hides_the_loads_of_a_compute_bound_layer():
    net = _wide_conv()
    cfg = core_config(net, pe="multiply", lanes=8, simd=8, ext_bits=64, weights="external")
    depth = tight_weight_depth(compile_network(net, cfg, weights="external"))
    program = compile_network(net, CoreConfig(**{**cfg.to_dict(), "weight_depth": depth,
                                               "desc_depth": 16}),
                              weights="external")
    x = random_inputs(np.random.default_rng(0), net, 1)
    run = simulate(program, None, x, memory=MemoryTiming(latency=8), jobs=1, progress=False)
    np.testing.assert_array_equal(run.outputs, golden.run(net, x))
    assert run.cycle_model_mismatches() == []
    tiles = [i for i, layer in enumerate(program.layers) if layer["name"] == "conv0"]
    assert len(tiles) == 4
    compute = sum(program.layers[i]["cycles"] for i in tiles)
    measured = int(run.layer_cycles[0, tiles].sum())
    # only the program's first load is exposed (the first tile waits for it); every other
    # load runs while the tile before it computes
    waits = [int(run.layer_cycles[0, i]) - program.layers[i]["cycles"] for i in tiles]
    assert waits[0] > 0 and waits[1:] == [0, 0, 0]
    assert compute < measured <= 1.05 * compute


def test_bench_offchip_measures_bytes_and_lost_cycles(monkeypatch):
    from hwq.bench import offchip

    def tiny(name, pe, images):
        net, _, x = _tiled(pe="multiply", kind="int")
        return net, x[:images]

    monkeypatch.setattr(offchip, "_network", tiny)
    result = offchip.bench_offchip(networks=("tiny",), pes=("multiply",), images=2, lanes=4,
                                   simd=4, latency=6, log=lambda _: None)
    (row,) = result["rows"]
    assert result["ok"] and row["mismatches"] == 0 and row["cycle_model_mismatches"] == []
    assert row["bytes_per_inference"] == row["external_bytes"]     # every weight read once
    assert row["lost_cycles"] == row["cycles"] - row["onchip_cycles"] > row["stall_cycles"] > 0
    assert row["buffer_depth"] == 1024      # two buffers of 512 words, the default
    table = offchip.format_offchip(result)
    assert "| tiny | multiply |" in table and "| yes |" in table


def test_fused_pools_in_layers_cut_into_tiles():
    # conv0 (and its fused pool) cut into two tiles of output-channel groups: each tile
    # keeps the running maxima of its own channel tiles and writes its part of the pooled
    # tensor
    from hwq.testing import pool_fusion_network

    rng = np.random.default_rng(3)
    net = pool_fusion_network(rng, kind="pot", bits=[2, 3, 4], per_channel_bits=True)
    cfg = core_config(net, pe="shift_add", lanes=2, simd=2, ext_bits=64, weights="external")
    depth = tight_weight_depth(compile_network(net, cfg, weights="external"))
    cfg = CoreConfig(**{**cfg.to_dict(), "weight_depth": depth, "desc_depth": 64})
    program = compile_network(net, cfg, weights="external")
    assert [layer["tile"] for layer in program.layers if layer.get("fused") == "pool1"] == [
        [0, 1], [1, 3]]
    x = random_inputs(rng, net, 2)
    sim = simulate(program, None, x, memory=MemoryTiming(latency=3), jobs=1, progress=False)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    assert not sim.model_is_bound and sim.cycle_model_mismatches() == []


ACT_ARCH = (("conv", 8, 3, 1, 1, True), ("conv", 8, 3, 2, 1, True), ("pool",),
            ("conv", 12, 3, 1, 0, True), ("flatten",), ("linear", 10, False))


def _act_tiled(pe, kind):
    rng = np.random.default_rng(11)
    net = random_network(rng, input_shape=(3, 16, 16), arch=ACT_ARCH, kind=kind, bits=4)
    cfg = core_config(net, pe=pe, lanes=4, simd=4, ext_bits=32, ext_burst=4,
                      ext_outstanding=2, act_depth=512)
    program = compile_network(net, cfg)
    assert program.meta["act_external"] and any(
        layer["kind"] == "store" for layer in program.layers)
    return net, program, random_inputs(rng, net, 3)


@pytest.mark.parametrize("pe, kind", [("shift_add", "pot"), ("bit_serial", "int"),
                                      ("multiply", "codebook")])
def test_activation_tiles_run_exact_in_the_modelled_cycles(pe, kind):
    """Tensors in external memory, layers in row tiles (loads of halo rows, stores acknowledged):
    outputs equal golden; at a fixed latency every descriptor's counter equals the model and
    STALL_CYCLES its waits; with stalls on every channel the outputs are the same and every
    counter is at least the model."""
    from hwq.golden.memory import stall_cycles

    net, program, x = _act_tiled(pe, kind)
    want = golden.run(net, x)
    fixed = simulate(program, None, x, memory=MemoryTiming(latency=3), jobs=1, progress=False)
    np.testing.assert_array_equal(fixed.outputs, want)
    assert fixed.cycle_model_mismatches() == []
    assert (fixed.layer_cycles == fixed.model_layer_cycles[None]).all()
    cfg, w = program.config, program.words
    waits = stall_cycles(program.layers, beats=w.ext_beats, act_beats=w.ext_act_beats,
                         burst=cfg.ext_burst, outstanding=cfg.ext_outstanding, latency=3)
    assert fixed.stall_cycles.tolist() == [waits] * len(x)
    stalled = simulate(program, None, x, memory=MemoryTiming(latency=2, stall=0.25, seed=5),
                       jobs=1, progress=False)
    np.testing.assert_array_equal(stalled.outputs, want)
    assert stalled.model_is_bound and stalled.cycle_model_mismatches() == []


def test_activation_tiles_under_cocotb_write_to_axi_ram():
    net, program, x = _act_tiled("multiply", "codebook")
    sim = simulate(program, None, x[:1], backend="cocotb", progress=False)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x[:1]))
    assert sim.cycle_model_mismatches() == []


def test_weight_tiles_inside_row_tiles_run_exact_in_the_modelled_cycles():
    rng = np.random.default_rng(11)
    net = random_network(rng, input_shape=(3, 16, 16), arch=ACT_ARCH, kind="int", bits=4)
    x = random_inputs(rng, net, 2)
    cfg = core_config(net, pe="multiply", lanes=4, simd=4, ext_bits=32, ext_burst=4,
                      ext_outstanding=2, act_depth=512, weights="external")
    tight = tight_weight_depth(compile_network(net, cfg, weights="external"))
    cfg = CoreConfig(**{**cfg.to_dict(), "weight_depth": tight, "desc_depth": 256})
    program = compile_network(net, cfg, weights="external")
    assert program.meta["act_external"]
    sim = simulate(program, None, x, memory=MemoryTiming(latency=4), jobs=1, progress=False)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    assert sim.cycle_model_mismatches() == []


@pytest.mark.parametrize("backend", ["compiled", "cocotb"])
def test_network_input_and_output_in_external_memory(backend):
    """An activation memory of 128 words for a 3x16x16 input: the Runtime writes each input
    into the memory on m_axi and reads the output back from it."""
    rng = np.random.default_rng(11)
    net = random_network(rng, input_shape=(3, 16, 16), arch=ACT_ARCH, kind="int", bits=4)
    x = random_inputs(rng, net, 2)
    cfg = core_config(net, pe="bit_serial", lanes=4, simd=4, ext_bits=64, act_depth=128)
    program = compile_network(net, cfg, activations="external")
    assert program.input.external is not None and program.output.external is not None
    sim = simulate(program, None, x, backend=backend, jobs=1, progress=False)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    assert sim.cycle_model_mismatches() == []


def test_bench_offchip_with_a_small_activation_memory(monkeypatch):
    from hwq.bench import offchip

    def chain(name, pe, images):
        rng = np.random.default_rng(11)
        net = random_network(rng, input_shape=(3, 16, 16), arch=ACT_ARCH, kind="int", bits=4)
        return net, random_inputs(rng, net, images)

    monkeypatch.setattr(offchip, "_network", chain)
    result = offchip.bench_offchip(networks=("chain",), pes=("multiply",), images=1, lanes=4,
                                   simd=4, act_depth=256, log=lambda _: None)
    (row,) = result["rows"]
    assert result["ok"] and row["act_depth"] == 256 < row["onchip_act_depth"]
    assert "input" in row["external_tensors"]
    # the core reads at least the whole input (256 words of 4 x 8 bits, one 64-bit beat each)
    assert row["bytes_per_inference"] >= 256 * 8
    assert "256 of" in offchip.format_offchip(result)
