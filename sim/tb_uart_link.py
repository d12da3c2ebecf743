"""cocotb test: a Program runs on the Verilated ``hwq_linked`` through ``SerialDevice``.

Driven by :func:`hwq.sim.uart_link.simulate_uart` through ``HWQ_UART_JOB``, a folder holding
``program.hwqp``, ``inputs.npy`` and ``params.json`` (``divider``, ``faults``, host
timeouts). The host (``Runtime`` over :class:`hwq.host.serial.SerialDevice` on a
pseudo-terminal) runs in a thread; this coroutine moves one UART bit each way per bit period
(:class:`hwq.sim.uart_pty.PtyUart`). Writes ``results.npz`` or ``error.txt``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import traceback
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer

from hwq.host.runtime import Runtime
from hwq.host.serial import SerialDevice
from hwq.layout.program import Program
from hwq.sim.uart_pty import PtyUart

CLOCK_PERIOD_NS = 10


@cocotb.test()
async def run_over_uart(dut) -> None:
    job = Path(os.environ["HWQ_UART_JOB"])
    params = json.loads((job / "params.json").read_text())
    program = Program.load(job / "program.hwqp")
    x = np.load(job / "inputs.npy")
    divider = int(params["divider"])
    pty = PtyUart(**params.get("faults", {}))
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    box: dict = {}

    async def host() -> None:
        dev = SerialDevice(pty.port, timeout_s=params["timeout_s"], settle_s=params["settle_s"])
        try:
            rt = Runtime(dev, timeout_s=params["run_timeout_s"])
            t0 = time.perf_counter()
            await rt.load(program)
            t1 = time.perf_counter()
            result = await rt.infer(x)
            box.update(result=result, load_s=t1 - t0, infer_s=time.perf_counter() - t1,
                       stats=dict(dev.stats), failures=list(dev.failures))
        finally:
            await dev.close()

    def thread() -> None:
        try:
            asyncio.run(host())
        except BaseException as exc:
            box["error"] = f"{type(exc).__name__}: {exc}"
            box["traceback"] = traceback.format_exc()

    worker = threading.Thread(target=thread, daemon=True)
    worker.start()
    period = Timer(divider * CLOCK_PERIOD_NS, unit="ns")
    bits = 0
    while worker.is_alive():
        dut.rx.value = pty.step(int(dut.tx.value))
        await period
        bits += 1
    worker.join()
    pty.close()
    if "error" in box:
        (job / "error.txt").write_text(box["error"] + "\n" + box["traceback"])
        return
    r = box["result"]
    np.savez(job / "results.npz", outputs=r.outputs, cycles=r.cycles,
             layer_cycles=r.layer_cycles, model_layer_cycles=r.model_layer_cycles,
             load_s=box["load_s"], infer_s=box["infer_s"], sim_cycles=bits * divider,
             commands=box["stats"]["commands"], retries=box["stats"]["retries"],
             failures=np.array(box["failures"], dtype=str))
