"""Brevitas models exported with ``export_qonnx`` in the test, imported, and run on hwq.golden
against qonnx's ``execute_onnx``: op by op within the import's stated bound, exactly where
QONNX's arithmetic is exact."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from brevitas import nn as qnn
from brevitas.export import export_qonnx
from brevitas.quant import (
    Int8ActPerTensorFixedPoint,
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFixedPoint,
    Int32Bias,
    Uint8ActPerTensorFixedPoint,
)
from torch import nn

from hwq import golden
from hwq.layout import compile as compile_program
from hwq.layout import execute as execute_program
from hwq.layout.compiler import core_config
from hwq.qonnx.importer import import_qonnx
from tests.qonnx.common import compare_layers, execute

BATCH = 64


class ResidualNet(nn.Module):
    """Conv, max pool, a residual block whose add reads two tensors of one quantizer, global
    average pool, linear with an output quantizer; float scales."""

    def __init__(self, bias_quant):
        super().__init__()
        w = dict(weight_bit_width=4, bias=True, bias_quant=bias_quant)
        self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.c1 = qnn.QuantConv2d(1, 6, 3, padding=1, **w)
        self.r1 = qnn.QuantReLU(bit_width=8, return_quant_tensor=True)
        self.pool = nn.MaxPool2d(2)
        self.c2 = qnn.QuantConv2d(6, 6, 3, padding=1, **w)
        self.r2 = qnn.QuantReLU(bit_width=8, return_quant_tensor=True)
        self.c3 = qnn.QuantConv2d(6, 6, 3, padding=1, **w)
        self.add_q = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.gap_q = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.fc = qnn.QuantLinear(6, 4, output_quant=Int8ActPerTensorFloat, **w)

    def forward(self, x):
        y = self.pool(self.r1(self.c1(self.inp(x))))
        z = self.r1(self.c3(self.r2(self.c2(y))))  # r1 again: y and z share one scale
        z = self.gap_q(self.gap(self.add_q(y + z)))
        return self.fc(torch.flatten(z, 1))


class FixedPointNet(nn.Module):
    """Power-of-two scales everywhere (FINN style): conv, depthwise conv, average pool,
    linear."""

    def __init__(self):
        super().__init__()
        w = dict(weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4,
                 bias_quant=Int32Bias)
        self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint,
                                     return_quant_tensor=True)
        self.c1 = qnn.QuantConv2d(1, 4, 3, padding=1, **w)
        self.r1 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
        self.dw = qnn.QuantConv2d(4, 4, 3, padding=1, groups=4, **w)
        self.r2 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
        self.avg = nn.AvgPool2d(2)
        self.q = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
        self.fc = qnn.QuantLinear(4 * 16, 3, bias=True, output_quant=Int8ActPerTensorFixedPoint,
                                  **w)

    def forward(self, x):
        y = self.r2(self.dw(self.r1(self.c1(self.inp(x)))))
        return self.fc(torch.flatten(self.q(self.avg(y)), 1))


def _exported(module: nn.Module, tmp_path, seed: int = 0):
    """Calibrate ``module`` (training-mode statistics), export it with Brevitas, import it;
    the ONNX model, the import, qonnx's full execution context and the integer input."""
    torch.manual_seed(seed)
    module.train()
    with torch.no_grad():
        for _ in range(20):
            module(torch.randn(16, 1, 8, 8))
    module.eval()
    x = torch.randn(BATCH, 1, 8, 8)
    path = tmp_path / "model.onnx"
    export_qonnx(module, x, str(path))
    model = onnx.load(str(path))
    result = import_qonnx(path)
    ctx = execute(model, x.numpy(), full=True)
    first = next(n for n in model.graph.node if n.input and n.input[0] == "x")
    x_int = np.rint(ctx[first.output[0]] / result.network.input_scale).astype(np.int64)
    out = ctx[model.graph.output[0].name]
    y = np.rint(out / result.network.scales()[result.network.output]).astype(np.int64)
    return model, result, ctx, x_int, y


@pytest.fixture(scope="module")
def int32_bias(tmp_path_factory):
    return _exported(ResidualNet(Int32Bias), tmp_path_factory.mktemp("int32"))


def test_residual_net_imports_as_the_graph_it_is(int32_bias):
    _, result, *_ = int32_bias
    net = result.network
    assert [op.kind for op in net.ops] == ["conv2d", "maxpool2d", "conv2d", "conv2d", "add",
                                           "global_avgpool2d", "flatten", "linear"]
    assert net.act_bits == 9  # unsigned 8-bit ReLU outputs: 0..255
    conv = net.ops[0]
    assert (conv.requant.lo, conv.requant.hi) == (0, 255)
    assert net.ops[-1].requant.lo == -128 and net.ops[-1].requant.hi == 127
    assert net.ops[4].weights == (1, 1)  # the add's inputs share a quantizer
    assert net.ops[4].inputs == (net.ops[1].name, net.ops[3].name)
    for name, err in result.errors.items():
        assert err["multiplier"] <= 2 ** -24, name  # 24-bit M
        assert err["bias"] < 1e-3, name  # Int32Bias: s_in * s_w up to float32 rounding


def test_residual_net_int32_bias_matches_qonnx_op_by_op(int32_bias):
    _, result, ctx, x_int, y = int32_bias
    differ, samples = compare_layers(result, ctx, x_int)
    assert set(differ) == {op.name for op in result.network.ops}
    # end to end: wherever no op differed, the whole network gives qonnx's output
    out = golden.run(result.network, x_int)
    np.testing.assert_array_equal(out[~samples], y[~samples])
    assert (~samples).sum() >= BATCH // 2


def test_residual_net_float_bias_within_the_stated_bound(tmp_path):
    _, result, ctx, x_int, y = _exported(ResidualNet(None), tmp_path, seed=1)
    assert max(e["bias"] for e in result.errors.values()) > 0.1  # a float bias is rounded
    differ, samples = compare_layers(result, ctx, x_int)
    assert sum(differ.values()) > 0  # the bound is exercised, not vacuous
    out = golden.run(result.network, x_int)
    np.testing.assert_array_equal(out[~samples], y[~samples])


def test_power_of_two_scales_differ_only_on_ties(tmp_path):
    model, result, ctx, x_int, y = _exported(FixedPointNet(), tmp_path)
    net = result.network
    assert [op.kind for op in net.ops] == ["conv2d", "conv2d", "avgpool2d", "flatten", "linear"]
    assert net.ops[1].groups == 4
    for err in result.errors.values():
        assert err == {"bias": 0.0, "multiplier": 0.0, "ties": 1.0}
    differ, samples = compare_layers(result, ctx, x_int, float_exact=True)
    assert differ[net.ops[2].name] > 0  # the 2x2 average pool meets ties (sums / 4)
    out = golden.run(net, x_int)
    np.testing.assert_array_equal(out[~samples], y[~samples])


@pytest.mark.parametrize("pe", ["bit_serial", "multiply"])
def test_imported_network_runs_on_the_core_executor(int32_bias, pe):
    _, result, _, x_int, _ = int32_bias
    net = result.network
    program = compile_program(net, core_config(net, pe=pe, lanes=4, simd=4))
    np.testing.assert_array_equal(execute_program(program, x_int[:8]),
                                  golden.run(net, x_int[:8]))
