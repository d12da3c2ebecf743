"""The external-memory lines of hwq sim/flow reports and the per-descriptor report keys."""

from __future__ import annotations

from hwq.sim.flow import _unique
from hwq.sim.simulate import memory_lines

BASE = {"onchip_bytes": {"desc": 512, "weight": 1024, "param": 0, "act": 512},
        "external_bytes": 4096, "bytes_per_inference": 3072.0,
        "stall_cycles_per_inference": 12.0, "latency": 4, "stall": 0.0}


def test_memory_lines_name_what_lives_off_chip():
    assert memory_lines({**BASE, "weights": "onchip", "activations": "onchip"}) == [
        "  every weight and tensor on chip (2.0 KiB of on-chip memories)"]
    line = memory_lines({**BASE, "weights": "external", "activations": ["conv0", "input"]})[0]
    assert line.startswith("  weights and tensors conv0, input in external memory: 4.0 KiB "
                           "image, 3.0 KiB moved per inference, 12 cycles waiting")
    line = memory_lines({**BASE, "weights": "onchip", "activations": ["conv0"]})[0]
    assert line.startswith("  tensors conv0 in external memory")


def test_tiles_of_one_layer_get_keys_of_their_own():
    assert _unique(["load conv0", "conv0", "conv0", "store conv0", "conv0"]) == [
        "load conv0", "conv0", "conv0#2", "store conv0", "conv0#3"]
