"""Each RTL block alone, in Amaranth's simulator, with random stimulus, random stalls on its
input stream and random back-pressure on its output stream, against hwq.golden."""

import numpy as np
import pytest
from amaranth.hdl import unsigned

from hwq.config import CoreConfig
from hwq.golden.formats import IntFormat, PotFormat
from hwq.golden.requant import requantize_reference
from hwq.ir import MaxPool2d, QuantizedNetwork
from hwq.layout import compile
from hwq.layout.words import core_words
from hwq.rtl.addrgen import AddressGenerator
from hwq.rtl.maxpool import MaxPool
from hwq.rtl.pe import MacArray
from hwq.rtl.requant import Requant
from hwq.rtl.words import struct_layout
from hwq.rtl.writeback import Writeback
from hwq.testing import random_network

from .streams import receive, run, send


def _wrap(v, bits):
    return ((int(v) + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))


@pytest.mark.parametrize(("lanes", "simd"), [(3, 3), (2, 1), (1, 5), (1, 8)])
@pytest.mark.parametrize(("pe", "fmt"), [("shift_add", 0), ("bit_serial", 0), ("multiply", 0),
                                         ("multiply", 1)])
def test_mac_array(pe, fmt, lanes, simd):
    # every simd width spreads its adder tree differently over the PE's pipeline stages
    cfg = CoreConfig(pe=pe, lanes=lanes, simd=simd, act_bits=6, weight_bits=4, acc_bits=16)
    rng = np.random.default_rng([ord(c) for c in pe] + [fmt, lanes, simd])
    dut = MacArray(config=cfg, side=unsigned(8))
    p, s = cfg.lanes, cfg.simd
    table = np.concatenate([[0], rng.integers(-128, 128, size=15)])
    groups = [int(rng.integers(1, 5)) for _ in range(12)]
    beats, expect = [], []
    lay = dut.i.payload.shape()
    for gi, n in enumerate(groups):
        acc = np.zeros(p, dtype=np.int64)
        for k in range(n):
            a = rng.integers(-32, 32, size=s)
            if rng.random() < 0.25:                 # the extremes: every sign and carry
                a = rng.choice([-32, 31], size=s)
            if pe == "bit_serial":
                w = rng.integers(0, 2, size=p * s)
                shift, neg = int(rng.integers(0, 8)), int(rng.integers(0, 2))
                vals = w.reshape(p, s) * ((-1 if neg else 1) << shift)
            else:
                w = rng.integers(0, 16, size=p * s)
                shift = neg = 0
                if pe == "shift_add":
                    vals = PotFormat(4).decode(w).reshape(p, s)
                elif fmt:
                    vals = table[w].reshape(p, s)
                else:
                    vals = IntFormat(4).decode(w).reshape(p, s)
            acc += vals @ a
            beats.append(lay.const({"w": w.tolist(), "a": a.tolist(), "shift": shift,
                                    "neg": neg, "glast": int(k == n - 1), "side": gi}))
        expect.append([_wrap(v, cfg.acc_bits) for v in acc])
    got = []

    async def source(ctx):
        if pe == "multiply":
            ctx.set(dut.fmt, fmt)
            ctx.set(dut.table, table.tolist())
            await ctx.tick()                        # registered once per lane
        await send(ctx, dut.i, beats, rng)

    async def sink(ctx):
        got.extend(await receive(ctx, dut.o, len(groups), rng))

    run(dut, source, sink)
    assert [g.side for g in got] == list(range(len(groups)))
    assert [[int(g.acc[lane]) for lane in range(p)] for g in got] == expect


def _run_requant(dut, beats, lo, hi, rng):
    """Stream ``beats`` through the Requant ``dut`` (clamp ``lo``/``hi``) with random stalls
    on both sides; the output beats."""
    got = []

    async def source(ctx):
        ctx.set(dut.lo, lo)
        ctx.set(dut.hi, hi)
        await send(ctx, dut.i, beats, rng)

    async def sink(ctx):
        got.extend(await receive(ctx, dut.o, len(beats), rng))

    run(dut, source, sink)
    return got


