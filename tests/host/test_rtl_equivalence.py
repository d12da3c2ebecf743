"""GoldenDevice against the RTL (hwq.rtl.core.Core in Amaranth's simulator), the reference
for register semantics: the same register traffic on both gives the same read values, and
the Runtime gives the same results through either."""

import asyncio

import numpy as np
import pytest

import hwq.golden as golden
from hwq.host import GoldenDevice, Runtime
from hwq.layout.regmap import ADDR, BIT, MEM
from hwq.rtl.core import Core
from hwq.rtl.simulation import AmaranthDevice

from ..rtl.streams import run as run_sim
from .common import SMALL, case


def _on_rtl(config, body):
    """Run ``body(device)`` inside a testbench of a fresh core; returns its result."""
    core = Core(config=config)
    out = {}

    async def tb(ctx):
        out["value"] = await body(AmaranthDevice(ctx, core), ctx, core)

    run_sim(core, tb)
    return out["value"]


@pytest.mark.parametrize(("pe", "kind", "lanes", "simd"), [
    ("bit_serial", "codebook", 2, 4),
    ("multiply", "int", 4, 2),
])
def test_runtime_on_rtl_equals_runtime_on_golden_device(pe, kind, lanes, simd):
    arch = (("conv", 3, 3, 2, 1, True), ("pool",), ("flatten",), ("linear", 2, False))
    net, program, x = case(pe, kind, seed=3, lanes=lanes, simd=simd, shape=(2, 5, 5),
                           arch=arch, **SMALL)

    async def infer(dev, *_):
        rt = Runtime(dev)
        await rt.load(program)
        return await rt.infer(x)

    rtl = _on_rtl(program.config, infer)
    model = GoldenDevice(program.config)
    gold = asyncio.run(infer(model))
    np.testing.assert_array_equal(rtl.outputs, golden.run(net, x))
    np.testing.assert_array_equal(gold.outputs, rtl.outputs)
    assert gold.cycles.tolist() == rtl.cycles.tolist() == [program.cycles()] * len(x)
    assert gold.layer_cycles.tolist() == rtl.layer_cycles.tolist()
    assert rtl.cycle_model_mismatches() == []


@pytest.mark.parametrize(("pe", "kind"), [("shift_add", "pot"), ("multiply", "codebook")])
def test_graph_network_on_the_amaranth_core(pe, kind):
    # a residual add, a depthwise conv, a general max pool and an average pool on the RTL in
    # Amaranth's simulator: equal to golden and to the golden device, cycles on the model
    from hwq.layout import compile
    from hwq.layout.compiler import core_config
    from hwq.testing import random_graph_network, random_inputs

    rng = np.random.default_rng(21)
    net = random_graph_network(rng, kind=kind, bits=[2, 3], input_shape=(2, 6, 6),
                               blocks=["res", "maxpool", "dw", "avgpool"], classes=2)
    program = compile(net, core_config(net, pe=pe, lanes=2, simd=2))
    x = random_inputs(rng, net, 1)

    async def infer(dev, *_):
        rt = Runtime(dev)
        await rt.load(program)
        return await rt.infer(x)

    rtl = _on_rtl(program.config, infer)
    gold = asyncio.run(infer(GoldenDevice(program.config)))
    np.testing.assert_array_equal(rtl.outputs, golden.run(net, x))
    np.testing.assert_array_equal(gold.outputs, rtl.outputs)
    assert gold.layer_cycles.tolist() == rtl.layer_cycles.tolist()
    assert rtl.cycle_model_mismatches() == []


