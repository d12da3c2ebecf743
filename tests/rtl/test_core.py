"""The whole core in Amaranth's simulator: every PE type on small networks with awkward
shapes, outputs equal to hwq.golden and cycle counters equal to the cycle model."""

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.layout import compile, regmap
from hwq.layout.regmap import ADDR, BIT
from hwq.rtl.core import Core
from hwq.rtl.simulation import AmaranthDevice, axil_read, axil_read_resp, axil_write, simulate_core
from hwq.testing import random_inputs, random_network

from ..host.common import unmapped_message
from .streams import run

#: channels not a multiple of lanes (3, 5), K not a multiple of simd (3 inputs, 5 taps*ch),
#: stride 2, padding 1, a pool over an odd size, flatten + linear, mixed widths, sparse tiles
AWKWARD = (("conv", 3, 3, 1, 1, True), ("conv", 5, 3, 2, 1, True), ("pool",), ("flatten",),
           ("linear", 3, False))
SMALL = dict(act_depth=256, weight_depth=512, param_depth=16, desc_depth=8)


def _net(seed, kind, bits, shape=(3, 6, 6), arch=AWKWARD, sparse=0.3, lanes=4, simd=4):
    rng = np.random.default_rng(seed)
    net = random_network(rng, input_shape=shape, arch=arch, kind=kind, bits=bits,
                         per_channel_bits=True, zero_tile_fraction=sparse,
                         zero_tile=(lanes, simd))
    return net, random_inputs(rng, net, 2)


def _check(program, net, x, result):
    np.testing.assert_array_equal(result.outputs, golden.run(net, x))
    model = [layer["cycles"] for layer in program.layers]
    for per_layer, total in zip(result.layer_cycles, result.cycles, strict=True):
        assert per_layer == model
        assert total == program.cycles()


@pytest.mark.parametrize(("pe", "kind", "lanes", "simd"), [
    ("shift_add", "pot", 4, 4),
    ("bit_serial", "int", 4, 4),
    ("bit_serial", "codebook", 2, 4),
    ("multiply", "int", 4, 2),
    ("multiply", "codebook", 4, 4),
])
def test_core_equals_golden_and_cycle_model(pe, kind, lanes, simd):
    net, x = _net(hash((pe, kind)) % 1000, kind, [2, 3, 4], lanes=lanes, simd=simd)
    program = compile(net, CoreConfig(pe=pe, lanes=lanes, simd=simd, **SMALL))
    result = simulate_core(program, x[:1])
    _check(program, net, x[:1], result)


@pytest.mark.parametrize("load", ["bulk", "axis"])
def test_bulk_load_paths_and_back_to_back_runs(load):
    arch = (("conv", 3, 3, 2, 1, True), ("flatten",), ("linear", 2, False))
    net, x = _net(7, "pot", [3, 4], shape=(2, 4, 4), arch=arch, lanes=2, simd=2)
    program = compile(net, CoreConfig(pe="shift_add", lanes=2, simd=2, **SMALL))
    result = simulate_core(program, x, load=load)
    _check(program, net, x, result)


@pytest.mark.parametrize("lanes", [8, 1])
def test_wide_and_narrow_lanes(lanes):
    # the 1x1 conv has one input tile per group: fewer micro-ops than the lanes / simd
    # write-back beats, so the compiler pads its groups
    arch = (("conv", 9, 3, 1, 1, True), ("pool",), ("conv", 3, 1, 1, 0, True), ("flatten",),
            ("linear", 5, False))
    net, x = _net(8, "int", [4], shape=(3, 4, 4), arch=arch, sparse=0.5, lanes=lanes, simd=2)
    program = compile(net, CoreConfig(pe="multiply", lanes=lanes, simd=2,
                                      **{**SMALL, "weight_depth": 2048, "param_depth": 32}))
    _check(program, net, x[:1], simulate_core(program, x[:1]))


