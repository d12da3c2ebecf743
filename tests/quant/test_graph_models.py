"""Real torch modules with residual adds, depthwise convs, pools and 1-D layers: traced,
folded, integerized, and the integer network equal to the fake-quant torch model bit for bit
(and to the float model up to quantization)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwq import golden, ir
from hwq.golden.network import quantize_input
from hwq.layout import compile, execute
from hwq.layout.compiler import core_config
from hwq.quant import graph
from hwq.quant.base import fold_batchnorm, weight_layers
from hwq.quant.integerize import fake_quant_model
from hwq.quant.uniform import quantize_uniform
from hwq.workloads.models import BasicBlock


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.block1 = BasicBlock(8, 8)
        self.block2 = BasicBlock(8, 16, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


class Separable(nn.Module):
    """MobileNet-v1 blocks: depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN + ReLU6."""

    def __init__(self) -> None:
        super().__init__()
        layers = [nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
                  nn.ReLU6()]
        for c_in, c_out, s in ((8, 16, 1), (16, 24, 2)):
            layers += [nn.Conv2d(c_in, c_in, 3, stride=s, padding=1, groups=c_in, bias=False),
                       nn.BatchNorm2d(c_in), nn.ReLU6(),
                       nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU6()]
        layers += [nn.AvgPool2d(2), nn.Flatten(), nn.Identity(), nn.Linear(24 * 2 * 2, 5)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Stubbed(nn.Module):
    """QuantStub/DeQuantStub around a model, as torch.ao's eager quantization writes it."""

    def __init__(self) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.conv = nn.Conv2d(3, 4, (3, 1), padding="same")
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = F.relu(self.conv(self.quant(x)))
        return self.dequant(self.fc(torch.flatten(x, 1)))


