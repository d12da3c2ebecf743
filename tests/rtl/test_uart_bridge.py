# amaranth: UnusedElaboratable=no
"""UART, UART → AXI4-Lite bridge and SerialDevice, on Amaranth's simulator over a pty.

The host side is the real :class:`hwq.host.serial.SerialDevice` (pyserial on a
pseudo-terminal); :class:`hwq.sim.uart_pty.PtyUart` turns its bytes into bits on the
simulated pins, and can drop or corrupt chosen bytes.
"""

import re

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hwq.host.serial import LinkError, SerialDevice
from hwq.layout import link
from hwq.layout.link import Op
from hwq.layout.regmap import ADDR
from hwq.rtl.uart import UartRx, UartTx
from hwq.rtl.uart_bridge import UartBridge, UartHostLink, crc_algorithm
from hwq.sim.uart_pty import PtyUart
from tests.rtl.link_target import LinkTarget, run_link

DIV = 4
BURST = 16
# generous for a loaded machine: a simulated 16-word burst and its reply take about 0.4 s of
# wall time here unloaded, several seconds on a busy machine (only a lost reply byte waits it out)
HOST = dict(timeout_s=10.0, settle_s=0.2)


def test_crc_is_the_protocols_on_both_sides():
    rng = np.random.default_rng(0)
    assert link.crc16(b"123456789") == 0x29B1  # CRC-16/IBM-3740 check value
    algo = crc_algorithm()(data_width=8)
    for n in (1, 5, 300):
        data = bytes(rng.integers(0, 256, n, dtype=np.uint8))
        assert algo.compute(data) == link.crc16(data)


