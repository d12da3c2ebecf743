"""GoldenDevice register by register (the RTL-equivalence test replays traffic on both)."""

import re

import numpy as np
import pytest

from hwq.config import CoreConfig
from hwq.golden import run as golden_run
from hwq.host import DeviceError, GoldenDevice
from hwq.layout import regmap
from hwq.layout.regmap import ADDR, BIT, MEM

from .common import SMALL, case, run, unmapped, unmapped_message

CFG = CoreConfig(pe="multiply", lanes=4, simd=2, act_bits=8, weight_bits=4, **SMALL)


def test_constant_registers():
    dev = GoldenDevice(CFG)
    lo, hi = regmap.fingerprint_words(CFG.fingerprint())
    assert dev.read(ADDR.ID) == 0x4857_5143
    assert dev.read(ADDR.VERSION) == regmap.MAP_VERSION[0] << 16 | regmap.MAP_VERSION[1]
    assert (dev.read(ADDR.FINGERPRINT_LO), dev.read(ADDR.FINGERPRINT_HI)) == (lo, hi)
    assert dev.read(ADDR.CONFIG0) == 2 | 4 << 8 | 2 << 20
    assert dev.read(ADDR.CONFIG1) == 8 | 4 << 8 | 32 << 16
    for name in ("ID", "VERSION", "FINGERPRINT_LO", "CONFIG0", "CYCLES", "STATUS",
                 "LAYERS_DONE", "LAYER_CYCLES"):
        before = dev.read(getattr(ADDR, name))
        dev.write(getattr(ADDR, name), 0x1234_5678)      # read-only: ignored
        assert dev.read(getattr(ADDR, name)) == before


def test_power_on_state_and_write_only_registers():
    dev = GoldenDevice(CFG)
    for name in ("STATUS", "IRQ_ENABLE", "CYCLES", "LAYER_SEL", "LAYER_CYCLES", "LAYERS_DONE",
                 "BULK_SEL", "BULK_ADDR", "CTRL", "BULK_WDATA"):
        assert dev.read(getattr(ADDR, name)) == 0, name


def test_unmapped_offsets_are_one_clear_error_and_change_nothing():
    # the RTL answers SLVERR (tests/rtl/test_axil.py); every device refuses the access
    dev = GoldenDevice(CFG)
    dev.write(ADDR.LAYER_SEL, 3)
    for off in unmapped():
        msg = "^" + re.escape(unmapped_message(off)) + "$"
        with pytest.raises(ValueError, match=msg):
            dev.read(off)
        with pytest.raises(ValueError, match=msg):
            dev.write(off, 0xFFFF_FFFF)
        with pytest.raises(ValueError, match=msg):
            run(dev.read_reg(off))
    assert dev.read(ADDR.LAYER_SEL) == 3
    assert dev.read(ADDR.CTRL) == dev.read(ADDR.BULK_WDATA) == 0    # mapped write-only


def test_rw_registers_keep_their_implemented_bits():
    dev = GoldenDevice(CFG)              # desc_depth 8: LAYER_SEL has 3 bits
    dev.write(ADDR.LAYER_SEL, 0xFFFF_FFFD)
    dev.write(ADDR.BULK_SEL, 0xFFFF_FFF6)
    dev.write(ADDR.IRQ_ENABLE, 0xFFFF_FFFE)
    dev.write(ADDR.BULK_ADDR, 0xFFFF_FFFF)
    assert dev.read(ADDR.LAYER_SEL) == 5
    assert dev.read(ADDR.BULK_SEL) == 2
    assert dev.read(ADDR.IRQ_ENABLE) == 0
    assert dev.read(ADDR.BULK_ADDR) == 0xFFFF_FFFF


