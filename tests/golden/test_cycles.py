import numpy as np
import pytest

from hwq.config import CoreConfig
from hwq.golden import cycles
from hwq.layout.compiler import network_cycles
from hwq.testing import random_network


def test_conv_and_linear_tiles():
    # (groups, KH, KW, channel tiles, lanes, simd): channels padded per tap to whole words
    tiles = cycles.weight_tiles(np.ones((10, 17, 3, 3), np.int64), lanes=4, simd=8)
    assert tiles.shape == (3, 3, 3, 3, 4, 8)
    assert int(tiles.sum()) == 10 * 17 * 9
    assert cycles.weight_tiles(np.ones((2, 130, 1, 1), np.int64), 4, 8).shape[3] == 17


def test_min_group_steps():
    assert cycles.min_group_steps(8, 8) == 1
    assert cycles.min_group_steps(2, 8) == 1
    assert cycles.min_group_steps(8, 2) == 4


def test_matmul_cycles_formula():
    ov = cycles.Overheads(matmul=10)
    # 16 positions, groups of 9, 0 (floored to 1) and 4 micro-ops
    assert cycles.matmul_cycles(positions=16, steps=[9, 0, 4], lanes=4, simd=4,
                                overheads=ov) == 16 * 14 + 10
    # lanes > simd: every group costs at least lanes / simd, plus the last write-back
    assert cycles.matmul_cycles(positions=2, steps=[1, 5], lanes=8, simd=2,
                                overheads=ov) == 2 * (4 + 5) + 10 + 3


def test_tile_planes():
    t = np.zeros((2, 2, 2))
    t[0] = [[3, -1], [0, 0]]            # 3 bits, planes 0, 1, 2
    t[1] = [[4, 2], [0, 6]]             # 4 bits, planes 1, 2 (no sign plane, no plane 0)
    bits, planes = cycles.tile_planes(t)
    assert bits.tolist() == [3, 4]
    assert planes.sum(axis=-1).tolist() == [3, 2]
    assert cycles.tile_planes(np.zeros((1, 2, 2)))[0].tolist() == [0]
    assert cycles.tile_planes(np.full((1, 1, 1), -128))[0].tolist() == [8]


def test_group_steps_per_pe():
    tiles = np.zeros((2, 1, 1, 2, 2, 2), dtype=np.int64)     # 2 groups, 2 tiles each
    tiles[0, 0, 0, 0] = [[1, -2], [3, 0]]                    # 3 bits: planes 0, 1, 2
    tiles[1, 0, 0, 1] = [[1, 1], [1, 1]]                     # 2 bits: plane 0
    assert cycles.group_steps("multiply", tiles).tolist() == [1, 1]
    assert cycles.group_steps("bit_serial", tiles).tolist() == [3, 1]
    with pytest.raises(ValueError, match="PE type must be one of shift_add, bit_serial, "
                                         "multiply, not 'fpu'"):
        cycles.group_steps("fpu", tiles)


def test_maxpool_flatten():
    ov = cycles.Overheads()
    assert cycles.maxpool_cycles(channels=20, out_positions=4, simd=8, overheads=ov) == 4 * 3 * 4
    assert cycles.flatten_cycles() == 0


def test_network_cycles_sums_layers():
    net = random_network(np.random.default_rng(0), kind="int", bits=4)
    per_op = network_cycles(net, CoreConfig(pe="multiply", lanes=4, simd=4))
    assert [c["kind"] for c in per_op] == ["conv2d", "conv2d", "maxpool2d", "flatten", "linear"]
    conv0 = per_op[0]
    assert conv0["positions"] == 64 and len(conv0["steps"]) == 2
    assert conv0["cycles"] == 64 * sum(max(w, 1) for w in conv0["steps"]) + \
        cycles.OVERHEADS.matmul
    assert per_op[3]["cycles"] == 0
