"""Shared assertion of the Verilator core tests: a run equals golden and the cycle model."""

from __future__ import annotations

import numpy as np

import hwq.golden as golden


def assert_exact_run(sim, program, net, x) -> None:
    """``sim`` (a simulation result of ``program`` on inputs ``x``): outputs equal
    ``golden.run(net, x)``, every layer counter and the total equal the cycle model."""
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    np.testing.assert_array_equal(sim.layer_cycles,
                                  np.broadcast_to(sim.model_layer_cycles, sim.layer_cycles.shape))
    np.testing.assert_array_equal(sim.cycles, np.full(len(x), program.cycles()))
    assert sim.cycle_model_mismatches() == []
