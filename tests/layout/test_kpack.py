"""K packing (hwq.layout.kpack): the partial channel tiles of two taps in one micro-op.

The executor runs the packed micro-ops as the core does (word B shifted up by ``split``
lanes); it must equal hwq.golden exactly and the program's layer cycles the cycle model,
for every PE type and weight format, with padding, stride and dilation.
"""

import itertools
import math

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.golden import cycles as cyc
from hwq.hardware import PE_FORMATS
from hwq.layout import compile, execute
from hwq.layout.compiler import core_config, network_cycles
from hwq.layout.kpack import pack_pairs
from hwq.layout.words import core_words
from hwq.testing import kpack_network, random_inputs

CHANNELS = (3, 4, 5, 12, 20)
SHAPES = ((4, 4), (8, 8), (4, 8), (8, 4))          # (lanes, simd)


def _micro(program, i):
    """Decoded micro-ops of layer ``i``."""
    lay = program.layers[i]
    img = program.images["weight"][lay["w_base"]:lay["w_base"] + lay["w_words"]]
    return program.words.weight.unpack(img)


@pytest.mark.parametrize(("pe", "kind"), PE_FORMATS)
@pytest.mark.parametrize("c_in", CHANNELS)
def test_packed_program_equals_golden_and_the_cycle_model(pe, kind, c_in):
    rng = np.random.default_rng(hash((pe, kind, c_in)) % 2**32)
    for lanes, simd in SHAPES:
        stride, dilation, padding = (int(v) for v in rng.integers(1, 3, size=3))
        net = kpack_network(rng, c_in=c_in, kind=kind, bits=[2, 3, 4] if kind != "pot" else [3, 4],
                            lanes=lanes, simd=simd, stride=stride, dilation=dilation,
                            padding=padding, hw=(7, 6))
        config = CoreConfig(pe=pe, lanes=lanes, simd=simd, pack=True)
        program = compile(net, config)
        x = random_inputs(rng, net, 3)
        np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
        model = [c["cycles"] for c in network_cycles(net, config) if c["cycles"]]
        assert model == [layer["cycles"] for layer in program.layers]
        rem = c_in % simd
        split = _micro(program, 1)["split"]
        # the conv under test packs exactly when its partial tiles fit two to a word
        assert set(split.tolist()) - {0} == ({rem} if 0 < 2 * rem <= simd else set())
        plain = compile(net, CoreConfig(pe=pe, lanes=lanes, simd=simd))
        np.testing.assert_array_equal(execute(plain, x), golden.run(net, x))
        if (split > 0).any():
            assert program.layers[1]["w_words"] < plain.layers[1]["w_words"]


@pytest.mark.parametrize(("pe", "kind"), PE_FORMATS)
def test_lenet5_conv2_takes_ceil_k_over_simd_micro_ops_per_group(pe, kind):
    # 20 -> 50 channels, 5x5: 25 taps x 3 tiles = 75 micro-ops per group unpacked, the 25
    # half-empty third tiles pair up: 50 + 13 = 63 = ceil(500 / 8) (dense weights, one term)
    rng = np.random.default_rng(5)
    net = kpack_network(rng, c_in=20, c_out=50, kernel=(5, 5), padding=0, hw=(12, 12),
                        kind=kind, bits=[4], zero_taps=0.0, lanes=8, simd=8)
    config = CoreConfig(pe=pe, pack=True, weight_bits=4)
    program = compile(net, config)
    conv2 = program.layers[1]
    if pe != "bit_serial":
        assert conv2["steps"] == [math.ceil(25 * 20 / 8)] * 7
    plain = compile(net, CoreConfig(pe=pe, weight_bits=4)).layers[1]
    if pe != "bit_serial":
        assert plain["steps"] == [75] * 7
    # one cycle more per layer (the merge stage), 12 micro-ops fewer per group and position
    assert conv2["cycles"] < plain["cycles"]
    x = random_inputs(rng, net, 2)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


def test_pairs_and_lanes_of_a_packed_micro_op():
    # C = 6 on simd 4 (rem 2): taps 0, 1, 2 of one group; tap 1's partial tile is zero, so
    # taps 0 and 2 pair: micro-op of tap 0 reads B at tap 2, split 2, weights of tap 2 in
    # lanes 2..3
    w = np.zeros((4, 6, 1, 3), np.int64)
    w[:, 4:, 0, 0] = [[1, 2]] * 4
    w[:, 4:, 0, 2] = [[3, -1]] * 4
    w[:, :4, 0, 1] = 1
    tiles = cyc.weight_tiles(w, 4, 4)[None]           # (T, G, KH, KW, CT, P, S)
    packed, pairs = pack_pairs(tiles, 2, "multiply")
    assert pairs[0, 0].tolist() == [[-1, 2], [-1, -1], [-1, -1]]
    assert packed[0, 0, 0, 0, 1, 0].tolist() == [1, 2, 3, -1]
    assert not packed[0, 0, 0, 2, 1].any()
    np.testing.assert_array_equal(packed[:, :, :, :, 0], tiles[:, :, :, :, 0])


