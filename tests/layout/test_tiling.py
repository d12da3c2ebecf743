"""Weights in external memory: tiles of output-channel groups, loads, the external image."""

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.golden.memory import schedule
from hwq.hardware import LOAD_CHECK_STAGES, LOAD_DESCRIPTOR_CYCLES, PE_FORMATS
from hwq.layout import compile, execute
from hwq.layout.compiler import core_config
from hwq.layout.program import Program
from hwq.layout.tiling import group_tiles
from hwq.testing import random_inputs, random_network, tight_weight_depth

ARCH = (("conv", 8, 3, 1, 1, True), ("pool",), ("conv", 12, 3, 1, 0, True), ("flatten",),
        ("linear", 10, False))


def _net(kind, lanes, simd, seed=1):
    rng = np.random.default_rng(seed)
    net = random_network(rng, input_shape=(3, 6, 6), arch=ARCH, kind=kind, bits=[2, 3, 4],
                         per_channel_bits=True, zero_tile_fraction=0.3, zero_tile=(lanes, simd))
    return net, random_inputs(rng, net, 3)


def _external(pe, kind, lanes, simd, **fields):
    net, x = _net(kind, lanes, simd)
    cfg = core_config(net, pe=pe, lanes=lanes, simd=simd, ext_bits=64, ext_burst=4,
                      ext_outstanding=2, weights="external", **fields)
    return net, x, compile(net, cfg, weights="external")


def test_group_tiles_are_greedy_whole_units_within_the_capacity():
    assert group_tiles([3, 3, 3, 3, 2], 1, 7) == [(0, 2), (2, 4), (4, 5)]
    assert group_tiles([3, 3, 3, 3, 2], 2, 12) == [(0, 4), (4, 5)]
    assert group_tiles([5], 1, 5) == [(0, 1)]
    with pytest.raises(ValueError, match=r"2 output-channel group\(s\) need 6 weight words, "
                                         r"more than one buffer of 5 .*weight_depth=16 would"):
        group_tiles([3, 3], 2, 5)


@pytest.mark.parametrize(("pe", "kind"), PE_FORMATS)
@pytest.mark.parametrize(("lanes", "simd"), [(4, 4), (8, 2), (2, 8)])
def test_tiled_programs_compute_the_golden_outputs(pe, kind, lanes, simd):
    # buffers of one unit of groups: every layer with more than one unit is cut
    net, x = _net(kind, lanes, simd)
    probe = core_config(net, pe=pe, lanes=lanes, simd=simd, ext_bits=64, weights="external")
    depth = tight_weight_depth(compile(net, probe, weights="external"))
    cfg = core_config(net, pe=pe, lanes=lanes, simd=simd, ext_bits=64, weights="external",
                      weight_depth=depth)
    program = compile(net, cfg, weights="external")
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
    layers = program.layers
    tiles = [layer for layer in layers if "tile" in layer]
    assert len(tiles) > sum(1 for op in net.ops if op.kind in ("conv2d", "linear"))
    # the first layer is a matmul: a load-only descriptor goes first
    assert layers[0]["kind"] == "load" and layers[0]["cycles"] == LOAD_DESCRIPTOR_CYCLES
    # every tile waits and was loaded by the descriptor before it, alternating buffers
    for i, layer in enumerate(layers):
        if "tile" in layer:
            assert layer["wait"] == 1
            assert layers[i - 1]["ld_words"] == layer["w_words"]
            assert layer["w_base"] == (tiles.index(layer) % 2) * (depth // 2)
    srcs = [layer["ld_src"] for layer in layers if "ld_words" in layer]
    sizes = [layer["ld_words"] for layer in layers if "ld_words" in layer]
    assert srcs == list(np.cumsum([0, *sizes[:-1]]))
    assert program.images["ext"].shape == (sum(sizes), program.words.ext_chunks)
    assert program.images["weight"].shape[0] == 0
    assert program.external_bytes == 4 * sum(sizes) * program.words.ext_chunks


def test_the_external_image_holds_each_word_in_whole_beats():
    net, x, program = _external("shift_add", "pot", 4, 4)
    w = program.words
    assert w.ext_beats == -(-w.weight.width // 64)
    assert w.ext_chunks == 2 * w.ext_beats
    ext = program.images["ext"]
    # the chunks above the word are zero; the word's own chunks are the micro-ops
    assert not ext[:, w.weight.chunks:].any()
    onchip = compile(net, core_config(net, pe="shift_add", lanes=4, simd=4))
    assert sorted(map(tuple, ext[:, :w.weight.chunks].tolist())) == \
        sorted(map(tuple, onchip.images["weight"].tolist()))


def test_weights_on_chip_on_a_core_with_the_port_pay_the_load_check():
    net, x = _net("pot", 4, 4)
    plain = compile(net, core_config(net, pe="shift_add", lanes=4, simd=4))
    ext = compile(net, core_config(net, pe="shift_add", lanes=4, simd=4, ext_bits=32))
    assert ext.images["ext"].shape[0] == 0
    assert [layer["cycles"] for layer in ext.layers] == \
        [layer["cycles"] + LOAD_CHECK_STAGES for layer in plain.layers]
    np.testing.assert_array_equal(execute(ext, x), golden.run(net, x))


def test_auto_streams_the_weights_only_when_they_do_not_fit():
    net, x = _net("int", 4, 4)
    fit = core_config(net, pe="multiply", lanes=4, simd=4, ext_bits=64)
    assert compile(net, fit).images["ext"].shape[0] == 0
    small = CoreConfig(**{**fit.to_dict(), "weight_depth": 64, "desc_depth": 32})
    program = compile(net, small)
    assert program.images["ext"].shape[0] > 0
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
    with pytest.raises(ValueError, match=r"the weight memory needs \d+ words, 64 available "
                                         r"\(weight_depth=\d+ would fit\); or stream the "
                                         r"weights from external memory \(ext_bits=64\)"):
        compile(net, CoreConfig(**{**small.to_dict(), "ext_bits": 0}))


def test_bad_placements_are_refused():
    net, _ = _net("pot", 4, 4)
    cfg = core_config(net, pe="shift_add", lanes=4, simd=4)
    with pytest.raises(ValueError, match="External weights need a core with the m_axi port "
                                         r"\(ext_bits 32, 64 or 128\), not ext_bits=0"):
        compile(net, cfg, weights="external")
    with pytest.raises(ValueError, match="Weights must be one of auto, onchip, external, "
                                         "not 'dram'"):
        compile(net, cfg, weights="dram")
    ext = CoreConfig(**{**cfg.to_dict(), "ext_bits": 64, "desc_depth": 2})
    with pytest.raises(ValueError, match=r"its weight tiles need \d+ descriptors, 2 available"):
        compile(net, ext, weights="external")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("ext_bits", 48, "External memory port width must be one of 0, 32, 64, 128 bits, not 48"),
    ("ext_burst", 12, "External memory burst length must be a power of two, not 12"),
    ("ext_burst", 512, r"External memory burst length must be an integer in 1\.\.256"),
    ("ext_outstanding", 0, r"External memory outstanding reads must be an integer in 1\.\.16"),
])
def test_bad_port_settings_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        CoreConfig(pe="multiply", **{"ext_bits": 64, field: value})