def _trace(program, x):
    """Register traffic exercising every register; ``("r", off)`` reads are compared."""
    cfg, words = program.config, program.words
    ops = [("r", off) for off in (ADDR.ID, ADDR.VERSION, ADDR.FINGERPRINT_LO,
                                  ADDR.FINGERPRINT_HI, ADDR.CONFIG0, ADDR.CONFIG1, ADDR.STATUS,
                                  ADDR.IRQ_ENABLE, ADDR.CYCLES, ADDR.LAYER_SEL,
                                  ADDR.LAYER_CYCLES, ADDR.LAYERS_DONE, ADDR.BULK_SEL,
                                  ADDR.BULK_ADDR, ADDR.CTRL, ADDR.BULK_WDATA)]
    ops += [("w", ADDR.ID, 5), ("w", ADDR.CYCLES, 7), ("r", ADDR.ID), ("r", ADDR.CYCLES),
            ("w", ADDR.LAYER_SEL, 0xFFFF_FFFF), ("r", ADDR.LAYER_SEL),
            ("w", ADDR.BULK_SEL, 0xFFFF_FFFE), ("r", ADDR.BULK_SEL),
            ("w", ADDR.IRQ_ENABLE, 0xFFFF_FFFF), ("r", ADDR.IRQ_ENABLE), ("irq",)]

    def bulk(mem, base, image, partial=False):
        ops.extend([("w", ADDR.BULK_SEL, mem), ("w", ADDR.BULK_ADDR, base)])
        for k, row in enumerate(np.asarray(image, np.uint32)):
            for c, chunk in enumerate(row.tolist()):
                ops.append(("w", ADDR.BULK_WDATA, chunk))
                if partial and k == 0 and c == 0:
                    ops.append(("r", ADDR.BULK_ADDR))
            ops.append(("r", ADDR.BULK_ADDR))

    for name in ("desc", "weight", "param"):
        bulk(getattr(MEM, name), 0, program.images[name], partial=name == "weight")
    act = program.pack_input(x)[0].copy()
    top = words.act.width - 32 * (words.act.chunks - 1)
    assert top < 32
    act[:, -1] |= np.uint32(0xFFFF_FFFF & ~((1 << top) - 1))   # bits above the word width
    bulk(MEM.act, program.input.base, act)
    # a word past the depth wraps (power-of-two depth), then read back with BULK_SEL = desc
    bulk(MEM.act, cfg.act_depth + 200, np.full((1, words.act.chunks), 0xA5A5_A5A5))
    ops += [("w", ADDR.BULK_SEL, MEM.desc), ("w", ADDR.BULK_ADDR, 199)]
    ops += [("r", ADDR.BULK_RDATA)] * (3 * words.act.chunks) + [("r", ADDR.BULK_ADDR)]
    ops += [("w", ADDR.BULK_ADDR, program.input.base)]
    ops += [("r", ADDR.BULK_RDATA)] * (program.input.words * words.act.chunks)
    ops += [("r", ADDR.BULK_ADDR)]
    # a run
    ops += [("w", ADDR.CTRL, BIT.CTRL_START), ("wait",), ("r", ADDR.STATUS), ("irq",),
            ("r", ADDR.LAYERS_DONE), ("r", ADDR.CYCLES)]
    for i in (*range(len(program.layers)), cfg.desc_depth - 1):
        ops += [("w", ADDR.LAYER_SEL, i), ("r", ADDR.LAYER_CYCLES)]
    out = program.output
    ops += [("w", ADDR.BULK_ADDR, out.base)]
    ops += [("r", ADDR.BULK_RDATA)] * (out.words * words.act.chunks)
    ops += [("w", ADDR.CTRL, 0), ("r", ADDR.STATUS), ("w", ADDR.IRQ_ENABLE, 0), ("irq",),
            ("w", ADDR.IRQ_ENABLE, 1), ("irq",), ("w", ADDR.CTRL, BIT.CTRL_CLEAR_DONE),
            ("r", ADDR.STATUS), ("irq",),
            ("w", ADDR.CTRL, BIT.CTRL_START | BIT.CTRL_CLEAR_DONE), ("wait",),
            ("r", ADDR.STATUS), ("r", ADDR.CYCLES), ("r", ADDR.LAYERS_DONE)]
    return ops


async def _replay(ops, read, write, irq, wait):
    seen = []
    for op in ops:
        if op[0] == "r":
            seen.append((op, await read(op[1])))
        elif op[0] == "w":
            await write(op[1], op[2])
        elif op[0] == "irq":
            seen.append((op, int(irq())))
        else:
            await wait()
    return seen


def test_register_trace_on_rtl_equals_golden_device():
    arch = (("conv", 3, 3, 1, 1, True), ("pool",), ("flatten",), ("linear", 2, False))
    _, program, x = case("shift_add", "pot", seed=4, lanes=2, simd=2, shape=(2, 4, 4),
                         arch=arch, n=1, **SMALL)
    ops = _trace(program, x)

    async def on_rtl(dev, ctx, core):
        async def wait():
            await dev.wait_done(timeout_s=1.0, timeout_cycles=program.cycles() + 100)
        return await _replay(ops, dev.read_reg, dev.write_reg, lambda: ctx.get(core.irq), wait)

    rtl = _on_rtl(program.config, on_rtl)
    model = GoldenDevice(program.config)

    async def nothing():
        return None
    gold = asyncio.run(_replay(ops, model.read_reg, model.write_reg,
                                             lambda: model.irq, nothing))
    assert len(gold) == len(rtl) > 100
    diffs = [(op, g, r) for (op, g), (_, r) in zip(gold, rtl, strict=True) if g != r]
    assert diffs == []
    # and the trace did what it meant to: a whole run with DONE seen
    assert (("r", ADDR.STATUS), BIT.STATUS_DONE) in gold
