"""MmioDevice against a file-backed fake: a regular file of the window size, mmapped."""

import asyncio
import mmap
import re
import struct

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.host import DeviceError, DeviceTimeout, GoldenDevice, MmioDevice, Runtime
from hwq.host.mmio import WINDOW
from hwq.layout import regmap
from hwq.layout.regmap import ADDR, BIT

from .common import case, run, unmapped, unmapped_message


@pytest.fixture
def window(tmp_path):
    path = tmp_path / "uio0"
    path.write_bytes(bytes(WINDOW))
    return path


def _word(path, offset, base=0):
    return struct.unpack_from("<I", path.read_bytes(), base + offset)[0]


def test_window_is_the_decoded_register_space():
    assert WINDOW == 1 << regmap.ADDR_WIDTH == 256


def test_writes_land_little_endian_at_their_offsets(window):
    async def go():
        dev = MmioDevice(window)
        await dev.write_reg(ADDR.BULK_ADDR, 0x1122_3344)
        await dev.write_reg(ADDR.CTRL, BIT.CTRL_START)
        await dev.write_reg(ADDR.CONFIG1, 0xFFFF_FFFF)
        got = (await dev.read_reg(ADDR.BULK_ADDR), await dev.read_reg(ADDR.CONFIG1))
        await dev.close()
        return got

    assert run(go()) == (0x1122_3344, 0xFFFF_FFFF)
    data = window.read_bytes()
    expect = bytearray(WINDOW)
    expect[0x34:0x38] = b"\x44\x33\x22\x11"
    expect[0x10:0x14] = b"\x01\x00\x00\x00"
    expect[0x44:0x48] = b"\xff\xff\xff\xff"
    assert data == bytes(expect)


def test_identify_reads_what_the_core_put_in_the_window(window):
    cfg = CoreConfig(pe="shift_add", lanes=8, simd=4)
    lo, hi = regmap.fingerprint_words(cfg.fingerprint())
    data = bytearray(WINDOW)
    for off, value in ((ADDR.ID, regmap.CORE_ID), (ADDR.VERSION, regmap.version_word()),
                       (ADDR.FINGERPRINT_LO, lo), (ADDR.FINGERPRINT_HI, hi),
                       (ADDR.CONFIG0, 0 | 8 << 8 | 4 << 20), (ADDR.CONFIG1, 8 | 4 << 8)):
        struct.pack_into("<I", data, off, value)
    window.write_bytes(bytes(data))
    dev = MmioDevice(window)
    ident = run(dev.identify())
    ident.check()
    assert (ident.core_id, ident.version, ident.fingerprint) == (
        0x4857_5143, regmap.version_word(), cfg.fingerprint())
    assert ident.describe() == ("pe=shift_add, lanes=8, simd=4, act_bits=8, weight_bits=4, "
                                "acc_bits=0")
    assert window.read_bytes() == bytes(data)             # reads changed nothing
    run(dev.close())


def test_a_window_at_a_page_offset(tmp_path):
    path = tmp_path / "mem"
    path.write_bytes(bytes(2 * mmap.PAGESIZE))
    dev = MmioDevice(path, base=mmap.PAGESIZE)
    run(dev.write_reg(ADDR.LAYER_SEL, 0xA1B2_C3D4))
    run(dev.close())
    assert _word(path, ADDR.LAYER_SEL, base=mmap.PAGESIZE) == 0xA1B2_C3D4
    assert path.read_bytes().count(0) == 2 * mmap.PAGESIZE - 4


def test_bad_offsets_values_and_a_closed_device(window):
    dev = MmioDevice(window)
    for bad in (-4, 1, 0x36, WINDOW, 0x1000):
        with pytest.raises(ValueError, match="Register offset must be a multiple of 4 in "
                                             "0..0xfc, not"):
            run(dev.read_reg(bad))
        with pytest.raises(ValueError, match="Register offset must be a multiple of 4"):
            run(dev.write_reg(bad, 0))
    # unmapped: the core would answer SLVERR, which the mapping cannot see (an external
    # abort on an ARM host): refused before any access
    for bad in unmapped():
        for access in (dev.read_reg(bad), dev.write_reg(bad, 0)):
            with pytest.raises(ValueError, match=re.escape(unmapped_message(bad))):
                run(access)
    for bad in (-1, 1 << 32):
        with pytest.raises(ValueError, match=f"Register value must be a 32-bit unsigned "
                                             f"integer \\(0..0xffffffff\\), not {bad}"):
            run(dev.write_reg(ADDR.CTRL, bad))
    with pytest.raises(TypeError, match="Register value must be an integer, not '1'"):
        run(dev.write_reg(ADDR.CTRL, "1"))
    assert window.read_bytes() == bytes(WINDOW)           # nothing was written
    run(dev.close())
    run(dev.close())                                      # idempotent
    assert dev.closed
    with pytest.raises(DeviceError, match=re.escape(f"MmioDevice on {window} is closed")):
        run(dev.read_reg(ADDR.ID))


