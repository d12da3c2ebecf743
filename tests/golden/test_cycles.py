import numpy as np
import pytest

from hwq.golden import cycles


def test_conv_and_linear_tiles():
    assert cycles.conv2d_k_tiles(in_channels=3, kernel=3, simd=8) == 9
    assert cycles.conv2d_k_tiles(in_channels=17, kernel=3, simd=8) == 27
    assert cycles.linear_k_tiles(130, 8) == 17
    assert cycles.matmul_tiles(out_channels=10, k_tiles=5, lanes=4) == (3, 5)


@pytest.mark.parametrize("pe", ["shift_add", "multiply"])
def test_one_cycle_per_tile(pe):
    ov = cycles.Overheads(group=3, layer=10)
    # 4x4 output positions, 3 groups, 9 tiles: 16 * (27 + 3*3) + 10
    assert cycles.matmul_cycles(pe=pe, positions=16, groups=3, k_tiles=9, overheads=ov) == 16 * 36 + 10


def test_bit_serial_costs_bits_per_tile_and_skips():
    bits = np.array([[4, 4, 2], [8, 1, 1]])
    skipped = np.array([[False, True, False], [False, False, False]])
    got = cycles.matmul_cycles(pe="bit_serial", positions=5, groups=2, k_tiles=3,
                               tile_bits=bits, tile_skipped=skipped,
                               overheads=cycles.Overheads(group=1, layer=2))
    assert got == 5 * ((4 + 0 + 2) + (8 + 1 + 1) + 2) + 2
    assert cycles.matmul_cycles(pe="bit_serial", positions=1, groups=1, k_tiles=4, tile_bits=3) == 12


def test_maxpool_flatten():
    assert cycles.maxpool_cycles(channels=20, out_positions=4, simd=8) == 4 * 3 * 4
    assert cycles.flatten_cycles() == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="needs tile_bits"):
        cycles.matmul_cycles(pe="bit_serial", positions=1, groups=1, k_tiles=1)
    with pytest.raises(ValueError, match="PE type must be one of shift_add, bit_serial, multiply, not 'fpu'"):
        cycles.matmul_cycles(pe="fpu", positions=1, groups=1, k_tiles=1)
    with pytest.raises(ValueError, match=r"tile_skipped must have shape \(1, 2\), not \(2,\)"):
        cycles.matmul_cycles(pe="multiply", positions=1, groups=1, k_tiles=2, tile_skipped=np.zeros(2, bool))
