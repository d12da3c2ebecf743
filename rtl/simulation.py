"""Drive :class:`~hwq.rtl.core.Core` in Amaranth's Python simulator.

For tests and debugging: AXI4-Lite reads and writes from an async testbench, the core as a
host :class:`~hwq.host.device.Device` (:class:`AmaranthDevice`), and :func:`simulate_core`,
which runs one or more inputs through the host runtime and returns the outputs and the
cycle counters read from the core's registers. (The fast
path for whole networks is Verilator, in ``hwq.sim``.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from hwq.host.device import Device, DeviceError, DeviceTimeout, check_offset, check_value
from hwq.host.runtime import InferenceResult, Runtime
from hwq.layout.program import Program
from hwq.layout.regmap import ADDR, BIT, MEM
from hwq.rtl.axi_memory import AxiMemory
from hwq.rtl.core import Core

__all__ = ["AmaranthDevice", "CoreRun", "axil_read", "axil_read_resp", "axil_write",
           "simulate_core"]


def _check_resp(what: str, offset: int, resp: int) -> None:
    if resp != 0:
        raise DeviceError(f"The simulated core answered the {what} of {offset:#04x} with "
                          f"response {resp:#04b}, not OKAY (0b00)")


async def axil_write(ctx, bus, addr: int, value: int, strb: int = 0xF) -> int:
    """One AXI4-Lite write; returns its response (``bresp``: 0 OKAY, 2 SLVERR)."""
    ctx.set(bus.awaddr, addr)
    ctx.set(bus.wdata, value & 0xFFFF_FFFF)
    ctx.set(bus.wstrb, strb)
    ctx.set(bus.awvalid, 1)
    ctx.set(bus.wvalid, 1)
    ctx.set(bus.bready, 1)
    while not ctx.get(bus.awready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(bus.awvalid, 0)
    ctx.set(bus.wvalid, 0)
    while not ctx.get(bus.bvalid):
        await ctx.tick()
    resp = ctx.get(bus.bresp)
    await ctx.tick()
    ctx.set(bus.bready, 0)
    return int(resp)


async def axil_read(ctx, bus, addr: int) -> int:
    """One AXI4-Lite read: its data (see :func:`axil_read_resp`)."""
    return (await axil_read_resp(ctx, bus, addr))[0]


async def axil_read_resp(ctx, bus, addr: int) -> tuple[int, int]:
    """One AXI4-Lite read: ``(rdata, rresp)`` (``rresp``: 0 OKAY, 2 SLVERR)."""
    ctx.set(bus.araddr, addr)
    ctx.set(bus.arvalid, 1)
    ctx.set(bus.rready, 1)
    while not ctx.get(bus.arready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(bus.arvalid, 0)
    while not ctx.get(bus.rvalid):
        await ctx.tick()
    value, resp = ctx.get(bus.rdata), ctx.get(bus.rresp)
    await ctx.tick()
    ctx.set(bus.rready, 0)
    return int(value), int(resp)


class AmaranthDevice(Device):
    """The core in Amaranth's simulator as a :class:`hwq.host.Device`, for a testbench.

    Registers go over AXI4-Lite (:func:`axil_read`, :func:`axil_write`); bulk words through
    ``BULK_WDATA`` (the :class:`~hwq.host.device.Device` default) or, with
    ``stream_bulk=True``, as beats on the ``s_axis`` port, one per cycle; :meth:`wait_done`
    polls ``STATUS`` every 16 cycles for at most ``timeout_cycles`` cycles.

    Parameters
    ----------
    ctx : amaranth.sim testbench context
    core : Core
        the simulated core.
    stream_bulk : bool
        write bulk words through ``s_axis`` rather than ``BULK_WDATA``.
    memory : AxiMemory, optional
        the memory model on the core's ``m_axi`` port (its testbench runs beside).
    """

    name = "amaranth"

    def __init__(self, ctx, core: Core, *, stream_bulk: bool = False,
                 memory: AxiMemory | None = None) -> None:
        self.ctx, self.core, self.stream_bulk = ctx, core, stream_bulk
        self.memory = memory
        if memory is not None and not memory.stall:
            self.memory_latency = memory.latency

    async def write_external(self, image: np.ndarray) -> int:
        if self.memory is None:
            return await super().write_external(image)
        return self.memory.load(image)

    async def read_reg(self, offset: int) -> int:
        """One AXI4-Lite read; ValueError for an unmapped offset (checked before the
        access, as on every device), DeviceError if the core answers other than OKAY."""
        off = check_offset(offset)
        value, resp = await axil_read_resp(self.ctx, self.core.s_axil, off)
        _check_resp("read", off, resp)
        return value

    async def write_reg(self, offset: int, value: int) -> None:
        """One AXI4-Lite write (errors as :meth:`read_reg`)."""
        off = check_offset(offset)
        _check_resp("write", off, await axil_write(self.ctx, self.core.s_axil, off,
                                                   check_value(value)))

    async def write_words(self, memory: str, base: int, words: np.ndarray) -> None:
        if not self.stream_bulk:
            await super().write_words(memory, base, words)
            return
        ctx, axis = self.ctx, self.core.s_axis
        await self.write_reg(ADDR.BULK_SEL, getattr(MEM, memory))
        await self.write_reg(ADDR.BULK_ADDR, base)
        ctx.set(axis.tvalid, 1)
        for chunk in np.asarray(words, dtype=np.uint32).ravel():
            ctx.set(axis.tdata, int(chunk))
            while True:
                *_, ready = await ctx.tick().sample(axis.tready)
                if ready:
                    break
        ctx.set(axis.tvalid, 0)

    async def wait_done(self, *, timeout_s: float, timeout_cycles: int | None = None) -> None:
        for _ in range((timeout_cycles or 100_000) // 16 + 1):
            if (await self.read_reg(ADDR.STATUS)) & BIT.STATUS_DONE:
                return
            await self.ctx.tick().repeat(16)
        raise DeviceTimeout("The simulated core did not finish within "
                            f"{timeout_cycles or 100_000} cycles")


@dataclass
class CoreRun:
    """Result of :func:`simulate_core`: outputs ``(N, *shape)`` and per-run cycle counts;
    ``run_seconds`` is the wall time of the simulation itself (elaboration left out)."""

    outputs: np.ndarray
    cycles: list[int]
    layer_cycles: list[list[int]]
    run_seconds: float = 0.0
    model_layer_cycles: list[int] | None = None
    stall_cycles: list[int] | None = None


def simulate_core(program: Program, x: object, *, load: str = "init",
                  vcd: str | None = None, latency: int = 4, stall: float = 0.0,
                  seed: int = 0) -> CoreRun:
    """Run ``program`` on inputs ``x`` (``(N, *input.shape)``) in the Python simulator,
    through the host runtime (:class:`~hwq.host.runtime.Runtime` over an
    :class:`AmaranthDevice`), the loop every backend runs.

    ``load="init"`` preloads the images into the memories (fast; the runtime then only
    checks the core's identity); ``"bulk"`` writes them through ``BULK_WDATA``
    (AXI4-Lite), ``"axis"`` through the ``s_axis`` port. Inputs go through the bulk path
    (``s_axis`` with ``"axis"``). A core with ``m_axi`` gets an :class:`AxiMemory` of
    ``latency``, ``stall`` and ``seed`` that holds the external image.
    """
    if load not in ("init", "bulk", "axis"):
        raise ValueError(f"Load must be one of init, bulk, axis, not {load!r}")
    cfg = program.config
    if cfg.dsp != "inferred":
        raise ValueError(f"The Python simulator cannot run dsp={cfg.dsp!r} (vendor DSP block "
                         "instances); use dsp='inferred', or Verilator (hwq.sim.simulate)")
    preload = load == "init"
    core = Core(config=cfg, program=program if preload else None)
    out: dict[str, InferenceResult] = {}
    memory = (AxiMemory(core.m_axi, data_bits=cfg.ext_bits, latency=latency, stall=stall,
                            seed=seed) if cfg.external else None)

    async def testbench(ctx):
        runtime = Runtime(AmaranthDevice(ctx, core, stream_bulk=load == "axis", memory=memory))
        await runtime.load(program, preloaded=preload)
        out["result"] = await runtime.infer(x)

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if memory is not None:
        sim.add_testbench(memory.testbench, background=True)
    t0 = time.perf_counter()
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    seconds = time.perf_counter() - t0
    result = out["result"]
    return CoreRun(outputs=result.outputs, cycles=result.cycles.tolist(),
                   layer_cycles=result.layer_cycles.tolist(), run_seconds=seconds,
                   model_layer_cycles=result.model_layer_cycles.tolist(),
                   stall_cycles=result.stall_cycles.tolist())
