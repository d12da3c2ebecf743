"""The layout compiler and the Program executor against the golden model."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.errors import ArtifactError
from hwq.golden.cycles import OVERHEADS
from hwq.hardware import PE_FORMATS
from hwq.ir import Conv2d, Flatten, Linear, MaxPool2d, QuantizedNetwork, Requant, WeightSpec
from hwq.layout import Program, compile, execute
from hwq.layout.compiler import core_config, network_cycles
from hwq.testing import random_inputs, random_network

LANES_SIMD = [(1, 1), (2, 4), (4, 2), (3, 3), (4, 4), (8, 2), (2, 8), (8, 8)]

ARCHS = [
    (("conv", 5, 3, 1, 1, True), ("conv", 7, 3, 2, 1, True), ("pool",), ("flatten",),
     ("linear", 10, False)),
    (("conv", 3, 1, 1, 0, False), ("pool",), ("conv", 9, 2, 2, 0, True), ("flatten",),
     ("linear", 6, True), ("linear", 4, False)),
    (("conv", 6, 3, 1, 2, True), ("conv", 2, 3, 3, 1, False)),
]


@st.composite
def cases(draw):
    pe, kind = draw(st.sampled_from(PE_FORMATS))
    lanes, simd = draw(st.sampled_from(LANES_SIMD))
    arch = draw(st.sampled_from(ARCHS))
    c = draw(st.integers(1, 5))
    hw = draw(st.integers(5, 8))
    bits = draw(st.sampled_from([[2], [4], [2, 3, 4], [3, 4]]))
    seed = draw(st.integers(0, 2**32 - 1))
    sparse = draw(st.sampled_from([0.0, 0.3, 0.7]))
    per_channel = draw(st.booleans())
    act_bits = draw(st.sampled_from([4, 8]))
    pool_words = draw(st.sampled_from([0, 1, 16]))   # pools fused when the buffer holds them
    return (pe, kind, lanes, simd, arch, (c, hw, hw), bits, seed, sparse, per_channel, act_bits,
            pool_words)


def _config(pe, lanes, simd, act_bits=8, **kw):
    return CoreConfig(pe=pe, lanes=lanes, simd=simd, act_bits=act_bits, **kw)


@settings(max_examples=120)
@given(cases())
def test_program_round_trip_equals_golden(case):
    pe, kind, lanes, simd, arch, shape, bits, seed, sparse, per_channel, act_bits, pool = case
    rng = np.random.default_rng(seed)
    net = random_network(rng, input_shape=shape, arch=arch, kind=kind, bits=bits,
                         act_bits=act_bits, per_channel_bits=per_channel,
                         zero_tile_fraction=sparse, zero_tile=(lanes, simd))
    config = _config(pe, lanes, simd, act_bits, pool_words=pool)
    program = compile(net, config)
    x = random_inputs(rng, net, 3)
    expect = golden.run(net, x)
    np.testing.assert_array_equal(execute(program, x), expect)
    # through the binary container
    again = Program.from_bytes(program.to_bytes())
    np.testing.assert_array_equal(execute(again, x), expect)
    # the cycle model computed from the network alone agrees with the compiled layers
    model = [c["cycles"] for c in network_cycles(net, config)
             if c["kind"] != "flatten" and "fused_into" not in c]
    assert model == [layer["cycles"] for layer in program.layers]


@st.composite
def graph_cases(draw):
    from hwq.testing import GRAPH_BLOCKS

    pe, kind = draw(st.sampled_from(PE_FORMATS))
    lanes, simd = draw(st.sampled_from(LANES_SIMD))
    blocks = draw(st.lists(st.sampled_from(GRAPH_BLOCKS), min_size=1, max_size=4))
    c = draw(st.integers(1, 5))
    h, w = draw(st.integers(4, 9)), draw(st.integers(4, 9))
    bits = draw(st.sampled_from([[2], [4], [2, 3, 4], [3, 4]]))
    return (pe, kind, lanes, simd, blocks, (c, h, w), bits, draw(st.integers(0, 2**32 - 1)),
            draw(st.booleans()), draw(st.sampled_from([4, 8])))


@settings(max_examples=120, deadline=None)
@given(graph_cases())
def test_graph_program_equals_golden(case):
    # forks and residual adds, depthwise and grouped convs, general max and average pools,
    # odd kernels, strides, padding and dilation; every format (codebooks with the zero
    # anywhere) on every PE type: the executor equals golden, the cycle model the program
    from hwq.testing import random_graph_network

    pe, kind, lanes, simd, blocks, shape, bits, seed, per_channel, act_bits = case
    rng = np.random.default_rng(seed)
    net = random_graph_network(rng, input_shape=shape, blocks=blocks, kind=kind, bits=bits,
                               per_channel_bits=per_channel, act_bits=act_bits)
    config = core_config(net, pe=pe, lanes=lanes, simd=simd)
    program = compile(net, config)
    x = random_inputs(rng, net, 2)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
    model = [c["cycles"] for c in network_cycles(net, config) if c["cycles"]]
    assert model == [layer["cycles"] for layer in program.layers]


def test_linear_only_network_with_1d_input():
    rng = np.random.default_rng(3)
    net = random_network(rng, input_shape=(13,), arch=(("linear", 9, True), ("linear", 3, False)),
                         kind="int", bits=[3, 4])
    program = compile(net, _config("multiply", 4, 4))
    x = random_inputs(rng, net, 5)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
    assert program.input.shape == (13,) and program.output.shape == (3,)


def test_trailing_flatten_output_is_channel_major():
    rng = np.random.default_rng(4)
    net = random_network(rng, input_shape=(3, 5, 5), arch=(("conv", 6, 3, 1, 0, True), ("flatten",)),
                         kind="pot", bits=3)
    program = compile(net, _config("shift_add", 4, 4))
    x = random_inputs(rng, net, 2)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
    assert program.output.shape == (6 * 3 * 3,)


def test_sparse_tiles_are_skipped_and_cost_nothing():
    rng = np.random.default_rng(5)
    net = random_network(rng, input_shape=(8, 4, 4), arch=(("conv", 8, 1, 1, 0, False),),
                         kind="int", bits=4)
    w = net.ops[0].weight.copy()
    w[:4, :4] = 0                                  # group 0, channel tile 0: all zero
    op = Conv2d(name="c", weight=w, spec=net.ops[0].spec, requant=net.ops[0].requant)
    net = QuantizedNetwork(input_shape=(8, 4, 4), act_bits=8, input_scale=1.0, ops=[op])
    program = compile(net, _config("multiply", 4, 4))
    layer = program.layers[0]
    assert layer["tile_mask"] == [[False, True], [True, True]]
    assert layer["steps"] == [1, 2]
    assert layer["cycles"] == 16 * 3 + OVERHEADS.matmul
    x = random_inputs(rng, net, 2)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


def zero_last_codebook_network() -> QuantizedNetwork:
    """Linear [[5], [5]] with the table [5, 0]: the zero is entry 1, not entry 0."""
    rq = Requant(bias=np.zeros(2, np.int64), M=np.ones(2, np.int64), S=np.ones(2, np.int64),
                 lo=-128, hi=127)
    spec = WeightSpec(kind="codebook", bits=np.array(1), table=np.array([5, 0]))
    op = Linear(name="fc", weight=np.array([[5], [5]], dtype=np.int64), spec=spec, requant=rq)
    return QuantizedNetwork(input_shape=(1,), act_bits=8, input_scale=1.0, ops=[op])


def test_codebook_zero_anywhere_pads_with_the_zero_index():
    # lanes 2, simd 1: every group needs 2 micro-ops, the layer has 1 tile, so the compiler
    # pads with a micro-op whose weights must all decode to 0 (index 1 here, not index 0)
    net = zero_last_codebook_network()
    program = compile(net, _config("multiply", 2, 1))
    assert program.layers[0]["steps"] == [1]
    x = np.array([[7], [-3], [0], [127]])
    expect = golden.run(net, x)
    np.testing.assert_array_equal(expect, np.repeat(np.clip((5 * x + 1) >> 1, -128, 127), 2, axis=1))
    np.testing.assert_array_equal(execute(program, x), expect)
    # every padded weight (lanes beyond C_out, inputs beyond K) decodes to 0 too
    net3 = QuantizedNetwork(input_shape=(3,), act_bits=8, input_scale=1.0, ops=[Linear(
        name="fc", weight=np.array([[5, 0, 5]], dtype=np.int64), requant=Requant(
            bias=np.zeros(1, np.int64), M=np.ones(1, np.int64), S=np.ones(1, np.int64),
            lo=-128, hi=127),
        spec=WeightSpec(kind="codebook", bits=np.array(1), table=np.array([5, 0])))])
    x3 = np.array([[1, 2, 3], [-128, 127, 5]])
    for lanes, simd in ((2, 1), (4, 2), (2, 4), (8, 8)):
        for pe in ("multiply", "bit_serial"):
            program = compile(net3, _config(pe, lanes, simd))
            np.testing.assert_array_equal(execute(program, x3), golden.run(net3, x3))


def test_bit_serial_tiles_cost_their_nonzero_planes():
    w = np.zeros((2, 2, 1, 1), dtype=np.int64)
    w[0, 0], w[0, 1], w[1, 0], w[1, 1] = 3, -1, 0, 2    # one 2x2 tile: 3 bits, planes 0..2
    rq = Requant(bias=np.zeros(2, np.int64), M=np.ones(2, np.int64), S=np.ones(2, np.int64),
                 lo=-128, hi=127)
    op = Conv2d(name="c", weight=w, spec=WeightSpec(kind="int", bits=np.array(4)), requant=rq)
    net = QuantizedNetwork(input_shape=(2, 3, 3), act_bits=8, input_scale=1.0, ops=[op])
    program = compile(net, _config("bit_serial", 2, 2))
    assert program.layers[0]["tile_bits"] == [[3]]
    assert program.layers[0]["steps"] == [3]
    w[0, 1] = 1                                          # no negative value: 3 bits, 2 planes
    op = Conv2d(name="c", weight=w, spec=WeightSpec(kind="int", bits=np.array(4)), requant=rq)
    net = QuantizedNetwork(input_shape=(2, 3, 3), act_bits=8, input_scale=1.0, ops=[op])
    assert compile(net, _config("bit_serial", 2, 2)).layers[0]["steps"] == [2]


def test_digits_cnn_fits_the_default_core_and_its_cycle_budget():
    rng = np.random.default_rng(6)
    arch = (("conv", 16, 3, 1, 1, True), ("conv", 32, 3, 1, 1, True), ("pool",),
            ("conv", 32, 3, 1, 1, True), ("pool",), ("flatten",), ("linear", 10, False))
    for pe, kind in (("shift_add", "pot"), ("multiply", "int"), ("bit_serial", "int")):
        net = random_network(rng, input_shape=(1, 8, 8), arch=arch, kind=kind, bits=4)
        program = compile(net, CoreConfig(pe=pe))
        x = random_inputs(rng, net, 4)
        np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
        budget = 12_000 if pe != "bit_serial" else 45_000
        assert program.cycles() < budget, (pe, program.cycles())


@pytest.mark.parametrize(("pe", "kind"), [("shift_add", "int"), ("shift_add", "codebook"),
                                          ("multiply", "pot"), ("bit_serial", "pot")])
def test_format_must_match_the_pe(pe, kind):
    net = random_network(np.random.default_rng(0), kind=kind, bits=3)
    with pytest.raises(ValueError, match=rf"conv0: {kind.upper()} weights do not run on the "
                                         rf"{pe} PE \(it takes "):
        compile(net, CoreConfig(pe=pe))


def test_weights_wider_than_the_datapath():
    net = random_network(np.random.default_rng(0), kind="int", bits=6)
    with pytest.raises(ValueError, match="conv0: 6-bit INT weights are wider than the core's "
                                         "4-bit datapath"):
        compile(net, CoreConfig(pe="multiply", weight_bits=4))


def test_accumulator_overflow_is_refused():
    net = random_network(np.random.default_rng(0), input_shape=(16, 8, 8), kind="int", bits=8,
                         act_bits=16)
    with pytest.raises(ValueError, match=r"conv0: the accumulator needs \d+ bits for this layer, "
                                         r"the core has 16"):
        compile(net, CoreConfig(pe="multiply", weight_bits=8, act_bits=16, acc_bits=16))


@pytest.mark.parametrize(("field", "depth", "message"), [
    # the whole need of each memory and the depth that fits (not the first layer over)
    ("weight_depth", 16, r"the weight memory needs (\d+) words, 16 available "
                         r"\(weight_depth=(\d+) would fit\)"),
    ("act_depth", 16, r"the activation memory needs (\d+) words, 16 available "
                      r"\(act_depth=(\d+) would fit\)"),
    ("param_depth", 16, r"the parameter memory needs (\d+) words, 16 available "
                        r"\(param_depth=(\d+) would fit\)"),
    ("desc_depth", 2, r"the descriptor memory needs (4) descriptors, 2 available "
                      r"\(desc_depth=(4) would fit\)"),
])
def test_network_that_does_not_fit_gives_the_need_and_the_fit(field, depth, message):
    net = random_network(np.random.default_rng(1), input_shape=(3, 8, 8),
                         arch=ARCHS[0][:2] + ((("conv", 40, 1, 1, 0, True),) if field ==
                                              "param_depth" else ()) + ARCHS[0][2:],
                         kind="int", bits=4)
    config = CoreConfig(pe="multiply", lanes=2, simd=2, **{field: depth})
    with pytest.raises(ValueError, match="Network does not fit the core: " + message) as info:
        compile(net, config)
    import re
    need, fit = (int(v) for v in re.search(message, str(info.value)).groups())
    assert fit >= need > depth
    # the named depth fits, one less than the need does not
    compile(net, replace(config, **{field: fit}))
    if need - 1 >= (2 if field == "desc_depth" else 16):
        with pytest.raises(ValueError, match="Network does not fit the core"):
            compile(net, replace(config, **{field: need - 1}))
    compile(net, replace(config, **{field: need}))


def test_container_detects_corruption_and_versions(tmp_path):
    net = random_network(np.random.default_rng(2), kind="codebook", bits=3)
    program = compile(net, CoreConfig(pe="multiply"))
    path = program.save(tmp_path / "net.hwqp")
    again = Program.load(path)
    for name, img in program.images.items():
        np.testing.assert_array_equal(again.images[name], img)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    with pytest.raises(ArtifactError, match="CRC mismatch"):
        Program.from_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="bad magic"):
        Program.from_bytes(b"NOTAPROG" + bytes(data[8:]))
    bumped = bytearray(path.read_bytes())
    bumped[8] = 99
    with pytest.raises(ArtifactError, match="format version 99 is not supported"):
        Program.from_bytes(bytes(bumped))
    with pytest.raises(ValueError, match="Program was built for core"):
        program.check_config(CoreConfig(pe="multiply", lanes=4))


def test_activations_wider_than_the_core_are_named():
    net = random_network(np.random.default_rng(0), act_bits=8)
    with pytest.raises(ValueError) as info:
        compile(net, _config("multiply", 8, 8, act_bits=4))
    assert str(info.value) == ("Network activations of 8 bits are wider than the core's 4-bit "
                               "activations (act_bits)")
    # narrower activations run on a wider core
    net4 = random_network(np.random.default_rng(0), act_bits=4)
    x = random_inputs(np.random.default_rng(1), net4, 3)
    np.testing.assert_array_equal(execute(compile(net4, _config("multiply", 8, 8)), x),
                                  golden.run(net4, x))


def test_readmemh_holds_every_word(tmp_path):
    net = random_network(np.random.default_rng(3), kind="pot", bits=4)
    program = compile(net, CoreConfig(pe="shift_add", lanes=4, simd=4))
    paths = program.write_readmemh(tmp_path)
    for name, path in paths.items():
        lay = program.words.memories[name]
        lines = path.read_text().split()
        assert len(lines) == program.images[name].shape[0]
        assert [int(v, 16) for v in lines] == lay.to_ints(program.images[name])
        assert all(len(v) == -(-lay.width // 4) for v in lines)


def test_pack_and_unpack_activations():
    net = random_network(np.random.default_rng(4), input_shape=(5, 3, 2),
                         arch=(("conv", 3, 1, 1, 0, False),), kind="int", bits=4)
    program = compile(net, CoreConfig(pe="multiply", lanes=2, simd=2))
    x = random_inputs(np.random.default_rng(0), net, 2)
    words = program.pack_input(x)
    assert words.shape == (2, 3 * 2 * 3, 1)
    with pytest.raises(ValueError, match=r"Network input must have shape \(N, 5, 3, 2\)"):
        program.pack_input(x[:, :4])


def test_network_without_hardware_layer():
    net = QuantizedNetwork(input_shape=(2, 2, 2), act_bits=8, input_scale=1.0,
                           ops=[Flatten(name="f")])
    with pytest.raises(ValueError, match="no conv2d, linear or maxpool2d layer"):
        compile(net, CoreConfig(pe="multiply"))


def test_pool_only_and_linear_classes_are_used():
    # MaxPool2d and Linear straight from the IR, not the random generator
    rng = np.random.default_rng(9)
    w = rng.integers(-8, 8, size=(3, 2 * 2 * 2))
    rq = Requant(bias=np.zeros(3, np.int64), M=np.full(3, 1 << 20), S=np.full(3, 24),
                 lo=-128, hi=127)
    net = QuantizedNetwork(input_shape=(2, 4, 5), act_bits=8, input_scale=1.0, ops=[
        MaxPool2d(name="p"), Flatten(name="f"),
        Linear(name="l", weight=w, spec=WeightSpec(kind="int", bits=np.array(4)), requant=rq)])
    program = compile(net, CoreConfig(pe="bit_serial", lanes=2, simd=2))
    x = random_inputs(rng, net, 3)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


def test_core_config_is_the_narrowest_that_runs_the_network():
    from hwq.layout.compiler import core_config

    rng = np.random.default_rng(3)
    arch = (("conv", 3, 3, 1, 1, True), ("flatten",), ("linear", 2, False))
    ints = random_network(rng, input_shape=(2, 4, 4), arch=arch, kind="int", bits=[2, 3])
    cfg = core_config(ints, pe="multiply", lanes=4, simd=4, dsp="ecp5")
    # no codebook: values as wide as the weights
    assert (cfg.weight_bits, cfg.table_bits, cfg.dsp) == (3, 3, "ecp5")
    assert core_config(ints, pe="bit_serial", lanes=2, simd=2).weight_bits == 3
    books = random_network(rng, input_shape=(2, 4, 4), arch=arch, kind="codebook", bits=[2])
    widest = max(op.spec.table_bits for op in books.weight_ops())
    assert core_config(books, pe="multiply", lanes=4, simd=4).table_bits == widest
    pot = random_network(rng, input_shape=(2, 4, 4), arch=arch, kind="pot", bits=[2])
    assert core_config(pot, pe="shift_add", lanes=2, simd=2).weight_bits == 2
    for net, pe in ((ints, "multiply"), (books, "multiply"), (pot, "shift_add")):
        config = core_config(net, pe=pe, lanes=2, simd=2)
        x = random_inputs(rng, net, 2)
        np.testing.assert_array_equal(execute(compile(net, config), x), golden.run(net, x))


def test_network_that_starts_with_flatten_takes_its_own_input_shape():
    # issue 17: the Program's input is the network's input (1, 2, 2), not the flattened (4,)
    rng = np.random.default_rng(8)
    w = rng.integers(-8, 8, size=(3, 4))
    rq = Requant(bias=np.zeros(3, np.int64), M=np.full(3, 1 << 20), S=np.full(3, 24),
                 lo=-128, hi=127)
    net = QuantizedNetwork(input_shape=(1, 2, 2), act_bits=8, input_scale=1.0, ops=[
        Flatten(name="f"),
        Linear(name="l", weight=w, spec=WeightSpec(kind="int", bits=np.array(4)), requant=rq)])
    program = compile(net, CoreConfig(pe="multiply", lanes=2, simd=2))
    assert program.input.shape == (1, 2, 2)
    x = random_inputs(rng, net, 3)
    assert x.shape == (3, 1, 2, 2)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


def _fusion_program(pe="shift_add", kind="pot", lanes=4, simd=4, **fields):
    from hwq.testing import pool_fusion_network

    net = pool_fusion_network(np.random.default_rng(3), kind=kind, bits=[2, 3, 4],
                              per_channel_bits=True)
    config = core_config(net, pe=pe, lanes=lanes, simd=simd, **fields)
    return net, config, compile(net, config)


@pytest.mark.parametrize("pe, kind, lanes, simd", [("shift_add", "pot", 4, 4),
                                                   ("bit_serial", "int", 4, 2),
                                                   ("multiply", "codebook", 2, 4)])
def test_max_pools_fuse_by_the_rule(pe, kind, lanes, simd):
    # pool1 (after a conv) and pool4 (after an add, windows leaving positions out) fuse;
    # pool5 (its input also read by the add), pool8 (overlapping windows) and pool10
    # (padding) stay passes of their own
    net, config, program = _fusion_program(pe, kind, lanes, simd)
    assert config.pool_words == (2 if simd == 4 else 4)    # ceil(5 / simd), a power of two
    layers = {layer["name"]: layer for layer in program.layers}
    assert {n: layer.get("fused") for n, layer in layers.items() if "fused" in layer} == {
        "conv0": "pool1", "add3": "pool4"}
    assert [n for n, layer in layers.items() if layer["kind"] == "pool"] == [
        "pool5", "pool8", "pool10"]
    # a fused layer computes the conv positions of its windows only: 5x5 windows of 2x2
    # over conv0's 10x10; 2x3 windows of 2x1 over add3's 5x5 (row 4, columns 1 and 3 left)
    assert layers["conv0"]["positions"] == 100 and layers["add3"]["positions"] == 12
    x = random_inputs(np.random.default_rng(4), net, 3)
    np.testing.assert_array_equal(execute(program, x), golden.run(net, x))
    again = Program.from_bytes(program.to_bytes())
    assert again.layers == program.layers
    np.testing.assert_array_equal(execute(again, x), golden.run(net, x))
    entries = {e["name"]: e for e in network_cycles(net, config)}
    assert (entries["pool1"]["cycles"], entries["pool1"]["fused_into"]) == (0, "conv0")
    assert entries["add3"]["fused"] == "pool4" and entries["add3"]["positions"] == 12
    assert [e["cycles"] for e in entries.values() if e["cycles"]] == [
        layer["cycles"] for layer in program.layers]


def test_a_pool_buffer_too_small_or_absent_leaves_the_pools_alone():
    net, _, fused = _fusion_program(lanes=2, simd=2)           # 3 words per position
    for words in (0, 2):
        _, config, program = _fusion_program(lanes=2, simd=2, pool_words=words)
        assert config.pool_words == words
        assert not any("fused" in layer for layer in program.layers)
        assert len(program.layers) == len(fused.layers) + 2
        # the fused program saves the two pools' passes and the conv positions in no window
        assert program.cycles() > fused.cycles()
        x = random_inputs(np.random.default_rng(5), net, 2)
        np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


def test_a_fused_conv_output_takes_no_activation_memory():
    # input 64 words, conv 128 (16 channels, simd 8), pool 32, linear 1: unfused the input
    # and the conv's output are live together (192 words); fused the conv writes the pooled
    # tensor straight away (96)
    from hwq.testing import random_network

    arch = (("conv", 16, 3, 1, 1, True), ("pool",), ("flatten",), ("linear", 3, False))
    net = random_network(np.random.default_rng(2), input_shape=(8, 8, 8), arch=arch,
                         kind="pot", bits=[3])
    peaks = {}
    for words in (0, 2):
        program = compile(net, _config("shift_add", 8, 8, pool_words=words))
        peaks[words] = program.meta["act_peak"]
    assert peaks == {0: 192, 2: 96}


def test_a_conv_of_one_group_keeps_its_pool_pass():
    # 8 output channels on 8 lanes: one group, a position can take one cycle, and the
    # write-back's buffer is written a cycle after its read: the pool is not fused; with 16
    # lanes and simd 8 a group writes two words (two cycles) and it is
    from hwq.testing import random_network

    arch = (("conv", 8, 1, 1, 0, True), ("pool",), ("flatten",), ("linear", 3, False))
    net = random_network(np.random.default_rng(2), input_shape=(8, 4, 4), arch=arch,
                         kind="pot", bits=[3])
    for lanes, fused in ((8, False), (16, True), (4, True)):
        program = compile(net, _config("shift_add", lanes, 8, pool_words=1))
        assert any("fused" in layer for layer in program.layers) == fused, lanes
        x = random_inputs(np.random.default_rng(6), net, 2)
        np.testing.assert_array_equal(execute(program, x), golden.run(net, x))


def test_a_fused_layer_must_name_its_pool():
    # the container (format 7) refuses a layer whose fused pool is not an op name
    _, _, program = _fusion_program()
    bad = replace(program, layers=[{**layer, "fused": 3} if "fused" in layer else layer
                                      for layer in program.layers])
    with pytest.raises(ArtifactError, match="fused"):
        Program.from_bytes(bad.to_bytes())