def test_bad_offsets_and_values():
    dev = GoldenDevice(CFG)
    for bad in (-4, 2, 0x101, 0x100, 1 << 40):
        with pytest.raises(ValueError, match="Register offset must be a multiple of 4 in "
                                             "0..0xfc, not"):
            dev.read(bad)
    with pytest.raises(ValueError, match=r"Register value must be a 32-bit unsigned integer "
                                         r"\(0..0xffffffff\), not -1"):
        dev.write(ADDR.LAYER_SEL, -1)
    with pytest.raises(ValueError, match="not 4294967296"):
        run(dev.write_reg(ADDR.LAYER_SEL, 1 << 32))
    with pytest.raises(TypeError, match="Register value must be an integer, not 1.5"):
        dev.write(ADDR.LAYER_SEL, 1.5)
    with pytest.raises(TypeError, match="Register offset must be an integer, not '0x10'"):
        dev.read("0x10")


def test_bulk_write_assembles_chunks_and_advances_per_word():
    dev = GoldenDevice(CFG)
    chunks = dev.words.weight.chunks
    assert chunks >= 2
    top = dev.words.weight.width - 32 * (chunks - 1)
    dev.write(ADDR.BULK_SEL, MEM.weight)
    dev.write(ADDR.BULK_ADDR, 10)
    words = np.arange(1, 2 * chunks + 1, dtype=np.uint32).reshape(2, chunks) * 0x0101_0101
    words[1, -1] = 0xFFFF_FFFF                           # bits above the word width drop
    for c in words[0, :-1]:
        dev.write(ADDR.BULK_WDATA, int(c))
    assert dev.read(ADDR.BULK_ADDR) == 10                 # not a whole word yet
    assert not dev.memories["weight"][10].any()
    dev.write(ADDR.BULK_WDATA, int(words[0, -1]))
    assert dev.read(ADDR.BULK_ADDR) == 11
    for c in words[1]:
        dev.write(ADDR.BULK_WDATA, int(c))
    assert dev.read(ADDR.BULK_ADDR) == 12
    np.testing.assert_array_equal(dev.memories["weight"][10], words[0])
    np.testing.assert_array_equal(dev.memories["weight"][11, :-1], words[1, :-1])
    assert dev.memories["weight"][11, -1] == (1 << top) - 1
    # writing BULK_ADDR restarts the chunk count
    dev.write(ADDR.BULK_ADDR, 20)
    dev.write(ADDR.BULK_WDATA, 7)
    dev.write(ADDR.BULK_ADDR, 20)
    for c in words[0]:
        dev.write(ADDR.BULK_WDATA, int(c))
    np.testing.assert_array_equal(dev.memories["weight"][20], words[0])
    assert not dev.memories["weight"][[9, 12, 19, 21]].any()


def test_bulk_addresses_wrap_at_the_address_bits_and_drop_past_the_depth():
    dev = GoldenDevice(CoreConfig(pe="multiply", lanes=4, simd=2, param_depth=20))
    assert dev.memories["param"].shape[0] == 20           # 5 address bits, 20 words
    chunks = dev.words.param.chunks
    dev.write(ADDR.BULK_SEL, MEM.param)
    dev.write(ADDR.BULK_ADDR, 32 + 3)                     # wraps to word 3
    for _ in range(chunks):
        dev.write(ADDR.BULK_WDATA, 0x55)
    dev.write(ADDR.BULK_ADDR, 25)                         # 25 < 32 but >= 20: dropped
    for _ in range(chunks):
        dev.write(ADDR.BULK_WDATA, 0x66)
    assert dev.read(ADDR.BULK_ADDR) == 26
    assert dev.memories["param"][3].tolist() == [0x55] * chunks
    assert int(np.count_nonzero(dev.memories["param"])) == chunks