@pytest.mark.parametrize("acc_bits", [32, 40])
def test_requant(acc_bits):
    cfg = CoreConfig(pe="multiply", lanes=4, simd=4, act_bits=8, acc_bits=acc_bits)
    rng = np.random.default_rng(11)
    dut = Requant(config=cfg, side=unsigned(8))
    lay = dut.i.payload.shape()
    lo, hi = -100, 90
    beats, expect = [], []
    top = 1 << (acc_bits - 1)
    for i in range(44):
        acc = rng.integers(-top, top, size=4) >> rng.integers(0, acc_bits - 1, size=4)
        bias = rng.integers(-(1 << 31), 1 << 31, size=4)
        m = rng.integers(1, 1 << 24, size=4)
        sh = rng.integers(1, 63, size=4)
        if i >= 40:  # tiny negative products at the largest shifts: round to 0, not -1
            acc, bias = np.array([-5, -1, -(1 << 20), 3]), np.zeros(4, np.int64)
            m, sh = np.array([1, 1, 7, 1]), np.array([62, 61, 60, 62]) - (i - 40)
        beats.append(lay.const({"acc": acc.tolist(), "bias": bias.tolist(), "m": m.tolist(),
                                "s": sh.tolist(), "side": i}))
        expect.append([requantize_reference(int(acc[k]), int(bias[k]), int(m[k]), int(sh[k]),
                                            lo, hi) for k in range(4)])
    got = _run_requant(dut, beats, lo, hi, rng)
    assert [g.side for g in got] == list(range(len(beats)))
    assert [[int(g.y[k]) for k in range(4)] for g in got] == expect


