"""cocotb testbench of ``hwq doctor``'s self-check design (:class:`hwq.sim.doctor.DoctorAdder`).

Runs inside the simulator. The design registers ``a + b`` (8-bit inputs, 9-bit sum) on each
rising clock edge and clears the sum on reset. Inputs change on falling edges and the sum is
read on the next falling edge, one rising edge later, so every check is exact.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

#: Edge cases first (0, carries out of bit 7, all ones), then pseudo-random pairs.
_rng = random.Random(2026)
VECTORS: list[tuple[int, int]] = [(0, 0), (1, 2), (255, 1), (128, 128), (255, 255), (0, 255)]
VECTORS += [(_rng.randrange(256), _rng.randrange(256)) for _ in range(26)]


@cocotb.test()
async def registered_sum(dut) -> None:
    """Reset clears ``sum``; afterwards ``sum`` is ``a + b`` of the previous cycle, exactly."""
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.a.value = 200
    dut.b.value = 100
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    assert int(dut.sum.value) == 0, f"sum is {int(dut.sum.value)} in reset, expected 0"

    dut.rst.value = 0
    for a, b in VECTORS:
        dut.a.value = a
        dut.b.value = b
        await FallingEdge(dut.clk)
        got = int(dut.sum.value)
        assert got == a + b, f"{a} + {b}: sum is {got}, expected {a + b}"
