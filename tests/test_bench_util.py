"""hwq bench util: per-layer utilization from the cycle model, Fmax from hwq bench hw."""

import json

import numpy as np
import pytest

from hwq.bench.util import bench_util, format_util, network_util, routed_fmax
from hwq.cli import main
from hwq.ir import Conv2d, Flatten, Linear, MaxPool2d, QuantizedNetwork, Requant, WeightSpec


def _requant(c: int) -> Requant:
    return Requant(bias=np.zeros(c, np.int64), M=np.full(c, 1 << 20), S=np.full(c, 30),
                   lo=0, hi=127)


def _net() -> QuantizedNetwork:
    # 16 conv channels: two groups of 8 lanes, so the max pool fuses (a fused position
    # takes two cycles or more)
    w1 = np.ones((16, 1, 3, 3), np.int64)
    w1[0, 0, 0, 0] = 0                                   # one zero weight
    return QuantizedNetwork(input_shape=(1, 6, 6), act_bits=8, input_scale=1.0, ops=[
        Conv2d(name="conv", weight=w1, spec=WeightSpec("int", 4), requant=_requant(16)),
        MaxPool2d(name="pool"), Flatten(name="flat"),
        Linear(name="fc", weight=np.ones((8, 64), np.int64), spec=WeightSpec("int", 4),
               requant=_requant(8))])


def test_network_util_per_layer():
    r = network_util(_net(), pe="multiply", lanes=8, simd=8)
    conv, fc = r["layers"]      # the max pool runs in the conv's write-back: no row, 0 cycles
    # conv: 16 positions (4 pooled x 4 taps) x 144 weights; input in im2col order,
    # ceil(9 / 8) = 2 micro-ops per group, 2 groups, and the fused pool's registered write
    # (1 cycle)
    cycles = 16 * 2 * 2 + 24 + 1
    assert (conv["name"], conv["macs"], conv["nonzero"]) == ("conv", 16 * 144, 16 * 143)
    assert (conv["cycles"], conv["fused"]) == (cycles, "pool")
    assert conv["utilization"] == 16 * 144 / 64 / cycles
    assert conv["nonzero_utilization"] == 16 * 143 / 64 / cycles
    # fc: 4 positions of 16 channels, two words each
    assert (fc["macs"], fc["cycles"]) == (512, 8 + 24)
    assert r["cycles"] == conv["cycles"] + fc["cycles"]
    assert r["utilization"] == (16 * 144 + 512) / 64 / r["cycles"]
    assert "| conv | conv2d + pool pool | 2304 |" in format_util(
        {"lanes": 8, "simd": 8, "rows": [{**r, "network": "t", "pe": "multiply",
                                           "inferences_per_s": None}]})


def test_routed_fmax_of_the_core_row(tmp_path):
    rows = [{"scope": "array", "pe": "shift_add", "shape": "8x8", "fmax_mhz": 200.0},
            {"scope": "core", "pe": "shift_add", "shape": "8x8", "dsp_kind": "inferred",
             "fmax_mhz": 107.5},
            {"scope": "core", "pe": "multiply", "shape": "8x8", "dsp_kind": "ecp5",
             "fmax_mhz": 101.0}]
    path = tmp_path / "hw.json"
    path.write_text(json.dumps({"rows": rows}))
    assert routed_fmax(path, "shift_add", 8, 8) == 107.5
    assert routed_fmax(path, "multiply", 8, 8) is None
    assert routed_fmax(path, "shift_add", 4, 4) is None
    assert routed_fmax(tmp_path / "missing.json", "shift_add", 8, 8) is None


def test_bench_util_rejects_bad_arguments(capsys):
    with pytest.raises(ValueError, match="Network must be one of digits, lenet5, resnet8, "
                                         "sepnet, not 'vgg'"):
        bench_util(networks=("vgg",))
    with pytest.raises(ValueError, match="PE type must be one of shift_add, bit_serial, "
                                         "multiply, not 'mac'"):
        bench_util(pes=("mac",))
    with pytest.raises(ValueError, match="Fmax must be a positive number of MHz, not -1"):
        bench_util(fmax=-1)
    assert main(["bench", "util", "--pe", "mac", "-o", "/tmp/unused.json"]) == 2
    assert "argument --pe: invalid choice: 'mac'" in capsys.readouterr().err
