"""Runtime on GoldenDevice: outputs equal hwq.golden.run bit for bit, counters equal the
cycle model, and every misuse or misbehaving device gives a clear error."""

import re
import subprocess
import sys

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.errors import CheckFailed
from hwq.hardware import PE_FORMATS
from hwq.host import (
    CoreIdentity,
    Device,
    DeviceError,
    DeviceTimeout,
    GoldenDevice,
    InferenceResult,
    Runtime,
)
from hwq.layout import regmap
from hwq.layout.regmap import ADDR

from .common import case, run


async def _load_infer(device, program, x, **kw):
    rt = Runtime(device, **kw)
    await rt.load(program)
    return await rt.infer(x)


@pytest.mark.parametrize(("pe", "kind"), PE_FORMATS)
@pytest.mark.parametrize(("lanes", "simd"), [(4, 4), (8, 2), (2, 8), (3, 3)])
def test_golden_device_equals_golden_model_and_cycle_model(pe, kind, lanes, simd):
    net, program, x = case(pe, kind, seed=lanes * 10 + simd, lanes=lanes, simd=simd, n=3)
    device = GoldenDevice(program.config)
    result = run(_load_infer(device, program, x))
    np.testing.assert_array_equal(result.outputs, golden.run(net, x))
    assert result.outputs.dtype == np.int64
    model = [int(layer["cycles"]) for layer in program.layers]
    assert result.model_layer_cycles.tolist() == model
    assert result.layer_cycles.tolist() == [model] * 3
    assert result.cycles.tolist() == [program.cycles()] * 3
    assert result.layer_names == [layer["name"] for layer in program.layers]
    assert result.cycle_model_mismatches() == []
    assert result.mismatches(golden.run(net, x)) == 0
    # the model's per-layer facts come from its own memories, not from the Program
    assert [r.cycles for r in device.last_run] == model
    assert [r.kind for r in device.last_run] == [layer["kind"] for layer in program.layers]


def test_default_config_linear_only_and_1d_input():
    arch = (("linear", 9, True), ("linear", 3, False))
    net, program, x = case("multiply", "int", seed=5, shape=(13,), arch=arch, n=4)
    result = run(_load_infer(GoldenDevice(program.config), program, x))
    np.testing.assert_array_equal(result.outputs, golden.run(net, x))
    assert result.outputs.shape == (4, 3)


def test_two_programs_one_after_the_other_on_one_device():
    net_a, prog_a, x_a = case("multiply", "int", seed=1, **{"desc_depth": 8})
    arch = (("conv", 4, 1, 1, 0, True), ("flatten",), ("linear", 2, False))
    net_b, prog_b, x_b = case("multiply", "codebook", seed=2, arch=arch, shape=(2, 3, 3),
                              **{"desc_depth": 8})
    assert prog_a.fingerprint == prog_b.fingerprint
    device = GoldenDevice(prog_a.config)

    async def go():
        rt = Runtime(device)
        await rt.load(prog_a)
        a = await rt.infer(x_a)
        await rt.load(prog_b)   # fewer layers: the stale descriptors after 'last' never run
        b = await rt.infer(x_b)
        await rt.load(prog_a)
        return a, b, await rt.infer(x_a)

    a, b, a2 = run(go())
    np.testing.assert_array_equal(a.outputs, golden.run(net_a, x_a))
    np.testing.assert_array_equal(b.outputs, golden.run(net_b, x_b))
    np.testing.assert_array_equal(a2.outputs, a.outputs)
    assert b.layer_cycles.shape == (2, len(prog_b.layers))


def test_progress_is_called_after_each_sample():
    _, program, x = case("shift_add", "pot", n=3)
    seen = []

    async def go():
        rt = Runtime(GoldenDevice(program.config))
        await rt.load(program)
        await rt.infer(x, progress=seen.append)

    run(go())
    assert seen == [0, 1, 2]


def test_result_check_and_mismatches():
    net, program, x = case("bit_serial", "int")
    result = run(_load_infer(GoldenDevice(program.config), program, x))
    expect = golden.run(net, x)
    result.check(expect)
    bad = expect.copy()
    bad[1, 2] += 1
    bad[0, 0] -= 3
    assert result.mismatches(bad) == 2
    with pytest.raises(CheckFailed, match=re.escape(
            f"2 output value(s) differ from the golden model; first at (0, 0): device "
            f"{expect[0, 0]}, golden {expect[0, 0] - 3}")):
        result.check(bad)
    with pytest.raises(ValueError, match=r"Expected outputs of shape \(2, 3\), not \(3,\)"):
        result.mismatches(expect[0])


