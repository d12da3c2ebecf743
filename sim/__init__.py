"""hwq.sim: Verilator builds (cached), cocotb testbenches and the ``simulate()`` API.

``from hwq.sim import simulate`` (also ``from hwq.sim.simulate import simulate``).
"""

from hwq.sim.simulate import SimResult, simulate

__all__ = ["SimResult", "simulate"]