class KeywordSpotter(nn.Module):
    """A Conv1d net on (N, 10, 49) features: conv1d + BN1d + ReLU, max pool 1-D, a 'same'
    conv with an even kernel (asymmetric padding), a dilated conv, global average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(10, 16, 5, stride=2, bias=False)
        self.b1 = nn.BatchNorm1d(16)
        self.p1 = nn.MaxPool1d(3, stride=2, padding=1)
        self.c2 = nn.Conv1d(16, 16, 4, padding="same")
        self.c3 = nn.Conv1d(16, 24, 3, dilation=2, padding=2)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(24, 6)

    def forward(self, x):
        x = self.p1(F.relu(self.b1(self.c1(x))))
        x = F.hardtanh(self.c2(x), -2.0, 2.0)
        x = torch.clamp(self.c3(x), min=0.0)
        return self.fc(self.gap(x).flatten(1))


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


MODELS = [
    ("resnet", lambda: TinyResNet(), (3, 12, 12)),
    ("separable", lambda: Separable(), (3, 16, 16)),
    ("kws", lambda: KeywordSpotter(), (10, 49)),
    ("stubs", lambda: Stubbed(), (3, 6, 6)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name, make, shape", MODELS, ids=[m[0] for m in MODELS])
def test_integer_network_equals_fake_quant_model(name, make, shape):
    torch.manual_seed(0)
    model = _randomize(make(), 1)
    x = torch.rand(64, *shape)
    folded = fold_batchnorm(model)
    with torch.no_grad():
        assert float((folded(x) - model(x)).abs().max()) < 1e-4
    qweights = quantize_uniform(folded, None, bits=6)
    fq = fake_quant_model(folded, qweights, x)
    net = fq.to_network()
    xi = quantize_input(fq._prepare(x).numpy(), net.input_scale, net.act_bits)
    trace = golden.run(net, xi, trace=True)
    mirror = fq.to_int(x, trace=True)
    assert len(trace) == len(mirror) == len(net.ops)
    for t, m, op in zip(trace, mirror, net.ops, strict=True):
        np.testing.assert_array_equal(t, m.numpy(), err_msg=op.name)
    # the integer network tracks the float model
    with torch.no_grad():
        ref = model(x).numpy()
    y = trace[-1] * net.ops[-1].out_scale
    assert np.corrcoef(y.ravel(), ref.ravel())[0, 1] > 0.95


def test_the_ir_of_a_residual_network():
    torch.manual_seed(0)
    model = _randomize(TinyResNet(), 2)
    x = torch.rand(32, 3, 12, 12)
    folded = fold_batchnorm(model)
    fq = fake_quant_model(folded, quantize_uniform(folded, None, bits=8), x)
    net = fq.to_network()
    kinds = [op.kind for op in net.ops]
    assert kinds.count("add") == 2 and kinds.count("global_avgpool2d") == 1
    adds = [op for op in net.ops if op.kind == "add"]
    # the ReLU after each add is fused into its requant
    assert all(op.requant.lo == 0 for op in adds)
    # the identity shortcut reads the stem's output; the projection a 1x1 stride-2 conv
    first = adds[0]
    assert "stem_2" not in net.tensor_shapes()      # the ReLU vanished into the stem conv
    assert set(first.inputs) == {"stem_0", "block1_conv2"}
    proj = net.op("block2_shortcut_0")
    assert proj.stride == (2, 2) and proj.kernel == (1, 1)
    # the add weights approximate the ratio of the input scales to half an LSB
    scales = net.scales()
    for op in adds:
        wa, wb = op.weights
        r = scales[op.inputs[0]] / scales[op.inputs[1]]
        assert abs(wa / wb - r) / r <= 2.0 ** -9 or max(wa, wb) == ir.ADD_WEIGHT_MAX


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name, make, shape", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("pe", ["multiply", "bit_serial"])
def test_compiled_graph_network_equals_golden(name, make, shape, pe):
    torch.manual_seed(0)
    model = _randomize(make(), 3)
    x = torch.rand(16, *shape)
    folded = fold_batchnorm(model)
    net = fake_quant_model(folded, quantize_uniform(folded, None, bits=4), x).to_network()
    config = core_config(net, pe=pe, lanes=4, simd=4)
    xi = quantize_input(folded.prepare_input(x).numpy(), net.input_scale, net.act_bits)
    np.testing.assert_array_equal(execute(compile(net, config), xi), golden.run(net, xi))


def test_refusals_name_the_node():
    class BadClamp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.c(F.relu(x))

    folded = fold_batchnorm(BadClamp())
    with pytest.raises(ValueError, match=r"relu 'relu' must follow a Conv2d or Linear"):
        fake_quant_model(folded, quantize_uniform(folded, None, bits=4), torch.rand(4, 1, 5, 5))

    class Scaled(nn.Module):
        def forward(self, x):
            return x * 2

    with pytest.raises(ValueError, match=r"Unsupported operation 'mul' \(mul\)"):
        graph.trace(Scaled())

    class TwoOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.a(x), self.b(x)

    with pytest.raises(ValueError, match="The model output must be a single tensor"):
        graph.trace(TwoOut())


def test_weight_layers_of_a_graph_are_in_execution_order():
    folded = fold_batchnorm(_randomize(TinyResNet(), 4))
    assert [n for n, _ in weight_layers(folded)] == [
        "stem_0", "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
        "block2_shortcut_0", "fc"]


class _Data:
    """A small synthetic classification set: labels from a fixed random teacher."""

    def __init__(self, shape: tuple[int, ...], n: int = 96, classes: int = 4) -> None:
        g = torch.Generator().manual_seed(7)
        x = torch.rand(n, *shape, generator=g)
        w = torch.randn(int(np.prod(shape)), classes, generator=g)
        y = (x.reshape(n, -1) @ w).argmax(1)
        self.x_train, self.y_train = x[: n * 2 // 3], y[: n * 2 // 3]
        self.x_test, self.y_test = x[n * 2 // 3:], y[n * 2 // 3:]


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.block = BasicBlock(6, 8, stride=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.block(self.stem(x))
        x = x + F.relu6(self.dw(x))
        return self.fc(torch.flatten(self.pool(x), 1))


METHOD_CASES = [
    ("uniform", 4, {}),
    ("uniform-qat", 4, {"epochs": 1}),
    ("inq", 4, {"epochs": 1}),
    ("slq", 3, {"epochs": 1}),
    ("mlq", 2, {"epochs": 1}),
    ("tq", 3.0, {"calib_size": 32, "probes": 2, "grid": 2, "blocks": 4}),
    ("joint", None, {"compression": 8, "epochs": 1, "finetune_epochs": 1}),
]


@pytest.mark.parametrize("method, bits, options", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_every_method_quantizes_a_residual_network(method, bits, options):
    from hwq.quant.api import quantize

    torch.manual_seed(0)
    model = _randomize(SmallResNet(), 5)
    result = quantize(model, method, bits=bits, data=_Data((3, 8, 8)), progress=False,
                      **options)
    net = result.network
    assert result.output_mismatches == 0
    assert result.fake_quant_accuracy == result.accuracy
    kinds = [op.kind for op in net.ops]
    assert kinds.count("add") == 2 and "global_avgpool2d" in kinds
    depthwise = [op for op in net.weight_ops() if op.kind == "conv2d" and op.groups > 1]
    assert [op.groups for op in depthwise] == [8]
    if method == "tq":   # the grouped conv keeps its own weights, and the report says so
        assert result.info["layers"]["dw"]["transformed"] is False
    # and the network runs on a core, bit for bit
    x = golden.quantize_input(result.fake_quant_model._prepare(_Data((3, 8, 8)).x_test).numpy(),
                              net.input_scale, net.act_bits)
    pe = {"inq": "shift_add"}.get(method, "multiply" if method in ("slq", "mlq", "joint")
                                   else "bit_serial")
    if method == "tq":
        pe = "bit_serial"
    config = core_config(net, pe=pe, lanes=4, simd=4)
    np.testing.assert_array_equal(execute(compile(net, config), x), golden.run(net, x))
