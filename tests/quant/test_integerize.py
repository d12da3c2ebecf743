"""BatchNorm folding, model linearization and integerization (float model -> integer IR).

The fake-quant torch model's exact path must equal the golden model bit for bit; the float
(STE) path must agree in accuracy within 0.2 points (one test image is 0.19).
"""

from __future__ import annotations

import copy
import doctest
import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwq import golden, ir
from hwq.golden.requant import multiplier_from_scale
from hwq.quant import fakequant, graph
from hwq.quant.base import QuantizedWeight, fold_batchnorm, weight_layers
from hwq.quant.fakequant import FakeQuantModel, requantize_torch
from hwq.quant.graph import trace
from hwq.quant.integerize import fake_quant_model, integerize
from hwq.quant.uniform import quantize_uniform
from hwq.serialize import load, save
from hwq.workloads.train import evaluate

SUPPORTED = "hwq supports " + graph.SUPPORTED


def _golden_outputs(network: ir.QuantizedNetwork, x: torch.Tensor, *, trace: bool = False):
    xi = golden.quantize_input(x.numpy(), network.input_scale, network.act_bits)
    return golden.run(network, xi, trace=trace)


def _accuracy(outputs: np.ndarray, y: torch.Tensor) -> float:
    return 100.0 * float((outputs.argmax(axis=1) == y.numpy()).sum()) / len(y)


def _randomize_bn(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) + 0.2)
            if m.affine:
                m.weight.data.copy_(torch.randn(c, generator=g))
                m.bias.data.copy_(torch.randn(c, generator=g))


@pytest.fixture(scope="module")
def uniform8(digits_reference, digits_data):
    """(folded model, qweights, calibrated FakeQuantModel, network) for uniform 8-bit."""
    folded = fold_batchnorm(digits_reference)
    qweights = quantize_uniform(folded, digits_data, bits=8)
    fq = fake_quant_model(folded, qweights, digits_data.x_train)
    return folded, qweights, fq, fq.to_network()


# --- BatchNorm folding and linearization ----------------------------------------------------


def test_fold_batchnorm_preserves_digits_outputs(digits_model, digits_data):
    before = {k: v.clone() for k, v in digits_model.state_dict().items()}
    folded = fold_batchnorm(digits_model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert [n for n, _ in folded.named_children()] == [
        "0", "2", "3", "5", "6", "7", "9", "10", "11", "12"]
    assert [n for n, _ in weight_layers(folded)] == ["0", "3", "7", "12"]
    with torch.no_grad():
        ref = digits_model.eval()(digits_data.x_test)
        out = folded(digits_data.x_test)
    assert float((ref - out).abs().max()) < 1e-4  # float comparison: folding reorders sums
    torch.testing.assert_close(out.argmax(1), ref.argmax(1), rtol=0, atol=0)
    for k, v in digits_model.state_dict().items():  # the input model is untouched
        assert torch.equal(v, before[k]), k


def test_fold_batchnorm_formula_on_random_statistics():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
    bn = nn.BatchNorm2d(4, eps=1e-3)
    model = nn.Sequential(conv, bn, nn.ReLU())
    _randomize_bn(model, 2)
    folded = fold_batchnorm(model.eval())
    g = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)  # float64
    expect_w = (conv.weight.double() * g.reshape(-1, 1, 1, 1)).float()
    expect_b = ((conv.bias.double() - bn.running_mean.double()) * g + bn.bias.double()).float()
    assert torch.equal(folded[0].weight, expect_w)
    assert torch.equal(folded[0].bias, expect_b)
    x = torch.randn(5, 3, 6, 6)
    with torch.no_grad():
        assert float((model(x) - folded(x)).abs().max()) < 1e-5


def test_fold_batchnorm_without_affine_and_without_conv_bias():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.BatchNorm2d(3, affine=False))
    _randomize_bn(model, 4)
    folded = fold_batchnorm(model.eval())
    assert [type(m) for m in folded] == [nn.Conv2d]
    x = torch.randn(4, 2, 5, 5)
    with torch.no_grad():
        assert float((model(x) - folded(x)).abs().max()) < 1e-5