def test_the_fingerprint_of_a_core_without_the_port_ignores_the_burst_shape():
    a = CoreConfig(pe="multiply")
    assert a.fingerprint() == CoreConfig(pe="multiply", ext_burst=64).fingerprint()
    assert CoreConfig(pe="multiply", ext_bits=64).fingerprint() != \
        CoreConfig(pe="multiply", ext_bits=64, ext_burst=64).fingerprint()


def test_a_program_with_an_external_image_round_trips_and_checks_it(tmp_path):
    net, x, program = _external("bit_serial", "int", 4, 4)
    path = program.save(tmp_path / "p.hwqp")
    back = Program.load(path)
    np.testing.assert_array_equal(back.images["ext"], program.images["ext"])
    assert back.layers == program.layers
    np.testing.assert_array_equal(execute(back, x), golden.run(net, x))
    data = bytearray(path.read_bytes())
    data[-8] ^= 1        # the last section (ext), just before the file's CRC
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match="CRC mismatch"):
        Program.load(path)


def test_a_descriptor_that_reads_a_load_in_flight_is_refused():
    net, x, program = _external("multiply", "int", 4, 4)
    lay = program.words.desc
    d = lay.unpack(program.images["desc"])
    # a tile that waits for its load and starts none (one that loads waits anyway)
    second = next(i for i, layer in enumerate(program.layers)
                  if layer.get("wait") and not layer.get("ld_words"))
    d["wait"][second] = 0
    images = dict(program.images, desc=lay.pack(len(d["wait"]), **d))
    bad = Program(config=program.config, images=images, input=program.input,
                  output=program.output, layers=program.layers)
    with pytest.raises(ValueError, match=rf"Descriptor {second}: reads weight words .* while "
                                         r"a load into .* is in flight \(it must wait\)"):
        execute(bad, x)


def test_the_schedule_adds_the_waits_of_the_loads():
    net, x, program = _external("shift_add", "pot", 4, 4)
    cfg = program.config
    plain = [layer["cycles"] for layer in program.layers]
    fast = schedule(program.layers, beats=program.words.ext_beats, burst=cfg.ext_burst,
                    outstanding=cfg.ext_outstanding, latency=1)
    slow = schedule(program.layers, beats=program.words.ext_beats, burst=cfg.ext_burst,
                    outstanding=cfg.ext_outstanding, latency=40)
    assert all(f >= p for f, p in zip(fast, plain, strict=True))
    assert all(s >= f for s, f in zip(slow, fast, strict=True)) and sum(slow) > sum(fast)
    # a schedule with no loads adds nothing
    assert schedule([{"cycles": 7}, {"cycles": 9, "wait": 1}], beats=2, burst=4,
                    outstanding=1, latency=9) == [7, 9]
