"""Drive :class:`~hwq.rtl.core.Core` in Amaranth's Python simulator.

For tests and debugging: AXI4-Lite reads and writes from an async testbench, loading a
Program through the bulk path, and :func:`simulate_core`, which runs one or more inputs
and returns the outputs and the cycle counters read from the core's registers. (The fast
path for whole networks is Verilator, in ``hwq.sim``.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from hwq.layout.program import Program
from hwq.layout.regmap import ADDR, BIT, MEM
from hwq.rtl.core import Core

__all__ = ["CoreRun", "axil_read", "axil_write", "axis_write", "bulk_read", "bulk_write",
           "simulate_core"]


async def axil_write(ctx, bus, addr: int, value: int, strb: int = 0xF) -> None:
    """One AXI4-Lite write; returns after the response."""
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
    await ctx.tick()
    ctx.set(bus.bready, 0)


async def axil_read(ctx, bus, addr: int) -> int:
    """One AXI4-Lite read."""
    ctx.set(bus.araddr, addr)
    ctx.set(bus.arvalid, 1)
    ctx.set(bus.rready, 1)
    while not ctx.get(bus.arready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(bus.arvalid, 0)
    while not ctx.get(bus.rvalid):
        await ctx.tick()
    value = ctx.get(bus.rdata)
    await ctx.tick()
    ctx.set(bus.rready, 0)
    return int(value)


async def bulk_write(ctx, bus, memory: int, addr: int, words: np.ndarray) -> None:
    """Write ``words`` (``(n, chunks)`` uint32) to a memory through ``BULK_WDATA``."""
    await axil_write(ctx, bus, ADDR.BULK_SEL, memory)
    await axil_write(ctx, bus, ADDR.BULK_ADDR, addr)
    for chunk in np.asarray(words, dtype=np.uint32).ravel():
        await axil_write(ctx, bus, ADDR.BULK_WDATA, int(chunk))


async def bulk_read(ctx, bus, addr: int, n: int, chunks: int) -> np.ndarray:
    """Read ``n`` activation words from ``addr`` through ``BULK_RDATA``."""
    await axil_write(ctx, bus, ADDR.BULK_SEL, MEM.act)
    await axil_write(ctx, bus, ADDR.BULK_ADDR, addr)
    out = [await axil_read(ctx, bus, ADDR.BULK_RDATA) for _ in range(n * chunks)]
    return np.asarray(out, dtype=np.uint32).reshape(n, chunks)


async def axis_write(ctx, core: Core, memory: int, addr: int, words: np.ndarray) -> None:
    """Write ``words`` to a memory as beats on the ``s_axis`` bulk port (one per cycle)."""
    await axil_write(ctx, core.s_axil, ADDR.BULK_SEL, memory)
    await axil_write(ctx, core.s_axil, ADDR.BULK_ADDR, addr)
    ctx.set(core.s_axis.tvalid, 1)
    for chunk in np.asarray(words, dtype=np.uint32).ravel():
        ctx.set(core.s_axis.tdata, int(chunk))
        while True:
            *_, ready = await ctx.tick().sample(core.s_axis.tready)
            if ready:
                break
    ctx.set(core.s_axis.tvalid, 0)


@dataclass
class CoreRun:
    """Result of :func:`simulate_core`: outputs ``(N, *shape)`` and per-run cycle counts;
    ``run_seconds`` is the wall time of the simulation itself (elaboration left out)."""

    outputs: np.ndarray
    cycles: list[int]
    layer_cycles: list[list[int]]
    run_seconds: float = 0.0


def simulate_core(program: Program, x: object, *, load: str = "init",
                  timeout: int = 1_000_000, vcd: str | None = None) -> CoreRun:
    """Run ``program`` on inputs ``x`` (``(N, *input.shape)``) in the Python simulator.

    ``load="init"`` preloads the images into the memories (fast); ``"bulk"`` writes them
    through ``BULK_WDATA`` (AXI4-Lite), ``"axis"`` through the ``s_axis`` port. Inputs go
    the same way, except the first one with ``"init"`` (preloaded).
    """
    if load not in ("init", "bulk", "axis"):
        raise ValueError(f"Load must be one of init, bulk, axis, not {load!r}")
    cfg = program.config
    if cfg.dsp != "inferred":
        raise ValueError(f"The Python simulator cannot run dsp={cfg.dsp!r} (vendor DSP block "
                         "instances); use dsp='inferred', or Verilator (hwq.sim.simulate)")
    words = program.words
    packed = program.pack_input(x)
    n = packed.shape[0]
    act_ints = words.act.to_ints(packed[0])
    preload = load == "init"
    core = Core(config=cfg, program=program if preload else None,
                act_init={program.input.base + i: v for i, v in enumerate(act_ints)}
                if preload else None)
    outs: list[np.ndarray] = []
    cycles: list[int] = []
    layer_cycles: list[list[int]] = []
    n_layers = len(program.layers)

    async def testbench(ctx):
        bus = core.s_axil
        async def put(memory: int, addr: int, image: np.ndarray) -> None:
            if load == "axis":
                await axis_write(ctx, core, memory, addr, image)
            else:
                await bulk_write(ctx, bus, memory, addr, image)

        if not preload:
            for name in ("desc", "weight", "param"):
                await put(getattr(MEM, name), 0, program.images[name])
        for k in range(n):
            if k > 0 or not preload:
                await put(MEM.act, program.input.base, packed[k])
            await axil_write(ctx, bus, ADDR.CTRL, BIT.CTRL_START)
            for _ in range(timeout):
                if ctx.get(core.irq) or (await axil_read(ctx, bus, ADDR.STATUS)) & \
                        BIT.STATUS_DONE:
                    break
                await ctx.tick().repeat(16)
            else:
                raise TimeoutError(f"core did not finish within {timeout} polls")
            cycles.append(await axil_read(ctx, bus, ADDR.CYCLES))
            per_layer = []
            for i in range(n_layers):
                await axil_write(ctx, bus, ADDR.LAYER_SEL, i)
                await ctx.tick()
                per_layer.append(await axil_read(ctx, bus, ADDR.LAYER_CYCLES))
            layer_cycles.append(per_layer)
            out = program.output
            outs.append(await bulk_read(ctx, bus, out.base, out.words, words.act.chunks))

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    t0 = time.perf_counter()
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    seconds = time.perf_counter() - t0
    outputs = program.unpack_output(np.stack(outs))
    return CoreRun(outputs=outputs, cycles=cycles, layer_cycles=layer_cycles,
                   run_seconds=seconds)