def test_opening_errors(tmp_path):
    missing = tmp_path / "no" / "uio7"
    with pytest.raises(FileNotFoundError, match=re.escape(f"No MMIO device at {missing}")):
        MmioDevice(missing)
    short = tmp_path / "short"
    short.write_bytes(bytes(WINDOW - 4))
    with pytest.raises(DeviceError, match=re.escape(f"Cannot map 256 bytes of {short} at "
                                                    "offset 0x0")):
        MmioDevice(short)
    with pytest.raises(ValueError, match=f"MMIO base must be a page-aligned byte offset "
                                         f"\\(a multiple of {mmap.ALLOCATIONGRANULARITY}\\), "
                                         f"not 256"):
        MmioDevice(short, base=256)


def test_wait_done_times_out_when_done_never_comes(window):
    dev = MmioDevice(window)
    with pytest.raises(DeviceTimeout, match=r"The core did not finish within 0\.05 s "
                                            r"\(mmio device\)"):
        run(dev.wait_done(timeout_s=0.05))
    with pytest.raises(ValueError, match="Timeout must be a positive number of seconds, "
                                         "not 0"):
        run(dev.wait_done(timeout_s=0))
    run(dev.close())


def test_wait_done_returns_once_the_core_sets_done(window):
    async def go():
        dev = MmioDevice(window)

        async def core():
            await asyncio.sleep(0.05)
            with open(window, "r+b") as f, mmap.mmap(f.fileno(), WINDOW) as m:
                struct.pack_into("<I", m, ADDR.STATUS, BIT.STATUS_DONE)

        task = asyncio.create_task(core())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await dev.wait_done(timeout_s=5.0)
        await task
        await dev.close()
        return loop.time() - t0

    assert 0.05 <= run(go()) < 2.0


class _FakeCore:
    """The far side of the window: a GoldenDevice that sees only the file's bytes.

    A plain file cannot signal an access, so the two strobes a bus gives a slave are
    called explicitly: ``on_write(offset)`` after the host's store (the core takes the
    word from the file through its own mapping), ``on_read(offset)`` before the host's
    load (the core puts the register's value into the file). What the host sends and
    receives still travels only through the mapped bytes, at the offsets and byte order
    MmioDevice chose.
    """

    def __init__(self, path, config):
        self.model = GoldenDevice(config)
        self._file = open(path, "r+b")   # noqa: SIM115 - closed in close()
        self._map = mmap.mmap(self._file.fileno(), WINDOW)

    def on_write(self, offset):
        self.model.write(offset, struct.unpack_from("<I", self._map, offset)[0])

    def on_read(self, offset):
        struct.pack_into("<I", self._map, offset, self.model.read(offset))

    def close(self):
        self._map.close()
        self._file.close()


class _WiredMmioDevice(MmioDevice):
    def __init__(self, path, fake):
        super().__init__(path)
        self.fake = fake

    async def read_reg(self, offset):
        self.fake.on_read(offset)
        return await super().read_reg(offset)

    async def write_reg(self, offset, value):
        await super().write_reg(offset, value)
        self.fake.on_write(offset)


def test_runtime_through_mmio_on_a_fake_core(window):
    net, program, x = case("bit_serial", "codebook", seed=11, lanes=4, simd=2, n=2)
    fake = _FakeCore(window, program.config)

    async def go():
        async with _WiredMmioDevice(window, fake) as dev:
            rt = Runtime(dev, timeout_s=2.0)
            await rt.load(program)
            return await rt.infer(x)

    try:
        result = run(go())
    finally:
        fake.close()
    np.testing.assert_array_equal(result.outputs, golden.run(net, x))
    assert result.layer_cycles.tolist() == [[layer["cycles"] for layer in program.layers]] * 2
    assert result.cycles.tolist() == [program.cycles()] * 2
    # the core really got the program through the window
    np.testing.assert_array_equal(fake.model.memories["weight"][:len(program.images["weight"])],
                                  program.images["weight"])


def test_the_external_image_goes_into_the_buffer_the_core_reads(window, tmp_path):
    buffer = tmp_path / "udmabuf0"
    buffer.write_bytes(bytes(3 * mmap.ALLOCATIONGRANULARITY))
    image = np.arange(1, 2 * 13 + 1, dtype=np.uint32).reshape(13, 2) * 0x01010101

    async def go(**kw):
        async with MmioDevice(window, **kw) as dev:
            return await dev.write_external(image)

    page = mmap.ALLOCATIONGRANULARITY
    assert run(go(ext_buffer=buffer, ext_offset=page, ext_address=0x3000_0000)) == 0x3000_0000
    data = buffer.read_bytes()
    assert data[page:page + image.nbytes] == image.astype("<u4").tobytes()
    assert not any(data[:page]) and not any(data[page + image.nbytes:])
    with pytest.raises(DeviceError, match="has no external memory for the core's m_axi port"):
        run(go())
    with pytest.raises(ValueError, match="An external buffer needs its 32-bit bus address "
                                         r"\(ext_address\), not None"):
        run(go(ext_buffer=buffer))
    with pytest.raises(ValueError, match="External buffer offset must be page aligned"):
        run(go(ext_buffer=buffer, ext_offset=100, ext_address=0))
    with pytest.raises(FileNotFoundError, match="No external buffer at .*nothing"):
        run(go(ext_buffer=tmp_path / "nothing", ext_address=0))