def test_cycle_model_mismatches_names_the_layer():
    r = InferenceResult(outputs=np.zeros((2, 1), np.int64), cycles=np.array([10, 10]),
                        layer_cycles=np.array([[3, 7], [3, 8]]),
                        model_layer_cycles=np.array([3, 7]), layer_names=["conv0", "linear1"])
    assert r.cycle_model_mismatches() == ["linear1"]


# ------------------------------------------------------------------ errors
def test_load_refuses_a_program_for_another_config():
    _, program, _ = case("multiply", "int", lanes=4, simd=4)
    other = CoreConfig(pe="multiply", lanes=4, simd=2)
    rt = Runtime(GoldenDevice(other))
    with pytest.raises(DeviceError) as info:
        run(rt.load(program))
    msg = str(info.value)
    assert program.fingerprint in msg and other.fingerprint() in msg
    assert "pe=multiply, lanes=4, simd=2, act_bits=8, weight_bits=4, acc_bits=32" in msg
    assert rt.program is None


def test_preloaded_load_checks_the_core_and_writes_nothing():
    net, program, x = case("shift_add", "pot", seed=6, n=1)
    device = GoldenDevice(program.config)
    rt = Runtime(device)
    run(rt.load(program, preloaded=True))
    assert rt.program is program
    assert all(not mem.any() for mem in device.memories.values())    # nothing written
    for name in ("desc", "weight", "param"):                          # as a bitstream would
        image = program.images[name]
        device.memories[name][:len(image)] = image
    np.testing.assert_array_equal(run(rt.infer(x)).outputs, golden.run(net, x))
    other = Runtime(GoldenDevice(CoreConfig(pe="shift_add", lanes=4, simd=2)))
    with pytest.raises(DeviceError, match=program.fingerprint):
        run(other.load(program, preloaded=True))


class _Patched(GoldenDevice):
    """A GoldenDevice with some registers overridden."""

    def __init__(self, config, **regs):
        super().__init__(config)
        self.regs = {getattr(ADDR, k): v for k, v in regs.items()}

    def read(self, offset):
        return self.regs.get(offset, super().read(offset))


def test_wrong_id_and_wrong_major_version_are_device_errors():
    _, program, _ = case("shift_add", "pot")
    with pytest.raises(DeviceError, match="No hwq core at this device: ID register reads "
                                          "0xdeadbeef, expected 0x48575143"):
        run(Runtime(_Patched(program.config, ID=0xDEADBEEF)).load(program))
    major = regmap.MAP_VERSION[0]
    with pytest.raises(DeviceError, match=re.escape(
            f"Core register map version {major + 1}.0 is not supported by this host "
            f"(speaks {major}.x)")):
        run(Runtime(_Patched(program.config, VERSION=(major + 1) << 16)).load(program))
    # a newer minor version is compatible
    run(Runtime(_Patched(program.config, VERSION=major << 16 | 7)).load(program))


def test_identify_reads_every_identity_register():
    cfg = CoreConfig(pe="bit_serial", lanes=8, simd=2, act_bits=6, weight_bits=5, acc_bits=30)
    ident = run(GoldenDevice(cfg).identify())
    lo, hi = regmap.fingerprint_words(cfg.fingerprint())
    assert ident == CoreIdentity(core_id=regmap.CORE_ID, version=regmap.version_word(),
                                 fingerprint=cfg.fingerprint(), config0=1 | 8 << 8 | 2 << 20,
                                 config1=6 | 5 << 8 | 30 << 16)
    assert int(ident.fingerprint, 16) == hi << 32 | lo
    assert ident.describe() == ("pe=bit_serial, lanes=8, simd=2, act_bits=6, weight_bits=5, "
                                "acc_bits=30")


class _IgnoresStart(GoldenDevice):
    def write(self, offset, value):
        if offset != ADDR.CTRL:
            super().write(offset, value)


def test_a_core_that_never_finishes_times_out():
    _, program, x = case("shift_add", "pot")
    with pytest.raises(DeviceTimeout, match=r"The core did not finish within 0\.05 s "
                                            r"\(golden device\)"):
        run(_load_infer(_IgnoresStart(program.config), program, x, timeout_s=0.05))


