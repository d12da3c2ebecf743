"""``SimDevice``: the Verilated ``hwq_core`` inside cocotb, as a :class:`hwq.host.Device`.

Registers go over AXI4-Lite through cocotbext-axi (``AxiLiteMaster`` on the ``s_axil__*``
ports); bulk words go over the core's AXI-Stream port (``s_axis__tdata/valid/ready``),
one 32-bit chunk per cycle; the host waits for DONE on the ``irq`` line with a cycle
timeout. The clock runs inside the simulator (a GPI clock), so between a START and DONE
Python does nothing at all: the core runs the whole network from its own memories.
"""

from __future__ import annotations

import logging

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from hwq.golden.memory import AXI_RAM_LATENCY, MemoryTiming
from hwq.host.device import Device, DeviceError, DeviceTimeout, check_offset, check_value
from hwq.layout.regmap import ADDR, BIT, MEM

CLOCK_PERIOD_NS = 10


def _check_resp(what: str, offset: int, resp: object) -> None:
    if int(resp) != 0:
        raise DeviceError(f"The simulated core answered the {what} of {offset:#04x} with "
                          f"{getattr(resp, 'name', resp)}, not OKAY")


class SimDevice(Device):
    """A simulated core. Create inside a cocotb test, then ``await dev.reset()``.

    Parameters
    ----------
    dut : cocotb handle of ``hwq_core``
    stream_bulk : bool
        write bulk words through ``s_axis`` (default) rather than ``BULK_WDATA``.
    memory : MemoryTiming, optional
        the memory on a core's ``m_axi`` port: a cocotbext-axi ``AxiRam`` from byte 0, whose
        read latency is :data:`hwq.golden.memory.AXI_RAM_LATENCY` (``latency`` must be
        that), with ``stall`` as the pause probability of its channels.
    """

    name = "sim"

    def __init__(self, dut, *, stream_bulk: bool = True,
                 memory: MemoryTiming | None = None) -> None:
        self.dut = dut
        self.stream_bulk = stream_bulk
        self.memory = memory or MemoryTiming(latency=AXI_RAM_LATENCY)
        if self.memory.latency != AXI_RAM_LATENCY:
            raise ValueError(f"The cocotb memory (AxiRam) has a read latency of "
                             f"{AXI_RAM_LATENCY} cycles, not {self.memory.latency}")
        self.memory_latency = self.memory.fixed_latency
        self.ram: AxiRam | None = None
        self.clock = Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns")
        self.clock.start()
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        # cocotbext-axi logs every transfer at INFO: thousands of lines per image
        for channel in (self.axil.write_if, self.axil.read_if):
            channel.log.setLevel(logging.WARNING)
        dut.s_axis__tvalid.value = 0
        dut.s_axis__tdata.value = 0
        self._irq_enabled = False

    async def write_external(self, image: np.ndarray) -> int:
        """The image into an ``AxiRam`` on ``m_axi``, from byte 0."""
        if not hasattr(self.dut, "m_axi__arvalid"):
            return await super().write_external(image)
        data = np.ascontiguousarray(image, dtype="<u4").tobytes()
        if self.ram is None:
            self.ram = AxiRam(AxiBus.from_prefix(self.dut, "m_axi_"), self.dut.clk,
                              self.dut.rst, size=max(4096, 1 << (len(data) - 1).bit_length()))
            ram = self.ram
            channels = (ram.read_if.ar_channel, ram.read_if.r_channel, ram.write_if.aw_channel,
                        ram.write_if.w_channel, ram.write_if.b_channel)
            for channel in channels:
                channel.log.setLevel(logging.WARNING)
            for log in (ram.read_if.log, ram.write_if.log):
                log.setLevel(logging.WARNING)
            if self.memory.stall:
                rng = np.random.default_rng(self.memory.seed)
                for channel in channels:
                    channel.set_pause_generator(_pauses(rng, self.memory.stall))
        self.ram.write(0, data)
        return 0

    async def write_external_at(self, offset: int, chunks: np.ndarray) -> None:
        if self.ram is None:
            return await super().write_external_at(offset, chunks)
        self.ram.write(offset, np.ascontiguousarray(chunks, dtype="<u4").tobytes())

    async def read_external(self, offset: int, count: int) -> np.ndarray:
        if self.ram is None:
            return await super().read_external(offset, count)
        return np.frombuffer(self.ram.read(offset, 4 * count), dtype="<u4").astype(np.uint32)

    async def reset(self, cycles: int = 4) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def read_reg(self, offset: int) -> int:
        """One AXI4-Lite read; ValueError for an unmapped offset (checked before the
        access, as on every device), DeviceError if the core answers other than OKAY."""
        off = check_offset(offset)
        resp = await self.axil.read(off, 4)
        _check_resp("read", off, resp.resp)
        return int.from_bytes(resp.data, "little")

    async def write_reg(self, offset: int, value: int) -> None:
        """One AXI4-Lite write (errors as :meth:`read_reg`)."""
        off = check_offset(offset)
        resp = await self.axil.write(off, check_value(value).to_bytes(4, "little"))
        _check_resp("write", off, resp.resp)

    async def write_words(self, memory: str, base: int, words: np.ndarray) -> None:
        if not self.stream_bulk:
            await super().write_words(memory, base, words)
            return
        await self.write_reg(ADDR.BULK_SEL, getattr(MEM, memory))
        await self.write_reg(ADDR.BULK_ADDR, base)
        dut = self.dut
        clk = dut.clk
        chunks = np.asarray(words, dtype=np.uint32).reshape(-1).tolist()
        dut.s_axis__tvalid.value = 1
        for chunk in chunks:
            dut.s_axis__tdata.value = chunk
            while True:
                await RisingEdge(clk)
                if dut.s_axis__tready.value:
                    break
        dut.s_axis__tvalid.value = 0

    async def wait_done(self, *, timeout_s: float, timeout_cycles: int | None = None) -> None:
        """Wait on the ``irq`` line (enabled here) for at most ``timeout_cycles`` cycles."""
        if not self._irq_enabled:
            await self.write_reg(ADDR.IRQ_ENABLE, BIT.IRQ_ENABLE_DONE)
            self._irq_enabled = True
        if self.dut.irq.value:
            return
        # one Timer, not a count of clock edges: Python sleeps while the core runs
        cycles = timeout_cycles or 10_000_000
        limit = Timer(cycles * CLOCK_PERIOD_NS, unit="ns")
        fired = await First(RisingEdge(self.dut.irq), limit)
        if fired is limit:
            raise DeviceTimeout(f"The simulated core did not raise DONE within {cycles} cycles")
        await RisingEdge(self.dut.clk)


def _pauses(rng: np.random.Generator, p: float):
    """An endless pause pattern: each cycle paused with probability ``p``."""
    while True:
        yield bool(rng.random() < p)
