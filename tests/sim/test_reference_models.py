"""ResNet-8 (3x32x32, 16-32-64, identity and 1x1 stride-2 shortcuts, global average pool)
and a depthwise-separable net, quantized (INQ for shift_add, uniform INT otherwise),
compiled and run on the Verilated core of every PE type: outputs equal hwq.golden, every
layer's cycle counter equals the cycle model. Synthetic images (labels from a random
teacher); the networks are untrained past the quantization method's own retraining.

Slow (about 2 minutes per case with a cold Verilator build): ``pytest -m slow``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwq import golden
from hwq.golden.network import quantize_input
from hwq.layout.compiler import compile as compile_network
from hwq.layout.compiler import core_config
from hwq.quant.api import quantize
from hwq.sim.simulate import simulate
from hwq.workloads.models import resnet8, sepnet

pytestmark = [pytest.mark.slow, pytest.mark.sim]


class _Synthetic:
    def __init__(self, n: int = 160, shape=(3, 32, 32), classes: int = 10) -> None:
        g = torch.Generator().manual_seed(3)
        x = torch.rand(n, *shape, generator=g)
        teacher = torch.randn(int(np.prod(shape)), classes, generator=g)
        y = (x.reshape(n, -1) @ teacher).argmax(1)
        self.x_train, self.y_train, self.x_test, self.y_test = x[:128], y[:128], x[128:], y[128:]


CASES = [(model, pe) for model in ("resnet8", "sepnet")
         for pe in ("shift_add", "bit_serial", "multiply")]


@pytest.mark.parametrize("model, pe", CASES, ids=[f"{m}-{p}" for m, p in CASES])
def test_reference_model_on_the_core(model, pe):
    torch.manual_seed(0)
    net_fp = {"resnet8": resnet8, "sepnet": sepnet}[model]().eval()
    data = _Synthetic()
    method = "inq" if pe == "shift_add" else "uniform"
    result = quantize(net_fp, method, bits=4, data=data, progress=False,
                      **({"epochs": 1} if method == "inq" else {}))
    net = result.network
    assert result.output_mismatches == 0
    config = core_config(net, pe=pe, lanes=8, simd=8)
    program = compile_network(net, config)
    x = quantize_input(data.x_test[:4].numpy(), net.input_scale, net.act_bits)
    sim = simulate(program, None, x, progress=False)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    np.testing.assert_array_equal(sim.layer_cycles,
                                  np.broadcast_to(sim.model_layer_cycles, sim.layer_cycles.shape))
    assert sim.cycle_model_mismatches() == []