class _Functional(nn.Module):
    """A traceable non-Sequential model using functional calls and nested containers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        x = F.max_pool2d(x, 2)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def test_fold_batchnorm_of_an_fx_traceable_model():
    torch.manual_seed(5)
    model = _Functional()
    _randomize_bn(model, 6)
    model.eval()
    folded = fold_batchnorm(model)
    assert [(n, type(m).__name__) for n, m in folded.named_children()] == [
        ("features_0", "Conv2d"), ("relu", "ReLU"), ("max_pool2d", "MaxPool2d"),
        ("view", "Flatten"), ("fc", "Linear")]
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert float((model(x) - folded(x)).abs().max()) < 1e-5


class _Nested(nn.Module):
    def __init__(self, extra: nn.Module) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@pytest.mark.parametrize("layer, message", [
    (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
     "Unsupported layer 'features.2' (Conv2d with padding_mode='reflect'; only 'zeros'); "
     + SUPPORTED),
    (nn.MaxPool2d(3, ceil_mode=True),
     "Unsupported layer 'features.2' (MaxPool2d with ceil_mode, return_indices and dilation "
     "are not supported); " + SUPPORTED),
    (nn.Upsample(scale_factor=2), "Unsupported layer 'features.2' (Upsample); " + SUPPORTED),
    (nn.AdaptiveAvgPool2d(2), "Unsupported layer 'features.2' (AdaptiveAvgPool2d with "
     "output_size 2; only 1 (global pooling)); " + SUPPORTED),
])
def test_unsupported_layer_is_named(layer, message):
    model = _Nested(layer)
    for func in (trace, fold_batchnorm):
        with pytest.raises(ValueError) as info:
            func(model)
        assert str(info.value) == message
    qweights = {}
    with pytest.raises(ValueError, match="Unsupported layer 'features.2'"):
        integerize(model, qweights, torch.zeros(2, 1, 8, 8))


def test_batchnorm_must_follow_a_conv():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match=r"BatchNorm2d '2' must directly follow a Conv2d"):
        fold_batchnorm(model)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow
            return self.fc(x)
        return x


def test_untraceable_models_are_refused_and_a_residual_is_traced():
    with pytest.raises(ValueError, match=r"Model _Untraceable is not torch.fx-traceable"):
        trace(_Untraceable())
    g = trace(_Residual())
    assert [(n.name, n.kind, n.inputs) for n in g.nodes] == [
        ("conv", "conv", ("input",)), ("add", "add", ("input", "conv"))]


def test_relu_must_follow_a_weight_layer():
    model = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    qw = quantize_uniform(fold_batchnorm(model), None, bits=8)
    with pytest.raises(ValueError, match=r"ReLU '0' must follow a Conv2d or Linear"):
        integerize(model, qw, torch.rand(3, 1, 2, 2))


# --- integerization: exact values on a hand-computed layer ----------------------------------


def test_integerize_hand_computed_linear():
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -0.25], [0.2, 0.5]]))
        lin.bias.copy_(torch.tensor([0.1, -0.2]))
    model = nn.Sequential(lin)
    qw = quantize_uniform(model, None, bits=8)
    x = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    net = integerize(model, qw, x)
    (op,) = net.ops
    assert net.input_scale == 1 / 127
    # w / (max|w_c| / 127): [127, -31.75] and [50.8, 127]
    np.testing.assert_array_equal(op.weight, [[127, -32], [51, 127]])
    np.testing.assert_array_equal(op.spec.bits, 8)
    # bias / (s_in * s_w): 0.1 * 127**2 = 1612.9, -0.2 * 127**2 / 0.5 = -6451.6
    np.testing.assert_array_equal(op.requant.bias, [1613, -6452])
    assert (op.requant.lo, op.requant.hi) == (-128, 127)
    # peak pre-activation: (127*127 + 1613) / 127**2 = 17742 / 16129
    assert op.out_scale == pytest.approx(17742 / 16129 / 127, rel=1e-15)
    ratio = np.array([127, 63.5]) / 17742  # s_in * s_w[c] / s_out
    mult = multiplier_from_scale(ratio)
    np.testing.assert_array_equal(op.requant.S, mult.S)
    assert np.all(np.abs(op.requant.M - mult.M) <= 1)  # float rounding of the ratio only
    # t = acc + bias = [[17742, 25], [5677, -22581]] -> t * ratio = [[127, 0.09], [40.6, -80.8]]
    out = _golden_outputs(net, x)
    np.testing.assert_array_equal(out, [[127, 0], [41, -81]])
    fq = fake_quant_model(model, qw, x)
    np.testing.assert_array_equal(fq.to_int(x).numpy(), out)


def test_integerize_relu_clamps_at_zero_and_percentile_clips():
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    model = nn.Sequential(lin, nn.ReLU())
    qw = quantize_uniform(model, None, bits=4)
    x = torch.arange(-50, 50, dtype=torch.float32).reshape(-1, 1) / 50
    net = integerize(model, qw, x, calibration="percentile", percentile=75.0)
    assert (net.ops[0].requant.lo, net.ops[0].requant.hi) == (0, 127)
    assert net.input_scale == np.percentile(np.abs(x.double().numpy()), 75.0) / 127
    out = _golden_outputs(net, x).reshape(-1)
    np.testing.assert_array_equal(out[:51], 0)  # x <= 0: ReLU
    assert out.max() == 127 and int((out == 127).sum()) > 1  # the percentile clips the top
    assert np.all(np.diff(out) >= 0)


def test_percentile_100_equals_max(digits_reference, digits_data):
    folded = fold_batchnorm(digits_reference)
    qw = quantize_uniform(folded, digits_data, bits=6)
    x = digits_data.x_train[:256]
    a = integerize(folded, qw, x, calibration="max")
    b = integerize(folded, qw, x, calibration="percentile", percentile=100.0)
    assert a.input_scale == b.input_scale
    for oa, ob in zip(a.weight_ops(), b.weight_ops(), strict=True):
        assert oa.out_scale == ob.out_scale
        for f in ("bias", "M", "S"):
            np.testing.assert_array_equal(getattr(oa.requant, f), getattr(ob.requant, f))


def test_relu_after_maxpool_is_fused_like_relu_before():
    torch.manual_seed(8)
    conv, lin = nn.Conv2d(1, 3, 3, padding=1), nn.Linear(3 * 4 * 4, 5)
    a = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), lin)
    b = nn.Sequential(conv, nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), lin)
    x = torch.rand(16, 1, 8, 8)
    na = integerize(a, quantize_uniform(fold_batchnorm(a), None, bits=5), x)
    nb = integerize(b, {"0": quantize_uniform(fold_batchnorm(b), None, bits=5)["0"],
                        "4": quantize_uniform(fold_batchnorm(b), None, bits=5)["4"]}, x)
    assert na.ops[0].requant.lo == nb.ops[0].requant.lo == 0
    np.testing.assert_array_equal(_golden_outputs(na, x), _golden_outputs(nb, x))


def test_integerize_checks_the_weights(digits_reference, digits_data):
    folded = fold_batchnorm(digits_reference)
    qw = quantize_uniform(folded, digits_data, bits=8)
    x = digits_data.x_train[:8]
    missing = {k: v for k, v in qw.items() if k != "7"}
    with pytest.raises(ValueError, match=r"missing \['7'\], unknown \[\]"):
        integerize(folded, missing, x)
    with pytest.raises(ValueError, match=r"missing \[\], unknown \['99'\]"):
        integerize(folded, {**qw, "99": qw["0"]}, x)
    with pytest.raises(ValueError, match=r"Layer '3': quantized weight of shape \(16, 1, 3, 3\)"):
        integerize(folded, {**qw, "3": qw["0"]}, x)
    with pytest.raises(ValueError, match="Calibration must be one of max, percentile"):
        integerize(folded, qw, x, calibration="mse")
    with pytest.raises(ValueError, match="Calibration inputs must be a float tensor"):
        integerize(folded, qw, x.long())


def test_integerize_leaves_the_model_alone(digits_model, digits_data):
    folded = fold_batchnorm(digits_model)
    qw = quantize_uniform(folded, digits_data, bits=3)
    before = {k: v.clone() for k, v in folded.state_dict().items()}
    integerize(folded, qw, digits_data.x_train[:64])
    for k, v in folded.state_dict().items():
        assert torch.equal(v, before[k]), k


# --- the digits network: golden vs fake-quant ------------------------------------------------


def test_digits_uniform8_structure(uniform8):
    folded, qweights, _, net = uniform8
    assert [(op.kind, op.name) for op in net.ops] == [
        ("conv2d", "0"), ("conv2d", "3"), ("maxpool2d", "6"), ("conv2d", "7"),
        ("maxpool2d", "10"), ("flatten", "11"), ("linear", "12")]
    assert net.input_shape == (1, 8, 8) and net.act_bits == 8
    assert net.input_scale == 1 / 127  # pixels in [0, 1], max calibration
    assert [op.requant.lo for op in net.weight_ops()] == [0, 0, 0, -128]
    assert {op.requant.hi for op in net.weight_ops()} == {127}
    for op in net.weight_ops():
        np.testing.assert_array_equal(op.weight, qweights[op.name].values)
        assert op.spec.kind == "int" and op.spec.max_bits() == 8
        assert op.stride == (1, 1) and op.padding == (1, 1, 1, 1) if op.kind == "conv2d" else True
    assert net.weight_storage_bits() == 8 * 15248


def test_digits_uniform8_bias_and_multipliers(uniform8):
    folded, qweights, fq, net = uniform8
    s_in = net.input_scale
    for op in net.weight_ops():
        s_w = qweights[op.name].scale
        b = folded.get_submodule(op.name).bias.detach().double().numpy()
        np.testing.assert_array_equal(op.requant.bias, np.rint(b / (s_in * s_w)).astype(np.int64))
        m = multiplier_from_scale(s_in * s_w / op.out_scale)
        np.testing.assert_array_equal(op.requant.M, m.M)
        np.testing.assert_array_equal(op.requant.S, m.S)
        s_in = op.out_scale


def test_digits_fake_quant_equals_golden_bit_for_bit(uniform8, digits_data):
    _, _, fq, net = uniform8
    x = digits_data.x_test
    golden_trace = _golden_outputs(net, x, trace=True)
    torch_trace = fq.to_int(x, trace=True)
    assert len(golden_trace) == len(torch_trace) == 7
    for g, t in zip(golden_trace, torch_trace, strict=True):
        np.testing.assert_array_equal(t.numpy(), g)  # 0 mismatches, every op
    # eval forward = integer outputs times the output scale
    with torch.no_grad():
        out = fq.eval()(x)
    np.testing.assert_array_equal(out.numpy(), golden_trace[-1] * net.ops[-1].out_scale)


def test_digits_accuracy_golden_vs_fake_quant(uniform8, digits_data):
    _, _, fq, net = uniform8
    golden_accuracy = _accuracy(_golden_outputs(net, digits_data.x_test), digits_data.y_test)
    assert evaluate(fq, digits_data.x_test, digits_data.y_test) == golden_accuracy
    fq.exact = False  # the float STE path, as trained by QAT
    try:
        float_accuracy = evaluate(fq, digits_data.x_test, digits_data.y_test)
        with torch.no_grad():
            float_out = fq(digits_data.x_test).numpy()
    finally:
        fq.exact = True
    assert abs(float_accuracy - golden_accuracy) <= 0.2
    # the float path rounds half to even and uses the float multiplier: its integers differ
    # from the requantization in at most a handful of the 5400 logits (0 measured)
    float_int = np.rint(float_out / net.ops[-1].out_scale)
    assert int((float_int != _golden_outputs(net, digits_data.x_test)).sum()) <= 5
    assert golden_accuracy >= 98.5


@pytest.mark.parametrize("bits, act_bits", [(2, 2), (3, 4), (4, 16), (8, 6)])
def test_fake_quant_equals_golden_for_other_widths(digits_reference, digits_data, bits, act_bits):
    folded = fold_batchnorm(digits_reference)
    qw = quantize_uniform(folded, digits_data, bits=bits)
    fq = fake_quant_model(folded, qw, digits_data.x_train[:300], act_bits=act_bits,
                          calibration="percentile")
    net = fq.to_network()
    assert net.act_bits == act_bits
    x = digits_data.x_test[:200]
    np.testing.assert_array_equal(fq.to_int(x).numpy(), _golden_outputs(net, x))


def test_requantize_torch_matches_golden_on_edge_cases():
    rng = np.random.default_rng(0)
    acc = rng.integers(-(1 << 30), 1 << 30, size=(64, 3))
    acc[:4] = [[3, -3, 1], [-1, 5, -5], [0, 0, 0], [7, -7, 2]]  # ties at S = 1
    rq = ir.Requant(bias=np.array([0, 5, -(1 << 20)]), M=np.array([1, 3, (1 << 24) - 1]),
                    S=np.array([1, 2, 40]), lo=-100, hi=90)
    expect = golden.requantize(acc, rq.bias, rq.M, rq.S, lo=rq.lo, hi=rq.hi)
    got = requantize_torch(torch.from_numpy(acc), rq).numpy()
    np.testing.assert_array_equal(got, expect)
    # (acc + bias) * M beyond int64 (48-bit accumulators, 24-bit M): still the spec's values
    wide = np.array([[(1 << 47) - 1, -(1 << 47), 1 << 46], [5, -5, 0]])
    rq = ir.Requant(bias=np.array([7, -(1 << 31), 0]), M=np.full(3, (1 << 24) - 1),
                    S=np.array([62, 40, 33]), lo=-(1 << 15), hi=(1 << 15) - 1)
    got = requantize_torch(torch.from_numpy(wide), rq).numpy()
    np.testing.assert_array_equal(got, [[golden.requantize_reference(int(a), int(b), int(m), int(s),
                                                                     rq.lo, rq.hi)
                                         for a, b, m, s in zip(row, rq.bias, rq.M, rq.S, strict=True)]
                                        for row in wide])


def test_save_load_round_trip_gives_identical_golden_outputs(uniform8, digits_data, tmp_path):
    _, _, _, net = uniform8
    path = save(net, tmp_path / "digits.safetensors")
    again = load(path)
    x = digits_data.x_test
    np.testing.assert_array_equal(_golden_outputs(again, x), _golden_outputs(net, x))
    assert again.input_scale == net.input_scale
    assert [op.out_scale for op in again.weight_ops()] == [op.out_scale for op in net.weight_ops()]


def test_fake_quant_model_needs_calibration(digits_reference):
    folded = fold_batchnorm(digits_reference)
    qw = quantize_uniform(folded, None, bits=8)
    fq = FakeQuantModel.from_float(folded, {n: fakequant.FixedWeightQuant(q)
                                            for n, q in qw.items()})
    with pytest.raises(RuntimeError, match="not calibrated"):
        fq.to_network()
    with pytest.raises(RuntimeError, match="not calibrated"):
        fq.eval()(torch.zeros(1, 1, 8, 8))


def test_quantized_weight_validates():
    spec = ir.WeightSpec(kind="int", bits=np.int64(3))
    qw = QuantizedWeight(values=np.array([[3, -3], [0, 1]]), scale=np.array([0.5, 2.0]), spec=spec)
    np.testing.assert_array_equal(qw.dequantize(), [[1.5, -1.5], [0.0, 2.0]])
    assert qw.storage_bits() == 12
    with pytest.raises(ValueError, match=r"INT weights must be 3-bit two's complement"):
        QuantizedWeight(values=np.array([[4, 0]]), scale=np.array([1.0]), spec=spec)
    with pytest.raises(ValueError, match="finite and positive"):
        QuantizedWeight(values=np.array([[1, 0]]), scale=np.array([0.0]), spec=spec)
    with pytest.raises(ValueError, match=r"one value per output channel, shape \(1,\)"):
        QuantizedWeight(values=np.array([[1, 0]]), scale=np.array([1.0, 1.0]), spec=spec)
    with pytest.raises(TypeError, match="must be integers"):
        QuantizedWeight(values=np.array([[1.0, 0]]), scale=np.array([1.0]), spec=spec)


@pytest.mark.parametrize("name", ["hwq.quant.fakequant"])
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0


def test_fake_quant_model_shares_parameters(digits_reference):
    folded = fold_batchnorm(copy.deepcopy(digits_reference))
    quants = {n: fakequant.IntWeightQuantPerChannel(4) for n, _ in weight_layers(folded)}
    fq = FakeQuantModel.from_float(folded, quants)
    assert fq.layers["0"].module is folded[0]
    assert fq.layers["12"].output_quant.relu is False
    assert [fq.layers[n].output_quant.relu for n in ("0", "3", "7")] == [True, True, True]
