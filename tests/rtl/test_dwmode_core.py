"""The core with the depthwise mode in Amaranth's simulator: every PE type, outputs equal to
hwq.golden and every layer counter equal to the cycle model; the mode's hardware only when
it is on."""

import numpy as np
import pytest

import hwq.golden as golden
from hwq.config import CoreConfig
from hwq.layout import compile
from hwq.rtl.generate import generate
from hwq.rtl.pe import MacArray
from hwq.rtl.simulation import simulate_core
from hwq.testing import depthwise_network, random_inputs

SMALL = dict(act_depth=256, weight_depth=256, param_depth=16, desc_depth=8, weight_bits=4)


@pytest.mark.parametrize(("pe", "kind", "c", "stride", "padding", "hw"), [
    ("shift_add", "pot", 8, 1, 1, (5, 5)),
    ("shift_add", "pot", 12, 2, 1, (5, 7)),       # a partial tile, stride 2
    ("bit_serial", "int", 8, 1, 0, (5, 6)),
    ("multiply", "codebook", 8, 2, 0, (6, 5)),
    ("multiply", "int", 8, 3, 1, (5, 7)),         # stride 3: every position loads 9 taps
])
def test_depthwise_core_equals_golden_and_cycle_model(pe, kind, c, stride, padding, hw):
    rng = np.random.default_rng(c * 7 + stride)
    net = depthwise_network(rng, channels=c, stride=stride, padding=padding, hw=hw, kind=kind,
                            bits=[3, 4] if kind == "pot" else [2, 3, 4], zero_taps=0.2)
    program = compile(net, CoreConfig(pe=pe, pack=True, depthwise=True, **SMALL))
    assert any("dw_tile" in lay for lay in program.layers)
    x = random_inputs(rng, net, 1)
    result = simulate_core(program, x)
    np.testing.assert_array_equal(result.outputs, golden.run(net, x))
    assert result.layer_cycles[0] == [layer["cycles"] for layer in program.layers]
    assert result.cycles[0] == program.cycles()


def test_window_registers_only_with_the_mode():
    small = dict(act_depth=64, weight_depth=64, param_depth=16, desc_depth=4)
    plain = generate(CoreConfig(pe="shift_add", pack=True, **small))
    dw = generate(CoreConfig(pe="shift_add", pack=True, depthwise=True, **small))
    assert "win8" not in plain and "win8" in dw


def test_paired_dsp_lanes_refuse_the_mode():
    # ECP5 pairs share one activation word: the config refuses the mode for them, and so
    # does the array should one get through
    config = CoreConfig(pe="multiply", pack=True, depthwise=True)
    array = MacArray(config=config)
    array.paired = lambda: True
    with pytest.raises(ValueError, match="The depthwise mode needs a word of activations per "
                                         "lane"):
        array.elaborate(None)