def test_bulk_read_returns_act_chunks_whatever_bulk_sel_is():
    cfg = CoreConfig(pe="multiply", lanes=4, simd=8, act_bits=8, **SMALL)   # 64-bit act words
    dev = GoldenDevice(cfg)
    assert dev.words.act.chunks == 2
    dev.memories["act"][5:8] = [[1, 2], [3, 4], [5, 6]]
    dev.write(ADDR.BULK_SEL, MEM.desc)
    dev.write(ADDR.BULK_ADDR, 5)
    assert [dev.read(ADDR.BULK_RDATA) for _ in range(3)] == [1, 2, 3]
    assert dev.read(ADDR.BULK_ADDR) == 6                  # half-way through word 6
    dev.write(ADDR.BULK_ADDR, 7)
    assert [dev.read(ADDR.BULK_RDATA) for _ in range(2)] == [5, 6]
    assert dev.read(ADDR.BULK_ADDR) == 8
    np.testing.assert_array_equal(run(dev.read_words("act", 5, 3, 2)), [[1, 2], [3, 4], [5, 6]])
    with pytest.raises(ValueError, match="Only the act memory can be read back through "
                                         "BULK_RDATA, not 'weight'"):
        run(dev.read_words("weight", 0, 1, 2))


def test_write_words_checks_its_arguments():
    dev = GoldenDevice(CFG)
    with pytest.raises(ValueError, match="Memory must be one of desc, weight, param, act, "
                                         "not 'acts'"):
        run(dev.write_words("acts", 0, np.zeros((1, 1), np.uint32)))
    with pytest.raises(ValueError, match=r"Words must be an integer array \(n, chunks\), not "
                                         r"uint32 of shape \(3,\)"):
        run(dev.write_words("act", 0, np.zeros(3, np.uint32)))
    with pytest.raises(ValueError, match="Word chunks must be 32-bit unsigned integers"):
        run(dev.write_words("act", 0, np.full((1, 1), -1)))


def test_start_done_clear_done_irq_and_counters():
    net, program, x = case("multiply", "int", lanes=4, simd=2, **SMALL)
    dev = GoldenDevice(program.config)

    async def load_and_input():
        for name in ("desc", "weight", "param"):
            await dev.write_words(name, 0, program.images[name])
        await dev.write_words("act", program.input.base, program.pack_input(x[:1])[0])

    run(load_and_input())
    dev.write(ADDR.IRQ_ENABLE, 1)
    assert dev.read(ADDR.STATUS) == 0 and not dev.irq
    dev.write(ADDR.CTRL, BIT.CTRL_START)
    assert dev.read(ADDR.STATUS) == BIT.STATUS_DONE and dev.irq
    model = [layer["cycles"] for layer in program.layers]
    assert dev.read(ADDR.CYCLES) == program.cycles() == sum(model)
    assert dev.read(ADDR.LAYERS_DONE) == len(model)
    assert run(dev.cycles(len(model))) == (program.cycles(), model)
    dev.write(ADDR.LAYER_SEL, len(model))                # never run: 0
    assert dev.read(ADDR.LAYER_CYCLES) == 0
    dev.write(ADDR.CTRL, 0)                              # no command
    assert dev.read(ADDR.STATUS) == BIT.STATUS_DONE      # sticky
    dev.write(ADDR.IRQ_ENABLE, 0)
    assert not dev.irq
    dev.write(ADDR.CTRL, BIT.CTRL_CLEAR_DONE)
    assert dev.read(ADDR.STATUS) == 0
    out = program.output
    words = run(dev.read_words("act", out.base, out.words, dev.words.act.chunks))
    np.testing.assert_array_equal(program.unpack_output(words[None]), golden_run(net, x[:1]))
    # START and CLEAR_DONE together: a new run that ends DONE
    dev.write(ADDR.CTRL, BIT.CTRL_START | BIT.CTRL_CLEAR_DONE)
    assert dev.read(ADDR.STATUS) == BIT.STATUS_DONE


def test_descriptors_pointing_outside_the_memories_are_a_device_error():
    dev = GoldenDevice(CFG)
    lay = dev.words.desc
    dev.memories["desc"][0] = lay.pack(1, last=1, out_h=1, out_w=1, w_base=3, w_last=2)[0]
    with pytest.raises(DeviceError, match="GoldenDevice: the core's memories hold an invalid "
                                          "program .Descriptor 0: micro-ops 3..2 are not "
                                          "within the 512 words of the weight image."):
        dev.write(ADDR.CTRL, BIT.CTRL_START)
