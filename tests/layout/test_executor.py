"""run_images: the descriptor loop on raw memory images (what GoldenDevice runs)."""

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.golden.requant import M_MAX
from hwq.hardware import PE_FORMATS
from hwq.ir import Linear, QuantizedNetwork, Requant, WeightSpec
from hwq.layout import compile, execute
from hwq.layout.executor import UnterminatedProgram, layer_cycles, run_images
from hwq.testing import random_inputs, random_network

ARCH = (("conv", 5, 3, 1, 1, True), ("pool",), ("conv", 3, 1, 1, 0, True), ("flatten",),
        ("linear", 4, False))


def _program(pe, kind, lanes, simd, seed=0, **config):
    rng = np.random.default_rng(seed)
    net = random_network(rng, input_shape=(3, 6, 6), arch=ARCH, kind=kind, bits=[2, 3, 4],
                         per_channel_bits=True, zero_tile_fraction=0.5,
                         zero_tile=(lanes, simd))
    program = compile(net, CoreConfig(pe=pe, lanes=lanes, simd=simd, **config))
    return net, program, random_inputs(rng, net, 2)


def _memories(program, x, depth_images=False):
    cfg, words = program.config, program.words
    act = np.zeros((x.shape[0], cfg.act_depth, cfg.simd), dtype=np.int64)
    t = program.input
    packed = program.pack_input(x)
    act[:, t.base:t.base + t.words] = words.act.unpack(
        packed.reshape(-1, words.act.chunks))["a"].reshape(x.shape[0], t.words, cfg.simd)
    images = dict(program.images)
    if depth_images:   # whole memories, as a core holds them: zero words after the program
        depth = {"desc": cfg.desc_depth, "weight": cfg.weight_depth, "param": cfg.param_depth}
        for name in depth:
            img = program.images[name]
            full = np.zeros((depth[name], img.shape[1]), dtype=np.uint32)
            full[:len(img)] = img
            images[name] = full
    return images, act


def _outputs(program, act):
    out = program.output
    region = act[:, out.base:out.base + out.words]
    lay = program.words.act
    return program.unpack_output(lay.pack(region.size // program.config.simd,
                                          a=region.reshape(-1, program.config.simd))
                                 .reshape(act.shape[0], out.words, -1))