def test_registers_irq_and_idle_program():
    cfg = CoreConfig(pe="bit_serial", lanes=2, simd=2, **SMALL)
    net, x = _net(9, "int", [2], shape=(2, 3, 3), arch=(("conv", 2, 1, 1, 0, False),),
                  lanes=2, simd=2)
    program = compile(net, cfg)
    act = {program.input.base + i: v
           for i, v in enumerate(program.words.act.to_ints(program.pack_input(x[:1])[0]))}
    dut = Core(config=cfg, program=program, act_init=act)
    seen = {}

    async def tb(ctx):
        bus = dut.s_axil
        seen["id"] = await axil_read(ctx, bus, ADDR.ID)
        seen["version"] = await axil_read(ctx, bus, ADDR.VERSION)
        seen["fp"] = (await axil_read(ctx, bus, ADDR.FINGERPRINT_LO),
                      await axil_read(ctx, bus, ADDR.FINGERPRINT_HI))
        seen["config0"] = await axil_read(ctx, bus, ADDR.CONFIG0)
        await axil_write(ctx, bus, ADDR.IRQ_ENABLE, 1)
        await axil_write(ctx, bus, ADDR.LAYER_SEL, 0x1234_5603, strb=0b0001)   # byte 0 only
        seen["layer_sel"] = await axil_read(ctx, bus, ADDR.LAYER_SEL)
        await axil_write(ctx, bus, ADDR.CTRL, BIT.CTRL_START)
        seen["busy"] = await axil_read(ctx, bus, ADDR.STATUS)
        for _ in range(2000):
            if ctx.get(dut.irq):
                break
            await ctx.tick()
        seen["irq"] = ctx.get(dut.irq)
        seen["status"] = await axil_read(ctx, bus, ADDR.STATUS)
        seen["layers"] = await axil_read(ctx, bus, ADDR.LAYERS_DONE)
        await axil_write(ctx, bus, ADDR.CTRL, BIT.CTRL_CLEAR_DONE)
        seen["irq_after_clear"] = ctx.get(dut.irq)
        seen["unmapped"] = (await axil_read_resp(ctx, bus, 0xFC),
                            await axil_write(ctx, bus, 0x2C, 1))
        seen["mapped"] = await axil_read_resp(ctx, bus, ADDR.LAYERS_DONE)
        # as a host device: refused before the access, as on every device
        dev = AmaranthDevice(ctx, dut)
        for access in (dev.read_reg(0xFC), dev.write_reg(0x2C, 1)):
            try:
                await access
            except ValueError as exc:
                seen.setdefault("refused", []).append(str(exc))

    run(dut, tb)
    assert seen["id"] == regmap.CORE_ID
    assert seen["version"] == regmap.version_word()
    assert seen["fp"] == regmap.fingerprint_words(cfg.fingerprint())
    assert seen["config0"] == 1 | 2 << 8 | 2 << 20
    assert seen["layer_sel"] == 3                  # 3-bit register, byte 0 written
    assert seen["busy"] & BIT.STATUS_BUSY
    assert seen["irq"] == 1 and seen["status"] == BIT.STATUS_DONE
    assert seen["layers"] == 1 and seen["irq_after_clear"] == 0
    assert seen["unmapped"] == ((0, 0b10), 0b10)            # SLVERR for a read and a write
    assert seen["mapped"] == (1, 0b00)
    assert seen["refused"] == [unmapped_message(0xFC), unmapped_message(0x2C)]


@pytest.mark.slow
@pytest.mark.parametrize(("pe", "kind"), [("shift_add", "pot"), ("bit_serial", "int"),
                                          ("multiply", "int"), ("multiply", "codebook"),
                                          ("bit_serial", "codebook")])
def test_core_larger_networks(pe, kind):
    arch = (("conv", 10, 3, 1, 1, True), ("conv", 12, 3, 2, 1, True), ("pool",),
            ("conv", 7, 1, 1, 0, True), ("flatten",), ("linear", 5, False))
    for lanes, simd in ((4, 4), (8, 4), (2, 8)):
        net, x = _net(10, kind, [2, 3, 4], shape=(5, 9, 9), arch=arch, lanes=lanes, simd=simd)
        program = compile(net, CoreConfig(pe=pe, lanes=lanes, simd=simd, act_depth=512,
                                          weight_depth=2048, param_depth=64, desc_depth=8))
        _check(program, net, x, simulate_core(program, x))


@pytest.mark.parametrize(("pe", "kind", "lanes", "simd"), [
    ("shift_add", "pot", 4, 4),
    ("multiply", "int", 2, 4),
])
def test_a_max_pool_fused_into_the_conv_before_it(pe, kind, lanes, simd):
    # AWKWARD's pool over conv1's 3x3 output (2x2/2: one window, the last row and column in
    # none) runs in conv1's write-back: one descriptor fewer, outputs and counters exact
    net, x = _net(hash((pe, kind)) % 1000, kind, [2, 3, 4], lanes=lanes, simd=simd)
    program = compile(net, CoreConfig(pe=pe, lanes=lanes, simd=simd, pool_words=2, **SMALL))
    assert [layer.get("fused") for layer in program.layers] == [None, "pool2", None]
    assert program.layers[1]["positions"] == 4
    result = simulate_core(program, x[:1])
    _check(program, net, x[:1], result)
