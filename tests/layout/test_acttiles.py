"""Activation tiles: tensors in external memory, layers in tiles of output rows (executor).

Every program is checked against ``hwq.golden.run`` with exact equality; the Verilator runs
(outputs, each descriptor's counter against the memory model) are in
tests/sim/test_offchip_sim.py.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.layout import compile, execute
from hwq.layout.compiler import core_config
from hwq.layout.program import Program
from hwq.testing import random_graph_network, random_inputs, random_network, tight_weight_depth

ARCH = (("conv", 8, 3, 1, 1, True), ("conv", 8, 3, 2, 1, True), ("pool",),
        ("conv", 12, 3, 1, 0, True), ("flatten",), ("linear", 10, False))
KIND = {"shift_add": "pot", "bit_serial": "int", "multiply": "codebook"}


def _chain(pe, seed=1):
    rng = np.random.default_rng(seed)
    net = random_network(rng, input_shape=(3, 16, 16), arch=ARCH, kind=KIND[pe], bits=4)
    return net, random_inputs(rng, net, 3)


def _tiles(program):
    return [layer for layer in program.layers if "rows" in layer]


@pytest.mark.parametrize("pe", ["shift_add", "bit_serial", "multiply"])
def test_every_tensor_external_is_bit_exact(pe):
    net, x = _chain(pe)
    cfg = core_config(net, pe=pe, lanes=4, simd=4, ext_bits=64, activations="external")
    program = compile(net, cfg, activations="external")
    # the input is stored in im2col order (it stays on chip); the output goes out too
    assert set(program.meta["act_external"]) == {"conv0", "conv1", "pool2", "conv3", "linear5"}
    assert program.input.external is None and program.output.external is not None
    kinds = [layer["kind"] for layer in program.layers]
    assert kinds.count("store") == 5 and kinds.count("load") == 4
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


@pytest.mark.parametrize("pe", ["shift_add", "bit_serial", "multiply"])
def test_a_small_activation_memory_runs_layers_in_row_tiles(pe):
    net, x = _chain(pe)
    full = core_config(net, pe=pe, lanes=4, simd=4, ext_bits=64)
    assert full.act_depth > 512
    cfg = core_config(net, pe=pe, lanes=4, simd=4, ext_bits=64, act_depth=512)
    program = compile(net, cfg)
    assert program.meta["act_peak"] <= 512 and program.meta["act_external"]
    rows = {}
    for layer in _tiles(program):
        rows.setdefault(layer["name"], set()).add(tuple(layer["rows"]))
    assert any(len(r) > 1 for r in rows.values())           # a layer cut into row tiles
    for tiles in rows.values():                               # the tiles cover every row
        covered = sorted(tiles)
        assert covered[0][0] == 0 and all(a[1] == b[0] for a, b in pairwise(covered))
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
    # the same program after a save and a load
    np.testing.assert_array_equal(execute(Program.from_bytes(program.to_bytes()), x),
                                  golden.run(net, x))


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_with_tensors_in_external_memory_are_bit_exact(seed):
    """Residual adds (never external: two inputs), depthwise, grouped, max and average pools
    with padding, dilated non-square kernels: every tensor that may go external does, at
    the smallest activation memory that still fits, and with every tensor out."""
    rng = np.random.default_rng(100 + seed)
    net = random_graph_network(rng, input_shape=(3, 12, 10))
    x = random_inputs(rng, net, 2)
    want = golden.run(net, x)
    pe = ("shift_add", "bit_serial", "multiply")[seed % 3]
    if pe == "shift_add":
        net = random_graph_network(np.random.default_rng(100 + seed), input_shape=(3, 12, 10),
                                   kind="pot")
        x = random_inputs(np.random.default_rng(seed), net, 2)
        want = golden.run(net, x)
    everything = core_config(net, pe=pe, lanes=4, simd=4, ext_bits=32, activations="external")
    program = compile(net, everything, activations="external")
    np.testing.assert_array_equal(execute(program, x), want)
    full = core_config(net, pe=pe, lanes=4, simd=4, ext_bits=32)
    need = compile(net, full).meta["act_peak"]
    spilled = 0
    for depth in (need - 1, need * 3 // 4, need // 2, need // 3):
        try:
            cfg = core_config(net, pe=pe, lanes=4, simd=4, ext_bits=32, act_depth=depth)
        except ValueError as exc:
            assert "does not fit the activation memory" in str(exc)
            continue
        program = compile(net, cfg)   # (the input as stored may fit where its windows did not)
        assert program.meta["act_peak"] <= depth
        np.testing.assert_array_equal(execute(program, x), want)
        spilled += "act_external" in program.meta
    assert spilled >= 1


def test_only_single_input_tensors_go_external():
    rng = np.random.default_rng(7)
    net = random_graph_network(rng, input_shape=(3, 8, 8), blocks=["res", "maxpool"])
    cfg = core_config(net, pe="multiply", lanes=4, simd=4, ext_bits=64,
                      activations="external")
    program = compile(net, cfg, activations="external")
    adds = {op.name for op in net.ops if op.kind == "add"}
    read_by_add = {i for op in net.ops if op.kind == "add" for i in op.inputs}
    ext = set(program.meta["act_external"])
    assert ext and not ext & (adds | read_by_add)


def test_bad_placements_are_refused():
    net, _ = _chain("multiply")
    no_port = core_config(net, pe="multiply", lanes=4, simd=4)
    with pytest.raises(ValueError, match="External activations need a core with the m_axi "
                                         "port"):
        compile(net, no_port, activations="external")
    with pytest.raises(ValueError, match="Activations must be one of auto, onchip, external, "
                                         "not 'offchip'"):
        compile(net, no_port, activations="offchip")
    small = core_config(net, pe="multiply", lanes=4, simd=4, ext_bits=64, act_depth=512)
    with pytest.raises(ValueError, match="Network does not fit the core: the activation memory"):
        compile(net, small, activations="onchip")
    tiny = core_config(net, pe="multiply", lanes=4, simd=4, ext_bits=64, act_depth=512)
    from dataclasses import replace

    with pytest.raises(ValueError, match=r"conv0: one output row per tile needs \d+ "
                                         r"activation words of staging"):
        compile(net, replace(tiny, act_depth=64))
    with pytest.raises(ValueError, match="Network does not fit the core: the activation memory"):
        compile(net, replace(no_port, act_depth=256))


def test_activation_tiles_leave_the_pools_unfused():
    # the same chain on chip fuses its pool into conv1 (and needs no pool buffer once
    # tiled): row tiles of a layer with a fused pool are not supported, so a program with
    # activation tiles keeps every pool's own pass and the core gets no pool buffer
    from hwq.config import CoreConfig

    net, x = _chain("shift_add")
    onchip = compile(net, core_config(net, pe="shift_add", lanes=4, simd=4))
    assert [layer.get("fused") for layer in onchip.layers if "fused" in layer] == ["pool2"]
    cfg = core_config(net, pe="shift_add", lanes=4, simd=4, ext_bits=64,
                      activations="external")
    assert cfg.pool_words == 0
    for config in (cfg, CoreConfig(**{**cfg.to_dict(), "pool_words": 2})):
        program = compile(net, config, activations="external")
        assert not any("fused" in layer for layer in program.layers)
        assert any(layer["kind"] == "pool" for layer in program.layers)
        np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


@pytest.mark.parametrize("pe", ["shift_add", "bit_serial", "multiply"])
def test_weight_tiles_inside_row_tiles_are_bit_exact(pe):
    """Weights streamed in output-channel tiles and activations in row tiles together: each
    row tile reloads its layer's weight tiles (stored once in the image); a weight load next
    to a row tile's load or store gets a load-only descriptor of its own."""
    net, x = _chain(pe)
    cfg = core_config(net, pe=pe, lanes=4, simd=4, ext_bits=32, act_depth=512,
                      weights="external")
    tight = tight_weight_depth(compile(net, cfg, weights="external"))
    cfg = CoreConfig(**{**cfg.to_dict(), "weight_depth": tight, "desc_depth": 256})
    program = compile(net, cfg, weights="external")
    assert any(la.get("tile", [0, 0])[0] > 0 for la in program.layers)   # several per layer
    layers = program.layers
    assert any("rows" in la and "tile" in la for la in layers)
    assert any(la.get("ld_act") for la in layers) and any(la.get("st_words") for la in layers)
    assert not any(la.get("st_words") and la.get("ld_words") for la in layers)
    # the weight image holds each weight tile once, the activation regions follow it
    distinct = {(la["name"], tuple(la["tile"])): la["w_words"] for la in layers if "tile" in la}
    w = program.words
    first_act = -(-sum(distinct.values()) * w.ext_beats // w.ext_act_beats)
    assert min(program.meta["act_external"].values()) == first_act
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


@pytest.mark.parametrize("seed", range(3))
def test_random_graphs_with_weights_and_tensors_external(seed):
    rng = np.random.default_rng(200 + seed)
    pe = ("shift_add", "bit_serial", "multiply")[seed]
    net = random_graph_network(rng, input_shape=(3, 10, 10), kind=KIND[pe])
    x = random_inputs(rng, net, 2)
    cfg = core_config(net, pe=pe, lanes=4, simd=4, ext_bits=64, weights="external",
                      activations="external")
    program = compile(net, cfg, weights="external", activations="external")
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


def test_the_network_input_and_output_in_external_memory():
    """An activation memory smaller than the network input: the host writes the input into
    external memory, the first layer loads its rows; GoldenDevice through the Runtime gives
    golden's outputs, reading an external output back too."""
    import asyncio

    from hwq.host import GoldenDevice, Runtime

    net, x = _chain("multiply")
    cfg = core_config(net, pe="multiply", lanes=4, simd=4, ext_bits=32, act_depth=128)
    program = compile(net, cfg)
    assert program.input.external is not None and program.input.words > 128
    want = golden.run(net, x)
    np.testing.assert_array_equal(execute(program, x), want)
    everything = compile(net, cfg, activations="external")
    assert everything.output.external is not None

    async def run(p):
        dev = GoldenDevice(p.config)
        rt = Runtime(dev)
        await rt.load(p)
        return await rt.infer(x)

    for p in (program, everything):
        res = asyncio.run(run(p))
        np.testing.assert_array_equal(res.outputs, want)
        assert res.cycle_model_mismatches() == []


def test_external_weights_keep_their_small_buffers_when_activations_go_out_too():
    rng = np.random.default_rng(3)
    arch = (("conv", 32, 3, 1, 1, True), ("conv", 64, 3, 1, 1, True), ("pool",),
            ("flatten",), ("linear", 10, False))
    net = random_network(rng, input_shape=(3, 8, 8), arch=arch, kind="int", bits=4)
    whole = core_config(net, pe="multiply", lanes=4, simd=4).weight_depth
    cfg = core_config(net, pe="multiply", lanes=4, simd=4, ext_bits=64, act_depth=512,
                      weights="external")
    assert cfg.weight_depth == 1024 < whole      # two default buffers, not every weight
    program = compile(net, cfg, weights="external")
    assert program.meta["act_external"]
    # a weight tile that the next row tile uses again stays in its buffer: no load
    keys = [(la["name"], tuple(la["tile"])) for la in program.layers if "tile" in la]
    changes = 1 + sum(a != b for a, b in pairwise(keys))
    weight_loads = [la for la in program.layers if la.get("ld_words") and not la.get("ld_act")]
    assert len(weight_loads) == changes < len(keys)
    x = random_inputs(rng, net, 2)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