def test_a_program_without_last_descriptor_hangs_the_model_until_reset():
    _, program, x = case("shift_add", "pot")
    desc = program.images["desc"].copy()
    lay = program.words.desc
    fields = lay.unpack(desc)
    fields["last"][:] = 0
    unterminated = type(program)(config=program.config,
                                 images={**program.images, "desc": lay.pack(len(desc), **fields)},
                                 input=program.input, output=program.output,
                                 layers=program.layers)
    device = GoldenDevice(program.config)
    # filler after the program: 1x1 pools of word 0 into word 1, forever
    device.memories["desc"][len(desc):] = lay.pack(1, kind=1, out_h=1, out_w=1, in_ct=1,
                                                   out_base=1, kernel_h=1, kernel_w=1, in_h=1,
                                                   in_w=1)
    with pytest.raises(DeviceTimeout):
        run(_load_infer(device, unterminated, x, timeout_s=0.02))
    assert device.read(ADDR.STATUS) == 1                      # BUSY, never DONE
    with pytest.raises(DeviceError, match="The core is busy with an earlier run"):
        run(device.start())
    device.reset()
    assert device.read(ADDR.STATUS) == 0
    np.testing.assert_array_equal(run(_load_infer(device, program, x)).outputs,
                                  run(_load_infer(GoldenDevice(program.config), program,
                                                  x)).outputs)


class _StopsEarly(GoldenDevice):
    def read(self, offset):
        value = super().read(offset)
        return value - 1 if offset == ADDR.LAYERS_DONE else value


def test_a_core_that_skips_layers_is_a_device_error():
    _, program, x = case("multiply", "int")
    n = len(program.layers)
    with pytest.raises(DeviceError, match=f"The core finished {n - 1} layer\\(s\\) of the "
                                          f"program's {n} \\(golden device\\)"):
        run(_load_infer(_StopsEarly(program.config), program, x))


def test_infer_before_load_is_a_clear_error():
    rt = Runtime(GoldenDevice(CoreConfig(pe="multiply")))
    with pytest.raises(RuntimeError, match=re.escape(
            "No program loaded: call Runtime.load(program) first")):
        run(rt.infer(np.zeros((1, 3), np.int64)))


def test_bad_inputs():
    _, program, x = case("multiply", "int")
    rt = Runtime(GoldenDevice(program.config))
    run(rt.load(program))
    with pytest.raises(ValueError, match=re.escape(
            "Network input must have shape (N, 3, 6, 6) with N >= 1, not (3, 6, 6)")):
        run(rt.infer(x[0]))
    with pytest.raises(ValueError, match=re.escape("with N >= 1, not (0, 3, 6, 6)")):
        run(rt.infer(x[:0]))
    with pytest.raises(ValueError, match=re.escape(
            "Network input values must be in -128..127 (8-bit signed activations), not 128")):
        run(rt.infer(np.full_like(x, 128)))
    with pytest.raises(ValueError, match=re.escape("in -128..127 (8-bit signed activations), "
                                                   "not -129")):
        run(rt.infer(np.full_like(x, -129)))
    with pytest.raises(TypeError, match="Network input must be an integer array, not dtype "
                                        "float64"):
        run(rt.infer(x.astype(float)))


def test_bad_runtime_arguments():
    dev = GoldenDevice(CoreConfig(pe="multiply"))
    with pytest.raises(TypeError, match="Runtime needs a hwq.host.Device, not str"):
        Runtime("golden")
    with pytest.raises(ValueError, match="Timeout must be a positive number of seconds, not 0"):
        Runtime(dev, timeout_s=0)
    with pytest.raises(TypeError, match="Runtime.load needs a hwq Program, not dict"):
        run(Runtime(dev).load({}))
    with pytest.raises(TypeError, match="GoldenDevice needs a hwq CoreConfig, not str"):
        GoldenDevice("multiply")


def test_load_refuses_an_image_larger_than_its_memory():
    _, program, _ = case("multiply", "int", weight_depth=512)
    big = type(program)(config=program.config,
                        images={**program.images,
                                "weight": np.zeros((513, program.words.weight.chunks),
                                                   np.uint32)},
                        input=program.input, output=program.output, layers=program.layers)
    with pytest.raises(ValueError, match="Program weight image has 513 words, the core's "
                                         "weight memory holds 512"):
        run(Runtime(GoldenDevice(program.config)).load(big))


def test_device_is_an_async_context_manager():
    async def go():
        async with GoldenDevice(CoreConfig(pe="shift_add")) as dev:
            assert isinstance(dev, Device)
            return await dev.read_reg(ADDR.ID)
    assert run(go()) == regmap.CORE_ID


def test_host_never_imports_amaranth_or_cocotb():
    code = ("import sys, hwq.host, hwq.host.device, hwq.host.golden, hwq.host.mmio, "
            "hwq.host.runtime; print(sorted(m for m in ('amaranth', 'cocotb', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
