"""The MAC array's depthwise mode (hwq.layout.dwmode): channels to lanes, kernel taps to SIMD
through a window register file.

The executor runs the window as the core does; it must equal hwq.golden exactly and every
descriptor's cycles the cycle model, for every PE type and weight format, with stride,
padding, odd widths, partial channel tiles and whole zero taps.
"""

import itertools

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.errors import ArtifactError
from hwq.golden import cycles as cyc
from hwq.hardware import PE_FORMATS
from hwq.layout import Program, compile, execute
from hwq.layout.compiler import core_config, network_cycles
from hwq.layout.dwmode import programs, window_macs, window_step
from hwq.layout.executor import run_images
from hwq.layout.words import core_words
from hwq.testing import depthwise_network, kpack_network, random_inputs

DW = dict(pack=True, depthwise=True)
#: (channels, kernel, stride, padding, (H, W))
LAYERS = [(8, (3, 3), 1, 1, (7, 7)), (16, (3, 3), 2, 1, (14, 14)), (12, (3, 3), 1, 0, (5, 5)),
          (8, (3, 3), 2, 0, (7, 5)), (16, (2, 2), 1, 0, (6, 5)), (12, (1, 3), 1, 1, (5, 7)),
          (8, (3, 1), 2, 1, (5, 14)), (8, (3, 3), 3, 1, (7, 7))]


def _model(net, config):
    """Model cycles of each op, and of each program descriptor summed per op."""
    return [c["cycles"] for c in network_cycles(net, config) if c["cycles"]]


def _per_op(program):
    out: dict[str, int] = {}
    for lay in program.layers:
        out[lay["name"]] = out.get(lay["name"], 0) + lay["cycles"]
    return list(out.values())