@pytest.mark.parametrize(("pe", "kind"), PE_FORMATS)
@pytest.mark.parametrize(("lanes", "simd"), [(4, 4), (8, 2), (1, 4)])
def test_layer_facts_equal_the_compiled_layers(pe, kind, lanes, simd):
    net, program, x = _program(pe, kind, lanes, simd, seed=lanes + simd)
    images, act = _memories(program, x, depth_images=True)
    runs = run_images(program.config, images, act)
    np.testing.assert_array_equal(_outputs(program, act), golden.run(net, x))
    np.testing.assert_array_equal(_outputs(program, act), execute(program, x))
    assert [r.index for r in runs] == list(range(len(program.layers)))
    assert [r.kind for r in runs] == [layer["kind"] for layer in program.layers]
    assert [r.cycles for r in runs] == [layer["cycles"] for layer in program.layers]
    floor = max(1, lanes // simd)
    for r, layer in zip(runs, program.layers, strict=True):
        if layer["kind"] == "matmul":
            assert r.positions == layer["positions"]
            assert list(r.steps) == [max(w, floor) for w in layer["steps"]]   # padded groups
        else:
            assert r.steps == ()


def test_layer_cycles_of_decoded_descriptors():
    _, program, _ = _program("multiply", "int", 4, 2)
    descs = program.words.desc.unpack(program.images["desc"])
    pool = {k: v[1] for k, v in descs.items()}
    assert pool["kind"] == 1
    assert layer_cycles(program.config, pool) == program.layers[1]["cycles"]
    first = {k: v[0] for k, v in descs.items()}
    words = [max(w, 2) for w in program.layers[0]["steps"]]
    assert layer_cycles(program.config, first, words) == program.layers[0]["cycles"]


def test_a_program_without_last_is_unterminated():
    _, program, x = _program("shift_add", "pot", 4, 4)
    images, act = _memories(program, x)
    lay = program.words.desc
    fields = lay.unpack(images["desc"])
    fields["last"][:] = 0
    images["desc"] = lay.pack(len(images["desc"]), **fields)
    with pytest.raises(UnterminatedProgram, match="No descriptor of the 4 in the descriptor "
                                                  "memory has 'last' set"):
        run_images(program.config, images, act)
    assert issubclass(UnterminatedProgram, ValueError)


def test_stops_at_last_and_checks_shapes_and_ranges():
    net, program, x = _program("bit_serial", "int", 4, 4)
    images, act = _memories(program, x, depth_images=True)
    images["desc"][len(program.layers):] = 0xFFFF_FFFF  # garbage after 'last' never runs
    assert len(run_images(program.config, images, act)) == len(program.layers)
    np.testing.assert_array_equal(_outputs(program, act), golden.run(net, x))
    with pytest.raises(ValueError, match=r"Activation memories must have shape \(N, depth, "
                                         r"4\), not \(4096, 4\)"):
        run_images(program.config, images, act[0])
    short = dict(images, weight=images["weight"][:3])
    with pytest.raises(ValueError, match="Descriptor 0: micro-ops 0..[0-9]+ are not within "
                                         "the 3 words of the weight image"):
        run_images(program.config, short, act)
    short = dict(images, param=images["param"][:1])
    with pytest.raises(ValueError, match="Descriptor 0: parameters 0..1 are not within the "
                                         "1 words of the parameter image"):
        run_images(program.config, short, act)


def _with_out_base(program, images, index, out_base):
    lay = program.words.desc
    fields = lay.unpack(images["desc"])
    fields["out_base"][index] = out_base
    return dict(images, desc=lay.pack(len(images["desc"]), **fields))


@pytest.mark.parametrize(("pe", "kind"), PE_FORMATS)
def test_a_layer_that_writes_a_word_it_reads_is_refused(pe, kind):
    # the core's memories leave a read and a write of one word in one cycle undefined
    _, program, x = _program(pe, kind, 4, 4)
    images, act = _memories(program, x)
    src = program.input
    first_out = program.words.desc.unpack(images["desc"])["out_base"][0]
    # the conv's output moved to start on the last word of its input: one word in common
    bad = _with_out_base(program, images, 0, src.base + src.words - 1)
    with pytest.raises(ValueError, match=r"Descriptor 0: writes [0-9]+ activation words it "
                                         rf"also reads \(first: {src.base + src.words - 1}\)"):
        run_images(program.config, bad, act.copy())
    # one word after its input (the compiler puts it right after): nothing in common, runs
    assert first_out == src.base + src.words
    ok = _with_out_base(program, images, 0, src.base + src.words + 1)
    assert len(run_images(program.config, ok, act.copy())) == len(program.layers)
    # the pool (descriptor 1) writing onto its own input
    pos0 = program.words.desc.unpack(images["desc"])["pos0"][1]
    bad = _with_out_base(program, images, 1, pos0)
    with pytest.raises(ValueError, match=rf"Descriptor 1: .*\(first: {pos0}\)"):
        run_images(program.config, bad, act.copy())


def wide_requant_network() -> tuple[QuantizedNetwork, CoreConfig]:
    """A Linear layer whose accumulators span 48 bits and whose M has 24 bits, and its core.

    POT(6) weights +/-2**30, 16-bit activations, K = 4: ``acc`` reaches -2**47 and
    2**47 - 4 * 2**30, so ``(acc + bias) * M`` needs up to 72 bits (beyond int64). ``S``
    around the 32-bit boundary and at 62; some channels clamp, some do not.
    """
    e = 1 << 30
    w = np.array([[e, e, e, e], [-e, -e, -e, e // 2], [e, -e, e, -e], [e, e, -e, 0],
                  [-e, e, e, e], [e, 0, 0, -e], [-e, -e, e, 1], [e, e, e, -e]], dtype=np.int64)
    rq = Requant(bias=np.array([(1 << 31) - 1, -(1 << 31), 12345, 0, -7, 1 << 30, 3, -1]),
                 M=np.array([M_MAX, M_MAX, M_MAX - 2, 1 << 23, M_MAX, 11184811, M_MAX, 9]),
                 S=np.array([62, 61, 56, 34, 33, 40, 32, 12]), lo=-(1 << 15), hi=(1 << 15) - 1)
    op = Linear(name="wide", weight=w, spec=WeightSpec(kind="pot", bits=np.array(6)), requant=rq)
    net = QuantizedNetwork(input_shape=(4,), act_bits=16, input_scale=1.0, ops=[op])
    config = CoreConfig(pe="shift_add", lanes=4, simd=4, act_bits=16, weight_bits=6, acc_bits=48)
    return net, config


def wide_requant_inputs() -> np.ndarray:
    lo, hi = -(1 << 15), (1 << 15) - 1
    rng = np.random.default_rng(3)
    return np.concatenate([np.array([[hi] * 4, [lo] * 4, [hi, lo, hi, lo], [lo, hi, lo, hi],
                                     [0] * 4, [1, -1, 0, 0]]),
                           rng.integers(lo, hi + 1, size=(10, 4))])


def test_a_layer_whose_requant_product_exceeds_64_bits_runs_exactly():
    # the compiler takes 48-bit accumulators and 24-bit M; the spec must compute the
    # 72-bit product (acc + bias) * M exactly, and the executor must equal it
    net, config = wide_requant_network()
    program = compile(net, config)
    x = wide_requant_inputs()
    acc = golden.linear(x, net.ops[0].weight)
    assert int(np.abs(acc).max()) == 1 << 47
    rq = net.ops[0].requant
    want = [[golden.requantize_reference(int(a), int(b), int(m), int(s), rq.lo, rq.hi)
             for a, b, m, s in zip(row, rq.bias, rq.M, rq.S, strict=True)] for row in acc]
    assert len({v for row in want for v in row}) > 20  # not all clamped
    np.testing.assert_array_equal(golden.run(net, x), want)
    np.testing.assert_array_equal(execute(program, x), want)