def test_uart_loopback_every_byte_value():
    tx, rx = UartTx(divider=5), UartRx(divider=5)
    m = Module()
    m.submodules.tx, m.submodules.rx = tx, rx
    m.d.comb += rx.rx.eq(tx.tx)
    sim = Simulator(m)
    sim.add_clock(1e-8)
    got = []

    async def source(ctx):
        for value in range(256):
            ctx.set(tx.i.payload, value)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def sink(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < 256:
            await ctx.tick()
            if ctx.get(rx.o.valid):
                got.append(ctx.get(rx.o.payload))

    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert got == list(range(256))


@pytest.mark.parametrize("kwargs, message", [
    (dict(divider=3), "UART divider must be at least 4 clock cycles per bit, not 3"),
    (dict(divider=4, max_burst=12), "Max burst must be a power of two in 1..256 words, not 12"),
    (dict(divider=4, max_burst=512), "Max burst must be a power of two in 1..256 words, not 512"),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        UartBridge(**kwargs)


def _bench():
    hl, target = UartHostLink(divider=DIV, max_burst=BURST), LinkTarget()
    m = Module()
    m.submodules.link, m.submodules.target = hl, target
    wiring.connect(m, hl.m_axil, target.s_axil)
    return m, hl, target


def test_registers_bursts_and_hello_through_the_link():
    m, hl, target = _bench()
    words = np.arange(1, 41, dtype=np.uint32).reshape(40, 1) * 0x01010101

    async def host(port):
        dev = SerialDevice(port, **HOST)
        assert dev.hello == {"version": link.PROTOCOL_VERSION, "max_burst": BURST,
                             "divider": DIV}
        await dev.write_reg(ADDR.LAYER_SEL, 0xDEADBEEF)
        seen = [await dev.read_reg(ADDR.LAYER_SEL), await dev.read_reg(ADDR.ID)]
        await dev.write_words("act", 0, words)           # 3 bursts into BULK_WDATA
        back = await dev.read_words("act", 0, 40, 1)      # re-addressed bursts of BULK_RDATA
        dev._command(Op.WRITE_INCR, 0xC0, data=[7, 8, 9], retry=True)
        seen += dev._command(Op.READ_INCR, 0xC0, count=3, retry=True)
        # a burst longer than the bridge's buffer is refused, and nothing is written
        with pytest.raises(LinkError, match=re.escape("failed after 1 attempt(s): the bridge "
                                                      "refused the request: BAD_LEN")):
            dev.retries = 0
            dev._command(Op.WRITE_INCR, 0xC0, data=[0] * (BURST + 1), retry=True)
        # an unknown op (a read: bit 0 clear, so no data) is refused
        dev._ser.write(link._framed(bytes([link.SYNC_REQUEST, 0x06, 99, 0, 0])))
        reply = dev._ser.read(link.REPLY_OVERHEAD)
        with pytest.raises(link.FrameError, match="BAD_OP"):
            link.decode_reply(reply, Op.READ, 99)
        stats = dict(dev.stats)
        await dev.close()
        return seen, back, stats

    out = run_link(m, hl, host, divider=DIV, probe=target.writes)
    seen, back, stats = out["result"]
    assert seen == [0xDEADBEEF, 0x4857_5143, 7, 8, 9]
    np.testing.assert_array_equal(back, words)
    assert stats["retries"] == 0
    # 1 + BULK_SEL, BULK_ADDR + 40 chunks + BULK_SEL + 3 BULK_ADDR + 3: no more, no fewer
    assert out["probe"] == 1 + 2 + 40 + 1 + 3 + 3


# byte indices counted on the line: HELLO (request 7 bytes, reply 10), then the test's
# write of LAYER_SEL (request 11 bytes from index 7, reply 6 from index 10) and its read (request
# 7 bytes from index 18, reply 10 from index 16)
@pytest.mark.parametrize("faults", [
    dict(drop={"to_device": [9]}),         # the write's SEQ byte never arrives
    dict(corrupt={"to_device": [14]}),     # a data byte of the write: CRC fails
    dict(corrupt={"to_device": [11]}),     # the write's LEN byte: a longer frame, timeout
    dict(drop={"to_host": [12]}),          # the write's reply is short: repeated, not redone
    dict(corrupt={"to_host": [15]}),       # the write's reply CRC fails: repeated, not redone
    dict(corrupt={"to_host": [20]}),       # a data byte of the read's reply
])
def test_dropped_and_corrupted_bytes_are_detected_and_repeated(faults):
    m, hl, target = _bench()

    async def host(port):
        dev = SerialDevice(port, **HOST)
        await dev.write_reg(ADDR.LAYER_SEL, 0x0BADF00D)
        value = await dev.read_reg(ADDR.LAYER_SEL)
        stats = dict(dev.stats)
        await dev.close()
        return value, stats

    out = run_link(m, hl, host, divider=DIV, pty=PtyUart(**faults), probe=target.writes)
    value, stats = out["result"]
    assert value == 0x0BADF00D
    assert stats == {"commands": 3, "retries": 1}
    assert out["probe"] == 1  # the write ran exactly once


def test_a_link_that_keeps_failing_is_one_clear_error():
    m, hl, target = _bench()

    async def host(port):
        dev = SerialDevice(port, retries=1, **HOST)
        with pytest.raises(LinkError) as info:
            await dev.write_reg(ADDR.LAYER_SEL, 1)
        messages = [str(info.value)]
        # a BULK_RDATA read has a side effect: a damaged reply is not read twice
        with pytest.raises(LinkError) as info:
            await dev.read_reg(ADDR.BULK_RDATA)
        messages.append(str(info.value))
        await dev.close()
        return messages

    # both tries of the write lose their SEQ byte (request bytes 7..17, 18..28); a data byte
    # of the BULK_RDATA reply (after HELLO's 10 bytes and two 6-byte error replies) is corrupted
    pty = PtyUart(drop={"to_device": [9, 20]}, corrupt={"to_host": [26]})
    out = run_link(m, hl, host, divider=DIV, pty=pty, probe=target.writes)
    write, read = out["result"]
    assert write.startswith(f"Serial link {pty.port}: WRITE of 1 word(s) at 0x20 failed after 2 "
                            "attempt(s): the bridge refused the request: FRAME_TIMEOUT")
    assert read == (f"Serial link {pty.port}: READ of 1 word(s) at 0x3c failed and was not "
                    "repeated (a read with a side effect): reply CRC does not check (a byte was corrupted "
                    "on the line)")
    assert out["probe"] == 0


def test_no_bridge_on_the_port_is_one_clear_error(tmp_path):
    pty = PtyUart()
    try:
        with pytest.raises(LinkError, match=f"^No hwq UART bridge answers on {pty.port} at "
                                            "3000000 baud: Serial link"):
            SerialDevice(pty.port, retries=0, timeout_s=0.2, settle_s=0.05)
    finally:
        pty.close()
    with pytest.raises(LinkError, match="^Cannot open serial port /nonexistent/tty"):
        SerialDevice("/nonexistent/tty")