@pytest.mark.parametrize(("pe", "kind"), PE_FORMATS)
@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_depthwise_program_equals_golden_and_the_cycle_model(pe, kind, layer):
    c, kernel, stride, padding, hw = LAYERS[layer]
    rng = np.random.default_rng(layer * 31 + len(pe) + len(kind))
    net = depthwise_network(rng, channels=c, kernel=kernel, stride=stride, padding=padding,
                            hw=hw, kind=kind, bits=[3, 4] if kind == "pot" else [2, 3, 4],
                            zero_taps=0.2 if layer % 2 else 0.0)
    config = CoreConfig(pe=pe, weight_bits=4, **DW)
    program = compile(net, config)
    dw = [lay for lay in program.layers if "dw_tile" in lay]
    assert [lay["dw_tile"] for lay in dw] == list(range(-(-c // 8)))   # one per channel tile
    x = random_inputs(rng, net, 3)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
    assert _model(net, config) == _per_op(program)
    # the executor's runs report the same cycles as the compiler's layer facts
    act = np.zeros((1, config.act_depth, config.simd), np.int64)
    runs = run_images(config, program.images, act)
    assert [r.cycles for r in runs] == [lay["cycles"] for lay in program.layers]
    plain = compile(net, CoreConfig(pe=pe, weight_bits=4, pack=True))
    np.testing.assert_array_equal(execute(plain, x), golden.run(net, x))
    assert sum(lay["cycles"] for lay in dw) < plain.layers[1]["cycles"]


def test_steady_positions_take_two_micro_ops_and_utilization_passes_half():
    # 3x3, stride 1, padding 1 (sepnet's stride-1 depthwise convs: 16 channels at 28x28, 32
    # at 14x14): a row's first position loads the 6 taps right of the padding in 3
    # micro-ops, the others 3 new words in 2
    rng = np.random.default_rng(9)
    config = CoreConfig(pe="shift_add", **DW)
    for channels, side in ((16, 28), (32, 14)):
        net = depthwise_network(rng, channels=channels, hw=(side, side), tail=False)
        program = compile(net, config)
        dw = program.layers[1:]
        tiles = channels // 8
        assert [lay["steps"] for lay in dw] == [[3, 2]] * tiles
        per_tile = side * (3 + (side - 1) * 2) + cyc.core_overheads(True).matmul
        assert [lay["cycles"] for lay in dw] == [per_tile] * tiles
        macs = channels * 9 * side * side
        assert macs / (64 * sum(lay["cycles"] for lay in dw)) > 0.5
        plain = compile(net, CoreConfig(pe="shift_add", pack=True)).layers[1]
        assert plain["cycles"] == (side * side * tiles * 9
                                   + cyc.core_overheads(True).matmul)     # 12.5 %


def test_programs_read_each_tap_once_per_position_and_multiply_it_once():
    for (kh, kw), sw, pad in itertools.product(itertools.product((1, 2, 3), repeat=2),
                                               (1, 2, 3), (0, 1, 2)):
        row, steady = programs(kh, kw, sw, pad)
        taps = {u * 3 + v for u in range(kh) for v in range(kw)}
        # a row's first position: the taps right of the left padding (all if none is)
        live = {u * 3 + v for u in range(kh) for v in range(kw) if v >= pad} or taps
        for ops, want, carried in ((row, live, set()),
                                   (steady, taps, {u * 3 + v for u in range(kh)
                                                   for v in range(kw - sw)})):
            read = {u * 3 + v for op in ops for u, v in op.reads}
            assert read | carried == want and not read & carried
            macs = [j for op in ops for j in op.macs]
            assert sorted(macs) == sorted(want)
            for k, op in enumerate(ops):         # multiplied at or after its read
                for j in op.macs:
                    assert j in carried or any(u * 3 + v == j for o in ops[:k + 1]
                                               for u, v in o.reads)
                assert (8 in op.macs) <= op.hi and not (0 in op.macs and op.hi)
    assert [len(p) for p in programs(3, 3, 1)] == [5, 2]
    assert [len(p) for p in programs(3, 3, 2)] == [5, 3]
    # padding 1: a row's first position reads 6 taps in 3 micro-ops, not 9 in 5
    assert [len(p) for p in programs(3, 3, 1, 1)] == [3, 2]
    assert [len(p) for p in programs(3, 3, 2, 1)] == [3, 3]
    with pytest.raises(ValueError, match="^Left padding must be a non-negative integer, "
                                         "not -1$"):
        programs(3, 3, 1, -1)


def test_window_shifts_clears_and_feeds_lanes():
    win = np.arange(9 * 8).reshape(9, 8)
    shifted = win.copy()
    window_step(shifted, first=True, row_first=False, stride_w=1,
                writes=[(0, 2, np.full(8, -1)), (5, 0, np.full(8, 7))])   # (5, 0): nowhere
    grid = win.reshape(3, 3, 8)
    expect = np.stack([grid[:, 1], grid[:, 2], np.zeros((3, 8), np.int64)], axis=1)
    expect[0, 2] = -1
    np.testing.assert_array_equal(shifted.reshape(3, 3, 8), expect)
    cleared = win.copy()
    window_step(cleared, first=True, row_first=True, stride_w=1, writes=[])
    assert not cleared.any()
    kept = win.copy()
    window_step(kept, first=False, row_first=True, stride_w=2, writes=[(1, 1, np.zeros(8))])
    np.testing.assert_array_equal(np.delete(kept, 4, axis=0), np.delete(win, 4, axis=0))
    # lane l, SIMD j: element l of slot j; SIMD 0 takes slot 8 with hi
    w = np.zeros((8, 8), np.int64)
    w[3, 0] = 1
    w[5, 2] = 2
    assert window_macs(win, w, 0).tolist() == [0, 0, 0, win[0, 3], 0, 2 * win[2, 5], 0, 0]
    assert window_macs(win, w, 1)[3] == win[8, 3]


def test_mode_off_leaves_cores_and_programs_unchanged():
    assert CoreConfig(pe="shift_add").fingerprint() == "1a062f3d58e1da1a"
    assert CoreConfig(pe="shift_add", pack=True).fingerprint() == \
        CoreConfig(pe="shift_add", pack=True, depthwise=False).fingerprint()
    assert CoreConfig(pe="shift_add", **DW).fingerprint() != \
        CoreConfig(pe="shift_add", pack=True).fingerprint()
    for pe in ("shift_add", "bit_serial", "multiply"):
        off = core_words(CoreConfig(pe=pe, pack=True))
        on = core_words(CoreConfig(pe=pe, **DW))
        assert [f.name for f in on.weight.fields] == \
            [f.name for f in off.weight.fields][:8] + ["hi"] + \
            [f.name for f in off.weight.fields][8:]
        assert [f.name for f in on.desc.fields] == \
            [f.name for f in off.desc.fields] + ["dw", "w_base2", "w_last2"]
    # a network without depthwise convs: the same micro-ops and descriptors on both cores
    rng = np.random.default_rng(4)
    net = kpack_network(rng, c_in=12, kind="pot", bits=[3, 4], lanes=8, simd=8)
    a = compile(net, CoreConfig(pe="shift_add", pack=True))
    b = compile(net, CoreConfig(pe="shift_add", **DW))
    for name, words in (("weight", "weight"), ("desc", "desc")):
        fa = getattr(a.words, words).unpack(a.images[name])
        fb = getattr(b.words, words).unpack(b.images[name])
        for key, value in fa.items():
            np.testing.assert_array_equal(fb[key], value)
        extra = set(fb) - set(fa)
        assert extra == ({"hi"} if name == "weight" else {"dw", "w_base2", "w_last2"})
        assert not any(fb[k].any() for k in extra)
    assert a.layers == b.layers


@pytest.mark.parametrize(("kw", "message"), [
    (dict(pack=False), "Depthwise mode \\(depthwise\\) needs the second activation read port "
                       "of K packing \\(pack=True\\), not pack=False"),
    (dict(lanes=4, simd=4), "Depthwise mode \\(depthwise\\) needs lanes == simd >= 8, not "
                            "lanes=4, simd=4"),
    (dict(lanes=8, simd=16), "needs lanes == simd >= 8, not lanes=8, simd=16"),
    (dict(dsp="ecp5"), "Depthwise mode \\(depthwise\\) on the multiply PE needs "
                       "dsp='inferred'"),
    (dict(depthwise="yes"), "Depthwise mode \\(depthwise\\) must be True or False, not 'yes'"),
])
def test_config_refuses_a_bad_depthwise_mode(kw, message):
    with pytest.raises(ValueError, match=message):
        CoreConfig(pe="multiply", **{**DW, **kw})


def test_core_config_depthwise_auto_on_off():
    rng = np.random.default_rng(2)
    net = depthwise_network(rng, channels=16, hw=(14, 14))
    assert not core_config(net, pe="shift_add", lanes=8, simd=8).depthwise   # default off
    on = core_config(net, pe="shift_add", lanes=8, simd=8, depthwise="on")
    assert on.depthwise and on.pack                                          # implies pack
    assert core_config(net, pe="shift_add", lanes=8, simd=8, depthwise="auto").depthwise
    assert not core_config(net, pe="shift_add", lanes=4, simd=4, depthwise="auto").depthwise
    plain = kpack_network(rng, c_in=16, kind="pot", bits=[3, 4], lanes=8, simd=8)
    assert not core_config(plain, pe="shift_add", lanes=8, simd=8, depthwise="auto").depthwise
    with pytest.raises(ValueError, match="Depthwise mode must be one of auto, on, off, not .yes."):
        core_config(net, pe="shift_add", lanes=8, simd=8, depthwise="yes")


def test_depthwise_program_round_trips_and_version_8_is_refused():
    rng = np.random.default_rng(3)
    net = depthwise_network(rng, channels=12, hw=(5, 6))
    program = compile(net, CoreConfig(pe="shift_add", **DW))
    again = Program.from_bytes(program.to_bytes())
    assert again.config.depthwise and again.layers == program.layers
    for name in ("desc", "weight", "param"):
        np.testing.assert_array_equal(again.images[name], program.images[name])
    blob = bytearray(program.to_bytes())
    blob[8:12] = (8).to_bytes(4, "little")
    with pytest.raises(ArtifactError, match="Program format version 8 is not supported"):
        Program.from_bytes(bytes(blob))


def test_no_depthwise_mode_with_weight_or_activation_tiles():
    # external weights: the depthwise layer falls back to the plain mapping (its tiles are
    # cut per output-channel group)
    rng = np.random.default_rng(6)
    net = depthwise_network(rng, channels=16, hw=(6, 6))
    config = CoreConfig(pe="shift_add", ext_bits=64, **DW)
    program = compile(net, config, weights="external")
    assert not any("dw_tile" in lay for lay in program.layers)
    x = random_inputs(rng, net, 2)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
