"""cocotb test that runs a Program on the Verilated ``hwq_core`` through the host runtime.

Driven by :func:`hwq.sim.simulate.simulate` through the environment variables
``HWQ_SIM_JOB``: a folder holding ``program.hwqp`` and ``inputs.npy``; the test writes
``results.npz`` (outputs, cycle counters, timings) and ``progress`` (samples done) there;
``HWQ_SIM_FREE_RUN``: cycles of the free-running reference after the batch (unset or 0:
none); and ``HWQ_SIM_MEMORY``: the :class:`~hwq.golden.memory.MemoryTiming` fields (JSON)
of the memory on ``m_axi``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import Timer

from hwq.golden.memory import MemoryTiming
from hwq.host.runtime import Runtime
from hwq.layout.program import Program
from hwq.sim.device import CLOCK_PERIOD_NS, SimDevice


@cocotb.test()
async def run_program(dut) -> None:
    job = Path(os.environ["HWQ_SIM_JOB"])
    program = Program.load(job / "program.hwqp")
    x = np.load(job / "inputs.npy")
    progress_file = job / "progress"

    from cocotb.utils import get_sim_time

    memory = json.loads(os.environ.get("HWQ_SIM_MEMORY") or "{}")
    dev = SimDevice(dut, memory=MemoryTiming(**memory))
    await dev.reset()
    rt = Runtime(dev)
    t0, c0 = time.perf_counter(), get_sim_time("ns")
    await rt.load(program)
    t1, c1 = time.perf_counter(), get_sim_time("ns")

    def progress(i: int) -> None:
        if i % 8 == 7 or i == len(x) - 1:
            progress_file.write_text(str(i + 1))

    result = await rt.infer(x, progress=progress)
    t2, c2 = time.perf_counter(), get_sim_time("ns")
    # the same build with Python idle: one Timer over the free-running GPI clock
    free_run = int(os.environ.get("HWQ_SIM_FREE_RUN") or 0)
    if free_run:
        await Timer(free_run * CLOCK_PERIOD_NS, unit="ns")
    t3 = time.perf_counter()
    np.savez(
        job / "results.npz",
        outputs=result.outputs,
        cycles=result.cycles,
        layer_cycles=result.layer_cycles,
        model_layer_cycles=result.model_layer_cycles,
        stall_cycles=result.stall_cycles,
        ext_beats=result.ext_beats,
        model_is_bound=result.model_is_bound,
        load_seconds=t1 - t0,
        load_cycles=(c1 - c0) // CLOCK_PERIOD_NS,
        infer_seconds=t2 - t1,
        infer_cycles=(c2 - c1) // CLOCK_PERIOD_NS,
        free_run_seconds=t3 - t2,
        free_run_cycles=free_run,
    )