def test_bit_serial_pairs_only_when_the_merged_planes_are_fewer():
    # -1 (1 plane at 1 bit) with 64 (1 plane at 8 bits): merged at 8 bits, -1 is 8 planes
    t = np.zeros((1, 1, 1, 2, 1, 1, 4), np.int64)
    t[0, 0, 0, 0, 0, 0, 0] = -1
    t[0, 0, 0, 1, 0, 0, 0] = 64
    _, pairs = pack_pairs(t, 1, "bit_serial")
    assert (pairs == -1).all()
    _, pairs = pack_pairs(t, 1, "multiply")
    assert pairs[0, 0, 0, 0] == 1


def test_pack_pairs_refuses_a_bad_split():
    t = np.zeros((1, 1, 1, 2, 1, 1, 4), np.int64)
    with pytest.raises(ValueError, match="Packed tiles must hold 1..2 lanes, not 3"):
        pack_pairs(t, 3, "multiply")


def test_pack_off_keeps_the_layout_and_fingerprint():
    # a default core's fingerprint as before K packing existed (the same on main)
    assert CoreConfig(pe="shift_add").fingerprint() == "1a062f3d58e1da1a"
    assert CoreConfig(pe="shift_add", pack=True).fingerprint() != "1a062f3d58e1da1a"
    names = [f.name for f in core_words(CoreConfig(pe="bit_serial")).weight.fields]
    assert names == ["off", "u", "v", "glast", "shift", "neg", "w"]
    packed = core_words(CoreConfig(pe="bit_serial", pack=True, simd=8)).weight
    assert [f.name for f in packed.fields] == ["off", "u", "v", "glast", "off2", "u2", "v2",
                                               "split", "shift", "neg", "w"]
    assert packed["split"].width == 3


@pytest.mark.parametrize(("kw", "message"), [
    (dict(simd=1, lanes=1), "K packing \\(pack\\) needs a SIMD width of at least 2, not simd=1"),
    (dict(pack="yes"), "K packing \\(pack\\) must be True or False, not 'yes'"),
])
def test_config_refuses_bad_packing(kw, message):
    with pytest.raises(ValueError, match=message):
        CoreConfig(pe="multiply", **{"pack": True, **kw})


def test_core_config_pack_auto_on_off():
    rng = np.random.default_rng(2)
    gains = kpack_network(rng, c_in=20, kind="pot", bits=[3, 4], lanes=8, simd=8)
    none = kpack_network(rng, c_in=16, kind="pot", bits=[3, 4], lanes=8, simd=8, linear=False)
    assert core_config(gains, pe="shift_add", lanes=8, simd=8, pack="auto").pack
    # 16 channels fill whole words: packing would only add the merge stage's cycle
    assert not core_config(none, pe="shift_add", lanes=8, simd=8, pack="auto").pack
    assert core_config(none, pe="shift_add", lanes=8, simd=8, pack="on").pack
    assert not core_config(gains, pe="shift_add", lanes=8, simd=8).pack      # default off
    with pytest.raises(ValueError, match="Packing must be one of auto, on, off, not 'yes'"):
        core_config(gains, pe="shift_add", lanes=8, simd=8, pack="yes")


def test_packed_program_round_trips_and_old_format_is_refused():
    from hwq.errors import ArtifactError
    from hwq.layout import Program

    rng = np.random.default_rng(3)
    net = kpack_network(rng, c_in=5, kind="int", bits=[3], lanes=4, simd=4)
    program = compile(net, CoreConfig(pe="multiply", lanes=4, simd=4, pack=True))
    again = Program.from_bytes(program.to_bytes())
    assert again.config.pack
    for name in ("desc", "weight", "param"):
        np.testing.assert_array_equal(again.images[name], program.images[name])
    blob = bytearray(program.to_bytes())
    blob[8:12] = (7).to_bytes(4, "little")
    with pytest.raises(ArtifactError, match="Program format version 7 is not supported"):
        Program.from_bytes(bytes(blob))


@pytest.mark.parametrize(("lanes", "simd"), list(itertools.product((4, 8), (4, 8))))
def test_padding_micro_ops_of_a_packed_core_read_b_at_a(lanes, simd):
    # an unpaired micro-op reads its B word at A's own address and tap (split 0)
    rng = np.random.default_rng(lanes * 10 + simd)
    net = kpack_network(rng, c_in=simd + 1, kind="int", bits=[3], lanes=lanes, simd=simd)
    program = compile(net, CoreConfig(pe="multiply", lanes=lanes, simd=simd, pack=True))
    for i in range(len(program.layers)):
        m = _micro(program, i)
        alone = m["split"] == 0
        for a, b in (("off", "off2"), ("u", "u2"), ("v", "v2")):
            np.testing.assert_array_equal(m[a][alone], m[b][alone])
