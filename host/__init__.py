"""hwq.host: the runtime that drives the accelerator (simulated, golden, or a real board)."""