@pytest.mark.parametrize("act_bits", [2, 8])
def test_requant_saturation_boundaries(act_bits):
    """The rounding stage saturates q = (t*M) >> (S-1) to act_bits + 3 bits: values on and
    around that boundary (and the widest clamp) must still give exactly golden's result."""
    cfg = CoreConfig(pe="multiply", lanes=4, simd=4, act_bits=act_bits)
    dut = Requant(config=cfg, side=unsigned(8))
    lay = dut.i.payload.shape()
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    edge = 1 << (act_bits + 2)
    qs = [q for e in (edge, -edge, 2 * hi, 2 * lo, 0) for q in range(e - 3, e + 4)]
    beats, expect = [], []
    for i in range(0, len(qs), 4):
        group = (qs[i:i + 4] + [0, 0, 0])[:4]
        # S = 1, M = 1: q = t; S = 3, M = 4: q = t too, through the shifter
        m, sh = (1, 1) if i % 8 else (4, 3)
        beats.append(lay.const({"acc": group, "bias": [0] * 4, "m": [m] * 4, "s": [sh] * 4,
                                "side": i // 4}))
        expect.append([requantize_reference(q, 0, m, sh, lo, hi) for q in group])
    rng = np.random.default_rng(5)
    got = _run_requant(dut, beats, lo, hi, rng)
    assert [[int(g.y[k]) for k in range(4)] for g in got] == expect


def test_maxpool():
    cfg = CoreConfig(pe="multiply", lanes=3, simd=3, act_bits=5)
    rng = np.random.default_rng(12)
    dut = MaxPool(config=cfg, side=unsigned(8))
    lay = dut.i.payload.shape()
    beats, expect = [], []
    for i in range(20):
        win = rng.integers(-16, 16, size=(4, 3))
        expect.append(win.max(axis=0).tolist())
        beats += [lay.const({"a": win[k].tolist(), "first": int(k == 0), "last": int(k == 3),
                             "side": i}) for k in range(4)]
    got = []

    async def source(ctx):
        await send(ctx, dut.i, beats, rng)

    async def sink(ctx):
        got.extend(await receive(ctx, dut.o, len(expect), rng))

    run(dut, source, sink)
    assert [[int(g.y[k]) for k in range(3)] for g in got] == expect
    assert [g.side for g in got] == list(range(20))


@pytest.mark.parametrize(("lanes", "simd"), [(4, 2), (2, 4), (3, 3)])
def test_writeback(lanes, simd):
    cfg = CoreConfig(pe="multiply", lanes=lanes, simd=simd, act_bits=6, act_depth=64)
    rng = np.random.default_rng(13)
    dut = Writeback(config=cfg)
    lay = dut.i.payload.shape()
    out_ct = 3
    mem = np.zeros((64, simd), dtype=np.int64)
    expect = np.zeros_like(mem)
    beats = []
    for _ in range(12):
        y = rng.integers(-32, 32, size=lanes)
        out = int(rng.integers(0, 40))
        if lanes >= simd:
            wct = int(rng.integers(0, 3)) * (lanes // simd)
            for j in range(lanes // simd):
                if wct + j < out_ct:
                    expect[out + wct + j] = y[j * simd:(j + 1) * simd]
            wslot = 0
        else:
            wct, wslot = int(rng.integers(0, 3)), int(rng.integers(0, simd // lanes))
            expect[out + wct, wslot * lanes:(wslot + 1) * lanes] = y
        beats.append(lay.const({"y": y.tolist(), "side": {"out": out, "wct": wct,
                                                          "wslot": wslot, "llast": 0}}))

    async def source(ctx):
        ctx.set(dut.out_ct, out_ct)
        await send(ctx, dut.i, beats, rng)

    async def memory(ctx):
        for _ in range(400):
            en, addr, data = ctx.get(dut.wr_en), ctx.get(dut.wr_addr), ctx.get(dut.wr_data)
            for e in range(simd):
                if en >> e & 1:
                    v = (data >> (e * cfg.act_bits)) & ((1 << cfg.act_bits) - 1)
                    mem[addr, e] = v - (1 << cfg.act_bits) if v >> (cfg.act_bits - 1) else v
            await ctx.tick()

    run(dut, source, memory)
    np.testing.assert_array_equal(mem, expect)


def test_address_generator_walks_the_descriptor():
    rng = np.random.default_rng(14)
    net = random_network(rng, input_shape=(3, 5, 4),
                         arch=(("conv", 5, 3, 2, 1, True), ("pool",)), kind="int", bits=4)
    ops = net.ops[:1] + [MaxPool2d(name="p3", kernel=(3, 2), stride=(1, 2), padding=(1, 0))]
    net = QuantizedNetwork(input_shape=(3, 5, 4), act_bits=8, input_scale=1.0, ops=ops)
    cfg = CoreConfig(pe="multiply", lanes=2, simd=2, act_depth=256)
    program = compile(net, cfg)
    words = core_words(cfg)
    descs = words.desc.unpack(program.images["desc"])
    for i in range(2):
        d = {k: v[i] for k, v in descs.items()}
        dut = AddressGenerator(config=cfg)
        expect = _address_ops(d)
        got: list = []

        async def control(ctx, d=d, dut=dut):
            ctx.set(dut.desc, struct_layout(words.desc).const(
                {k: (v.tolist() if hasattr(v, "tolist") else int(v)) for k, v in d.items()}))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)

        n = len(expect)

        async def sink(ctx, dut=dut, n=n, got=got):
            got.extend(await receive(ctx, dut.o, n, rng))
            assert not ctx.get(dut.busy)

        run(dut, control, sink)
        assert [{k: int(getattr(g, k)) for k in e} for g, e in zip(got, expect, strict=True)] \
            == expect


def _address_ops(d):
    """The ops of descriptor ``d`` by the loops, every field the fetch stages use."""
    ops = []
    for oh in range(d["out_h"]):
        for ow in range(d["out_w"]):
            pos = d["pos0"] + oh * d["row_step"] + ow * d["col_step"]
            out = d["out_base"] + (oh * d["out_w"] + ow) * d["out_ct"]
            if d["kind"] == 0:
                for wa in range(d["w_base"], d["w_last"] + 1):
                    ops.append({"w_addr": wa, "pos": pos, "ih0": oh * d["stride_h"] - d["pad_t"],
                                "iw0": ow * d["stride_w"] - d["pad_l"], "out": out,
                                "pfirst": int(wa == d["w_base"]), "llast": 0})
            else:
                taps = [(u, v) for u in range(d["kernel_h"]) for v in range(d["kernel_w"])]
                for t in range(d["in_ct"]):
                    for tap, (u, v) in enumerate(taps):
                        ops.append({"pos": pos + t + u * d["dy_step"] + v * d["dx_step"],
                                    "ih0": oh * d["stride_h"] - d["pad_t"] + u,
                                    "iw0": ow * d["stride_w"] - d["pad_l"] + v,
                                    "out": out + t, "pool_first": int(tap == 0),
                                    "pool_last": int(tap == len(taps) - 1), "llast": 0})
    ops[-1]["llast"] = 1
    return ops


def test_address_generator_loop_edges_back_to_back():
    # loops of one iteration (one weight word, one column, one row, one channel tile) and
    # layers started on one instance right after the previous layer's last op
    cfg = CoreConfig(pe="multiply", lanes=2, simd=2, act_depth=256)
    words = core_words(cfg)
    mm = {"kind": 0, "stride_h": 2, "stride_w": 3, "pad_t": 1, "pad_l": 2, "pos0": -3, "col_step": 4, "row_step": 16,
          "out_base": 40, "out_ct": 3, "in_ct": 2}
    pool = {"kind": 1, "stride_h": 2, "stride_w": 2, "pos0": 40, "col_step": 6, "row_step": 12,
            "dx_step": 3, "dy_step": 6, "out_base": 0, "out_ct": 2, "kernel_h": 2,
            "kernel_w": 2, "in_h": 8, "in_w": 8, "pad_t": 0, "pad_l": 0}
    general = pool | {"kernel_h": 3, "kernel_w": 1, "stride_w": 1, "pad_t": 1, "pad_l": 0}
    layers = [
        mm | {"out_h": 3, "out_w": 1, "w_base": 7, "w_last": 7},     # one word, one column
        mm | {"out_h": 1, "out_w": 3, "w_base": 20, "w_last": 22},   # one row
        pool | {"out_h": 2, "out_w": 2, "in_ct": 1},
        pool | {"out_h": 1, "out_w": 2, "in_ct": 2},
        general | {"out_h": 2, "out_w": 2, "in_ct": 2},                # 3x1 window, padding
        pool | {"kernel_h": 1, "kernel_w": 1, "out_h": 1, "out_w": 2, "in_ct": 1},  # one tap
        general | {"kernel_w": 3, "pad_l": 1, "out_h": 1, "out_w": 1, "in_ct": 1},
        mm | {"out_h": 1, "out_w": 2, "w_base": 3, "w_last": 4},
        mm | {"out_h": 1, "out_w": 1, "w_base": 5, "w_last": 5},     # a single op
        mm | {"out_h": 2, "out_w": 2, "w_base": 0, "w_last": 1},
    ]
    rng = np.random.default_rng(15)
    dut = AddressGenerator(config=cfg)
    got: list = []

    async def control_and_sink(ctx):
        for d in layers:
            ctx.set(dut.desc, struct_layout(words.desc).const(d))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            got.append(await receive(ctx, dut.o, len(_address_ops(d)), rng))
            assert not ctx.get(dut.busy)

    run(dut, control_and_sink)
    for d, ops in zip(layers, got, strict=True):
        expect = _address_ops(d)
        assert [{k: int(getattr(op, k)) for k in e}
                for op, e in zip(ops, expect, strict=True)] == expect


def test_receive_fails_when_a_stream_stops_instead_of_hanging():
    """A block that emits fewer beats than expected fails its test (streams.BEAT_TIMEOUT)."""
    cfg = CoreConfig(pe="shift_add", lanes=2, simd=2)
    dut = Requant(config=cfg)          # never fed: its output stays invalid
    failure = []

    async def tb(ctx):
        try:
            await receive(ctx, dut.o, 1, np.random.default_rng(0), stall=0.0)
        except AssertionError as exc:
            failure.append(str(exc))

    run(dut, tb)
    assert failure == ["stream stopped after 0 of 1 beats (10000 cycles without one)"]
