"""hwq.rtl: Amaranth generators for the accelerator (PEs, MAC arrays, core) and Verilog emission."""
