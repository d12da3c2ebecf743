"""hwq.sim: Verilator builds (cached), cocotb testbenches and the ``simulate()`` API."""
