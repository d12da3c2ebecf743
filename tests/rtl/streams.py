"""Stream drivers for Amaranth testbenches: a source with random stalls, a sink with random
back-pressure. Separate testbenches, as amaranth/lib tests do."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator


async def send(ctx, port, payloads, rng: np.random.Generator, stall: float = 0.3) -> None:
    """Drive ``payloads`` (Consts or ints) into ``port``, idling with probability ``stall``."""
    for payload in payloads:
        while rng.random() < stall:
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        while True:
            # sample at the clock edge: ready may depend on the sink in this same cycle
            *_, ready = await ctx.tick().sample(port.ready)
            if ready:
                break
    ctx.set(port.valid, 0)


#: Cycles :func:`receive` waits for one beat before it fails the test (a DUT that stops
#: early must fail, not hang).
BEAT_TIMEOUT = 10_000


async def receive(ctx, port, n: int, rng: np.random.Generator, stall: float = 0.3) -> list:
    """Take ``n`` beats from ``port``, refusing with probability ``stall`` each cycle."""
    out = []
    waited = 0
    while len(out) < n:
        ready = rng.random() >= stall
        ctx.set(port.ready, int(ready))
        *_, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if ready and valid:
            out.append(payload)
            waited = 0
        else:
            waited += 1
            if waited > BEAT_TIMEOUT:
                raise AssertionError(f"stream stopped after {len(out)} of {n} beats "
                                     f"({BEAT_TIMEOUT} cycles without one)")
    ctx.set(port.ready, 0)
    return out


def run(dut, *testbenches) -> None:
    top = Module()                      # an explicit sync domain, also for comb-only blocks
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()
